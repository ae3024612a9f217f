"""Diffusion: training-step time against plain PyTorch, sampler time, and test bounds beside
the other families.

1. Training step: ``pg.Diffusion`` as ``pg.fit`` runs it (``SVIObjective`` with
   ``TermsELBO.differentiable_loss``) against a plain PyTorch function computing the same
   loss (continuous-time VDM bound: stratified t, eps-prediction error times -lambda'/2,
   analytic prior KL, exact categorical reconstruction) with a deep copy of the same network,
   both stepped by Adam. Medians over interleaved rounds (probgen, plain, probgen, ...), so
   load from other processes on the machine hits both alike.
2. Sampling: 1000 ancestral steps against 50 DDIM steps, 64 images, medians over rounds.
3. optdigits test bound in bits/dim: diffusion, VAE and flow (when ``pg.Flow`` exists), each
   the CLI's default model for the data, trained with the same epochs, batch size and lr.
4. Static binarized MNIST: the diffusion bound in nats next to the VAE, same budget (small
   by default: a subset of the training set for a few epochs; flags for more).
5. Learned schedule, continuous time, on optdigits: the linear schedule against the learned
   one (trained for the variance of the one-timestep estimator, VDM), same budget: the bound
   and the per-data-point standard deviation of that estimator.

    python benchmarks/diffusion.py                          # small budget, CPU
    python benchmarks/diffusion.py --epochs 100 --mnist-train 50000 --mnist-epochs 50 --device cuda
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from pathlib import Path

import pyro
import torch

import probgen as pg
from probgen.cli import FAMILY_BUILDERS, build_parser
from probgen.infer import SVIObjective, resolve_objective


# -- 1. training step ----------------------------------------------------------------------


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def plain_vdm_loss(network, x, num_levels, logsnr_min, logsnr_max):
    """Minus the continuous-time ELBO per data point, in plain PyTorch, for levels 0..K-1."""
    n, event_dims = len(x), tuple(range(1, x.dim()))
    y = x * (2.0 / (num_levels - 1)) - 1.0
    device = x.device
    t = 1.0 - (torch.rand((), dtype=torch.float64, device=device)
               + torch.arange(n, dtype=torch.float64, device=device) / n) % 1.0
    logsnr = logsnr_max + (logsnr_min - logsnr_max) * t
    shape = (n,) + (1,) * (x.dim() - 1)
    alpha, sigma = torch.sigmoid(logsnr).sqrt().float().view(shape), torch.sigmoid(-logsnr).sqrt().float().view(shape)
    eps = torch.randn_like(y)
    eps_hat = network(alpha * y + sigma * eps, logsnr.float())
    diffusion = 0.5 * (logsnr_max - logsnr_min) * (eps - eps_hat).pow(2).sum(event_dims)
    end = torch.tensor(logsnr_min, dtype=torch.float64, device=device)
    prior = 0.5 * (torch.sigmoid(end) * (y.double().pow(2) - 1) - torch.nn.functional.logsigmoid(-end)).sum(event_dims)
    start = torch.tensor(logsnr_max, dtype=torch.float64, device=device)
    alpha0, sigma0 = torch.sigmoid(start).sqrt(), torch.sigmoid(-start).sqrt()
    z0 = alpha0.float() * y + sigma0.float() * torch.randn_like(y)
    levels = torch.linspace(-1, 1, num_levels, device=device)
    logits = torch.log_softmax((z0.unsqueeze(-1) - alpha0.float() * levels).square() * (-0.5 / sigma0**2).float(), -1)
    reconstruction = logits.gather(-1, x.long().unsqueeze(-1)).squeeze(-1).sum(event_dims)
    return (prior.float() + diffusion - reconstruction).mean()


def bench_train_step(event_shape, num_levels, batch_size, rounds, steps, device=torch.device("cpu")):
    torch.manual_seed(0)
    diff = pg.Diffusion(pg.DataInfo(event_shape, "discrete", num_levels)).to(device)
    network = copy.deepcopy(diff.network)
    lmin, lmax = diff.schedule.logsnr_min, diff.schedule.logsnr_max
    objective = resolve_objective(diff)
    assert isinstance(objective, SVIObjective)
    optimizers = {"probgen": torch.optim.Adam(diff.parameters(), lr=1e-3),
                  "plain": torch.optim.Adam(network.parameters(), lr=1e-3)}

    def update(group, loss):  # what pg.fit's update does, minus the finite check
        optimizers["probgen"].zero_grad(set_to_none=True)
        loss.backward()
        optimizers["probgen"].step()

    def plain_step(x):
        loss = plain_vdm_loss(network, x, num_levels, lmin, lmax)
        optimizers["plain"].zero_grad(set_to_none=True)
        loss.backward()
        optimizers["plain"].step()
        return loss.item()

    steppers = {"probgen": lambda x: objective.train_step(diff, x, update), "plain": plain_step}
    batches = [torch.randint(0, num_levels, (batch_size, *event_shape), device=device).float() for _ in range(steps)]
    # the same loss: both start from the same weights, so their first losses agree in distribution
    with torch.no_grad():
        torch.manual_seed(1)
        a = statistics.mean(float(objective.eval_loss(diff, batches[0])) for _ in range(20))
        torch.manual_seed(1)
        b = statistics.mean(plain_vdm_loss(network, batches[0], num_levels, lmin, lmax).item() for _ in range(20))
    times = {k: [] for k in steppers}
    for step in steppers.values():
        for x in batches[:2]:
            step(x)  # warm-up
    for _ in range(rounds):
        for kind, step in steppers.items():
            synchronize(device)
            start = time.perf_counter()
            for x in batches:
                step(x)
            synchronize(device)  # the work, not only its launch
            times[kind].append((time.perf_counter() - start) / len(batches))
    return {k: statistics.median(v) for k, v in times.items()}, (a, b)


# -- 2. sampling ---------------------------------------------------------------------------


def bench_sampling(diff, rounds, n=64):
    times = {("ancestral", 1000): [], ("ddim", 50): []}
    for _ in range(rounds):
        for (sampler, steps), record in times.items():
            start = time.perf_counter()
            diff.sample(n, steps=steps, sampler=sampler)
            record.append(time.perf_counter() - start)
    return {key: statistics.median(v) for key, v in times.items()}


# -- 3./4. bounds beside the other families ------------------------------------------------


def cli_model(family, info):
    args = build_parser().parse_args(["fit", family])
    return FAMILY_BUILDERS[family](info, args)


def train_and_bound(family, data, train, test, epochs, batch_size, lr, num_samples, device):
    torch.manual_seed(0)
    model = cli_model(family, data.info)
    start = time.perf_counter()
    pg.fit(model, train, data.valid, epochs=epochs, batch_size=batch_size, lr=lr, device=device, progress=False)
    seconds = time.perf_counter() - start
    method = model.likelihood_methods[0]
    k = 1 if method == "exact" else num_samples
    est = pg.log_likelihood(model, test.to(model.device), method=method, num_samples=k)
    return est, seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    parser.add_argument("--steps", type=int, default=10, help="training steps per timing round")
    parser.add_argument("--sample-rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10, help="optdigits epochs, every family")
    parser.add_argument("--num-samples", type=int, default=10, help="timesteps (diffusion) / importance samples (VAE)")
    parser.add_argument("--mnist-train", type=int, default=5000, help="binarized MNIST training points")
    parser.add_argument("--mnist-test", type=int, default=1000, help="binarized MNIST test points")
    parser.add_argument("--mnist-epochs", type=int, default=2)
    parser.add_argument("--root", default=os.environ.get("PROBGEN_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"),
                        help="folder holding binarized_mnist.npz (default: $PROBGEN_DATA, else ../shared/data)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["step", "sampling", "optdigits", "mnist", "schedule"])
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, pyro {pyro.__version__}, device {device}, threads {torch.get_num_threads()}")

    if "step" not in args.skip:
        print(f"\n1. training step, {args.rounds} interleaved rounds x {args.steps} steps (medians)")
        print(f"{'network':<28}{'batch':>7}{'probgen ms':>13}{'plain ms':>11}{'ratio':>8}{'loss pg/plain':>22}")
        for label, shape, levels, batch in (("U-Net, optdigits 8x8", (8, 8), 17, 128),
                                            ("MLP+embedding, 64 dims", (64,), 17, 128)):
            t, (a, b) = bench_train_step(shape, levels, batch, args.rounds, args.steps, device)
            print(f"{label:<28}{batch:>7}{1e3 * t['probgen']:>13.2f}{1e3 * t['plain']:>11.2f}"
                  f"{t['probgen'] / t['plain']:>8.3f}{a:>11.1f} /{b:>8.1f}")
        print("target: ratio <= 1.10")

    data = pg.datasets.load("optdigits")
    if "sampling" not in args.skip:
        torch.manual_seed(0)
        model = cli_model("diffusion", data.info).to(device)
        t = bench_sampling(model, args.sample_rounds)
        print(f"\n2. sampling 64 optdigits images (U-Net), medians of {args.sample_rounds} interleaved rounds")
        for (sampler, steps), seconds in t.items():
            print(f"{sampler:>9} {steps:>5} steps: {seconds:8.2f} s")
        print(f"ancestral 1000 / DDIM 50: {t[('ancestral', 1000)] / t[('ddim', 50)]:.1f}x")

    if "optdigits" not in args.skip:
        print(f"\n3. optdigits test bound, {args.epochs} epochs each, batch 128, lr 1e-3, all {len(data.test)} test points")
        print(f"{'family':<11}{'estimate':<32}{'nats':>10}{'± se':>7}{'bits/dim':>10}{'train s':>9}")
        families = ["diffusion", "vae"] + (["flow"] if hasattr(pg, "Flow") else [])
        for family in families:
            est, seconds = train_and_bound(family, data, data.train, data.test, args.epochs, 128, 1e-3,
                                           args.num_samples, device)
            print(f"{family:<11}{est.label():<32}{-est.mean:>10.2f}{est.stderr:>7.2f}{est.bits_per_dim:>10.3f}{seconds:>9.1f}")
            if family == "diffusion":
                for name, (nats, bits) in est.term_summary().items():
                    print(f"{'':<11}  {name:<30}{-nats:>10.3f}{'':>7}{bits:>10.4f}")
        if not hasattr(pg, "Flow"):
            print("(pg.Flow does not exist in this checkout: no flow row)")

    if "mnist" not in args.skip:
        mnist = pg.datasets.load("binarized_mnist", root=args.root)
        # a random test subset: the binarized MNIST test split is stored in class order
        train, test = mnist.train[: args.mnist_train], pg.datasets.random_subset(mnist.test, args.mnist_test)
        print(f"\n4. binarized MNIST: {len(train)} training points, {args.mnist_epochs} epochs, "
              f"a fixed random {len(test)} test points (small budget: not a converged number)")
        print(f"{'family':<11}{'estimate':<32}{'nats':>10}{'± se':>7}{'train s':>9}")
        for family in ("diffusion", "vae"):
            est, seconds = train_and_bound(family, mnist, train, test, args.mnist_epochs, 128, 1e-3,
                                           args.num_samples, device)
            print(f"{family:<11}{est.label():<32}{-est.mean:>10.2f}{est.stderr:>7.2f}{seconds:>9.1f}")
            if family == "diffusion":
                for name, (nats, bits) in est.term_summary().items():
                    print(f"{'':<11}  {name:<30}{-nats:>10.3f}")

    if "schedule" not in args.skip:
        probe = data.test[:300].to(device)
        print(f"\n5. continuous-time schedules on optdigits, {args.epochs} epochs each, batch 128, lr 1e-3; "
              f"sd: the one-timestep estimator's standard deviation per data point (50 draws, mean over {len(probe)} test points)")
        print(f"{'schedule':<11}{'nats':>10}{'± se':>7}{'bits/dim':>10}{'sd nats':>10}{'train s':>9}")
        for kind in ("linear", "learned"):
            torch.manual_seed(0)
            model = pg.Diffusion(data.info, schedule=kind)
            start = time.perf_counter()
            pg.fit(model, data.train, epochs=args.epochs, batch_size=128, lr=1e-3, device=device, progress=False)
            seconds = time.perf_counter() - start
            model.eval()
            with torch.no_grad():
                draws = torch.stack([sum(model.elbo_terms(probe, 1).values()) for _ in range(50)])
            est = pg.log_likelihood(model, data.test.to(device), method="elbo", num_samples=args.num_samples)
            print(f"{kind:<11}{-est.mean:>10.2f}{est.stderr:>7.2f}{est.bits_per_dim:>10.3f}"
                  f"{draws.std(0).mean().item():>10.2f}{seconds:>9.1f}")


if __name__ == "__main__":
    main()

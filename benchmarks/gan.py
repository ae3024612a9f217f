"""GANs in probgen: mode coverage, training-step time against plain PyTorch, AIS likelihoods.

Three parts, one process, each printing a table:

1. **Mode coverage** (PacGAN protocol, ``pg.metrics.mode_coverage``) on ``ring8`` and
   ``grid25``, for each loss over several seeds: mean and spread of the modes covered and
   of the high-quality fraction. Published anchors (PacGAN, Table 1, grid25): GAN 17.3
   modes / 94.8%, PacGAN2 23.8 / 91.3%, VEEGAN 24.6 / 40%.
2. **Step time**: ``pg.fit`` epochs (the adversarial objective reading ``"x"`` from the
   model's Pyro trace, with the loop's NaN guard, history and progress) against a plain
   PyTorch loop with the same networks (deep copies of one set of weights), the same loss,
   the same batches and ``torch.optim.Adam``. Medians over interleaved rounds (probgen,
   plain, probgen, ...), so drifts in machine load hit both sides alike; the machine is
   shared, so expect noise.
3. **AIS log-likelihoods** of a GAN and a VAE on optdigits under the same observation model
   over the levels (a discretized logistic of scale sigma around G(z), sigma chosen on
   validation data as Wu et al. 2017 choose their Gaussian's; records before 2026-11-28 used
   that Gaussian, a density), with the BDMC gap
   on simulated data.

    python benchmarks/gan.py                          # small budget, all three parts
    python benchmarks/gan.py --parts coverage --datasets grid25 --losses nonsaturating --seeds 5 --epochs 200 --lr-schedule anneal:50 --r1-weight 0.1
    python benchmarks/gan.py --parts ais --ais-epochs 100 --ais-steps 1000 --leapfrog 10 --chains 16 --num-test 1000
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

import probgen as pg
from probgen.models import DecoderMean
from probgen.infer.adversarial import AdversarialLoss, gradient_penalty


# -- 1. mode coverage ----------------------------------------------------------------------

def schedule(name):
    """``None``, ``"cosine"``, or ``"anneal:N"``, this benchmark's older name for
    ``pg.fit``'s ``"cosine:N"``: the constant rate, then a cosine decay to 0 over the last
    ``N`` epochs."""
    return name.replace("anneal:", "cosine:", 1) if name else name


class CoverageTrace(pg.infer.Callback):
    """Prints mode coverage after every ``every`` epochs (the last is printed by the run)."""

    def __init__(self, name, every, epochs):
        self.name, self.every, self.epochs = name, every, epochs

    def on_epoch_end(self, state):
        if self.every and state.epoch % self.every == 0 and state.epoch < self.epochs:
            gan = state.model
            gan.eval()
            result = pg.metrics.mode_coverage(gan.sample(pg.metrics.PROTOCOL_SAMPLES), self.name)
            gan.train()
            print(f"      after epoch {state.epoch}: {result.modes_covered} modes, "
                  f"{100 * result.high_quality:.1f}% high quality", flush=True)


def coverage(args):
    rows = []
    for name in args.datasets:
        data = pg.datasets.load(name)
        for loss in args.losses:
            results = []
            began = time.perf_counter()
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                torch.manual_seed(seed)
                penalty = {} if args.r1_weight is None else {"r1_weight": args.r1_weight}
                gan = pg.GAN(data.info, args.coverage_latent_dim, loss=loss, pack=args.pack, **penalty,
                             gp_weight=args.gp_weight, hidden=(args.coverage_hidden,) * 3,
                             discriminator_steps=args.discriminator_steps)
                pg.fit(gan, data.train, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=seed,
                       callbacks=[CoverageTrace(name, args.trace_every, args.epochs)], optimizer_options={"betas": args.betas},
                       lr_schedule=schedule(args.lr_schedule), progress=False)
                gan.eval()
                results.append(pg.metrics.mode_coverage(gan.sample(pg.metrics.PROTOCOL_SAMPLES), name))
                print(f"    {name} {loss} seed {seed}: {results[-1].modes_covered} modes, "
                      f"{100 * results[-1].high_quality:.1f}% high quality", flush=True)
            modes = [r.modes_covered for r in results]
            quality = [100 * r.high_quality for r in results]
            perfect = sum(r.modes_covered == r.num_modes and r.high_quality >= 0.9 for r in results)
            spread = lambda v: statistics.stdev(v) if len(v) > 1 else 0.0  # noqa: E731
            rows.append((name, loss, results[0].num_modes, statistics.mean(modes), spread(modes), min(modes),
                         statistics.mean(quality), spread(quality), perfect, len(results),
                         (time.perf_counter() - began) / len(results)))
            print(f"  {name} {loss}: modes {modes}, high quality {[round(q, 1) for q in quality]}", flush=True)
    print(f"\nMode coverage, PacGAN protocol (2500 samples, 3 sd): {args.epochs} epochs x "
          f"{20000 // args.batch_size} steps, batch {args.batch_size}, lr {args.lr} "
          f"({args.lr_schedule or 'constant'}), Adam betas {args.betas}, standard normal prior, "
          f"z in R^{args.coverage_latent_dim}, MLPs 3x{args.coverage_hidden}, "
          f"discriminator steps per generator step {args.discriminator_steps or 'the loss default (1; wgan-gp 5)'}, "
          f"discriminator packing {args.pack}, R1 weight {args.r1_weight if args.r1_weight is not None else 'the GAN default'}"
          + (f", WGAN-GP weight {args.gp_weight}" if "wgan-gp" in args.losses else ""))
    print(f"{'data':<7} {'loss':<14} {'modes (mean ± sd, min)':>24} {'high quality % (mean ± sd)':>28} "
          f"{'seeds at target':>16} {'s/run':>7}")
    for name, loss, m, mean, sd, low, q, qsd, perfect, n, sec in rows:
        print(f"{name:<7} {loss:<14} {f'{mean:.1f} ± {sd:.1f} of {m}, min {low}':>24} {f'{q:.1f} ± {qsd:.1f}':>28} "
              f"{f'{perfect}/{n}':>16} {sec:7.1f}")
    print("target: every seed covers every mode with >= 90% high-quality samples")


# -- 2. step time against a plain PyTorch loop ------------------------------------------------

def plain_epoch(gan, batches, loss, k, opt_g, opt_d):
    """The same adversarial algorithm written directly in PyTorch with the same modules."""
    G, D = gan.generator, gan.discriminator
    squash = gan.info.num_levels  # None for real data
    for real in batches:
        n = len(real)
        with torch.no_grad():
            fakes = G(torch.randn(k * n, gan.latent_dim, device=real.device)).split(n)
        for fake in fakes:
            if squash:
                fake = (torch.tanh(fake) + 1) * ((squash - 1) / 2)
            loss_d = AdversarialLoss(loss).discriminator_loss(D(real), D(fake))
            if loss == "wgan-gp":
                loss_d = loss_d + gradient_penalty(D, real, fake)
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
        for p in D.parameters():
            p.requires_grad_(False)
        fake = G(torch.randn(n, gan.latent_dim, device=real.device))
        if squash:
            fake = (torch.tanh(fake) + 1) * ((squash - 1) / 2)
        loss_g = AdversarialLoss(loss).generator_loss(D(fake))
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        for p in D.parameters():
            p.requires_grad_(True)
        loss_d.item()


def timing(args):
    device = torch.device(args.device)
    cases = [
        ("ring8", "MLP 3x256", dict(data=pg.DataInfo((2,)), latent_dim=2), 256),
        ("optdigits", "DCGAN", dict(data=pg.DataInfo((8, 8), "discrete", 17), latent_dim=16), 64),
    ]
    rows = []
    for data_name, nets, options, batch_size in cases:
        data = pg.datasets.load(data_name).train[: batch_size * args.steps]
        for loss in args.losses:
            torch.manual_seed(0)
            base = pg.GAN(loss=loss, r1_weight=0.0, **options)  # the plain loop has no R1 penalty
            k = base.discriminator_steps
            batches = list(data.to(device).split(batch_size))

            def run_probgen():
                gan = copy.deepcopy(base)
                start = time.perf_counter()
                pg.fit(gan, data, epochs=1, batch_size=batch_size, lr=1e-4, device=device, progress=False)
                return (time.perf_counter() - start) / len(batches)

            def run_plain():
                gan = copy.deepcopy(base).to(device)
                opt_g = torch.optim.Adam([p for n, p in gan.named_parameters() if not n.startswith("discriminator")], 1e-4)
                opt_d = torch.optim.Adam(gan.discriminator.parameters(), 1e-4)
                start = time.perf_counter()
                plain_epoch(gan, batches, loss, k, opt_g, opt_d)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                return (time.perf_counter() - start) / len(batches)

            run_probgen(), run_plain()  # warm-up, not timed
            times = {"probgen": [], "plain": []}
            for r in range(args.rounds):  # interleaved, alternating which side goes first
                for side in (("probgen", "plain") if r % 2 == 0 else ("plain", "probgen")):
                    times[side].append(run_probgen() if side == "probgen" else run_plain())
            ours, plain = statistics.median(times["probgen"]), statistics.median(times["plain"])
            rows.append((data_name, nets, loss, k, batch_size, ours, plain))
    print(f"\nTraining-step time, {device}, {torch.get_num_threads()} threads, median of {args.rounds} interleaved "
          f"rounds (after a warm-up) of {args.steps} steps (one step = k discriminator updates + 1 generator update)")
    print(f"{'data':<10} {'nets':<10} {'loss':<14} {'k':>2} {'batch':>5} {'probgen ms':>11} {'plain ms':>9} {'ratio':>6}")
    for data_name, nets, loss, k, bs, ours, plain in rows:
        print(f"{data_name:<10} {nets:<10} {loss:<14} {k:>2} {bs:>5} {1e3 * ours:11.2f} {1e3 * plain:9.2f} {ours / plain:6.2f}")
    print("target: ratio <= 1.10")


# -- 3. AIS log-likelihoods on optdigits ----------------------------------------------------



def ais(args):
    data = pg.datasets.load("optdigits")
    test, valid = data.test[: args.num_test], data.valid[: args.num_valid]
    options = {"num_steps": args.ais_steps, "leapfrog_steps": args.leapfrog}
    torch.manual_seed(0)
    began = time.perf_counter()
    # MLP networks on both sides, as in Wu et al.'s MNIST comparison; they also keep AIS,
    # thousands of generator gradients per chain, affordable on a CPU
    gan = pg.GAN(data.info, args.latent_dim, network="mlp")
    pg.fit(gan, data.train, epochs=args.ais_epochs, batch_size=64, lr=2e-4, progress=False)
    vae = pg.VAE(data.info, args.latent_dim)
    pg.fit(vae, data.train, data.valid, epochs=args.ais_epochs, progress=False)
    print(f"  trained the GAN and the VAE ({args.ais_epochs} epochs each) in {time.perf_counter() - began:.0f} s", flush=True)
    rows = []
    for name, model in [("GAN (MLP)", gan), ("VAE decoder mean", pg.GAN(data.info, args.latent_dim, generator=DecoderMean(vae)))]:
        began = time.perf_counter()
        sigma, _ = pg.infer.select_obs_noise(model.eval(), valid, args.sigmas, num_samples=max(4, args.chains // 2), **options)
        est = pg.log_likelihood(model, test, "ais", args.chains, **options)
        check = pg.infer.bdmc(model, num_data=args.num_test, num_chains=args.chains, **options)
        rows.append((name, sigma, est, check, time.perf_counter() - began))
    own = pg.log_likelihood(vae, test, "ais", args.chains, **options)
    iwae = pg.log_likelihood(vae, test, "iwae", 1000)
    print(f"\nAIS on optdigits test[:{args.num_test}]: observation model over the 0..16 levels, a logistic of scale "
          f"sigma around G(z) discretized onto them (a probability; sigma chosen on {args.num_valid} validation points), "
          f"latent {args.latent_dim}, "
          f"{args.chains} chains, {args.ais_steps} steps x {args.leapfrog} leapfrog")
    print(f"{'model':<18} {'sigma':>6} {'log p(x) nats':>18} {'BDMC lower':>11} {'BDMC upper':>11} {'gap':>7} {'seconds':>8}")
    for name, sigma, est, check, sec in rows:
        print(f"{name:<18} {sigma:6.2f} {f'{est.mean:.2f} ± {est.stderr:.2f}':>18} {check.lower.mean():11.2f} "
              f"{check.upper.mean():11.2f} {check.gap:7.3f} {sec:8.0f}")
    print(f"VAE, its own discretized-logistic likelihood (a probability): AIS {own.mean:.2f} ± {own.stderr:.2f}, "
          f"IWAE(k=1000) bound {iwae.mean:.2f} ± {iwae.stderr:.2f} nats")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="coverage,timing,ais")
    parser.add_argument("--datasets", default="ring8,grid25")
    parser.add_argument("--losses", default="nonsaturating,hinge,wgan-gp")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--lr-schedule", default=None,
                        help="lr schedule of the coverage runs: cosine (decay to 0 over the run), or cosine:N or anneal:N "
                             "(the same; constant, then a cosine decay over the last N epochs)")
    parser.add_argument("--coverage-latent-dim", type=int, default=2, help="latent dimension of the coverage runs")
    parser.add_argument("--coverage-hidden", type=int, default=256, help="width of the coverage runs' 3-layer MLPs")
    parser.add_argument("--discriminator-steps", type=int, default=None,
                        help="discriminator updates per generator update in the coverage runs (default: the loss's)")
    parser.add_argument("--trace-every", type=int, default=0, help="print coverage every N epochs of a run")
    parser.add_argument("--first-seed", type=int, default=0, help="coverage runs use seeds first-seed, first-seed + 1, ...")
    parser.add_argument("--pack", type=int, default=1, help="PacGAN packing of the coverage runs' discriminator")
    parser.add_argument("--r1-weight", type=float, default=None,
                        help="gamma of the coverage runs' R1 penalty on the data (default: the GAN's, 0.1)")
    parser.add_argument("--gp-weight", type=float, default=10.0, help="lambda of the coverage runs' WGAN-GP penalty")
    parser.add_argument("--betas", default="0.5,0.999", help="Adam's betas in the coverage runs")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="cpu", help="the timing part's device: cpu or cuda")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--latent-dim", type=int, default=10)
    parser.add_argument("--ais-epochs", type=int, default=20)
    parser.add_argument("--ais-steps", type=int, default=100)
    parser.add_argument("--leapfrog", type=int, default=5)
    parser.add_argument("--chains", type=int, default=8)
    parser.add_argument("--num-test", type=int, default=50)
    parser.add_argument("--num-valid", type=int, default=50)
    parser.add_argument("--sigmas", default="1,2,4,8")
    args = parser.parse_args()
    args.datasets, args.losses = args.datasets.split(","), args.losses.split(",")
    args.sigmas = [float(s) for s in args.sigmas.split(",")]
    args.betas = tuple(float(b) for b in args.betas.split(","))
    torch.set_num_threads(args.threads)
    parts = args.parts.split(",")
    unknown = set(parts) - {"coverage", "timing", "ais"}
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}")
    if "coverage" in parts:
        coverage(args)
    if "timing" in parts:
        timing(args)
    if "ais" in parts:
        ais(args)


if __name__ == "__main__":
    main()

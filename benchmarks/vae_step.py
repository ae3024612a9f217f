"""Training-step time of probgen's VAE against a plain PyTorch VAE doing the same math.

Both sides use the same encoder/decoder modules (deep copies of one set of weights),
the same batch, the same single-sample Monte Carlo ELBO (log p(x|z) + log p(z) - log q(z|x)
with z reparameterized) and torch.optim.Adam. probgen's side is what ``pg.fit`` runs per
step: ``SVIObjective.train_step`` with Pyro's ``Trace_ELBO.differentiable_loss``, under
fit's switches (Pyro's argument checks off, param statements off); two more rows time whole
``pg.fit`` calls of one epoch (with their set-up) and ``pg.fit``'s epochs as its history
records them, against the plain loop over the same batches.

Timings are medians over interleaved rounds (probgen, plain, probgen, ...), so drifts in
machine load hit both sides alike.

``--compiled`` adds a third side: the plain loss under ``torch.compile`` (on CUDA with
``mode="reduce-overhead"``, i.e. CUDA graphs), the fastest loop a user could write by hand.
A plain step reads its loss back (``loss.item()``), as a hand-written loop that logs it does;
probgen's step does not (``pg.fit`` reads the epoch's losses once).

    python benchmarks/vae_step.py                 # batch 128 and 1024, CPU
    python benchmarks/vae_step.py --device cuda --compiled
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import pyro
import torch
import torch.nn.functional as F

import probgen as pg
from probgen.infer import SVIObjective, resolve_objective


def plain_elbo_loss(vae, x):
    """-ELBO per data point, written directly in PyTorch with the same modules."""
    loc, scale = vae._posterior_params(x)
    z = loc + scale * torch.randn_like(loc)
    log_q = torch.distributions.Normal(loc, scale).log_prob(z).sum(-1)
    log_prior = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    logits = vae.decoder(z).reshape(x.shape)
    log_lik = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(-1)
    return -(log_lik + log_prior - log_q).mean()


_COMPILED = {}


def compiled_loss(on_cuda: bool):
    """The plain loss under torch.compile, compiled once per process (CUDA graphs on a GPU);
    callers pass the same module each time, so its guards hold and nothing recompiles."""
    if on_cuda not in _COMPILED:
        _COMPILED[on_cuda] = torch.compile(plain_elbo_loss, mode="reduce-overhead" if on_cuda else None)
    return _COMPILED[on_cuda]


def make_step(kind, vae, opt):
    if kind == "probgen":
        objective = resolve_objective(vae)
        assert isinstance(objective, SVIObjective)

        def update(group, loss):  # what pg.fit's update does, minus the finite check
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        def step(x):  # under the same switches as pg.fit's loop
            with pyro.validation_enabled(False), vae.without_param_sites():
                return objective.train_step(vae, x, update)

        return step

    loss_fn = plain_elbo_loss
    if kind == "compiled":
        loss_fn = compiled_loss(next(vae.parameters()).is_cuda)

    def plain(x):
        loss = loss_fn(vae, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    return plain


def time_steps(step, batches, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for x in batches:
        step(x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / len(batches)


def bench_steps(batch_size, device, rounds, steps, compiled=False):
    torch.manual_seed(0)
    base = pg.VAE(pg.DataInfo((28, 28), "binary"), 32, hidden=(256, 256)).to(device)
    models = {"probgen": base, "plain": copy.deepcopy(base)}
    if compiled:
        models["compiled"] = copy.deepcopy(base)
    steppers = {k: make_step(k, m, torch.optim.Adam(m.parameters(), lr=1e-3)) for k, m in models.items()}
    batches = [(torch.rand(batch_size, 28, 28, device=device) < 0.13).float() for _ in range(steps)]
    for step in steppers.values():  # warm-up
        time_steps(step, batches[:3], device)
    times = {k: [] for k in steppers}
    for _ in range(rounds):
        for kind, step in steppers.items():
            times[kind].append(time_steps(step, batches, device))
    return {k: statistics.median(v) for k, v in times.items()}


def bench_fit(batch_size, device, rounds, steps, compiled=False):
    """Whole epochs: pg.fit (shuffling, history, progress off) vs the plain loop. Two rows:
    ``call``, a pg.fit call of one epoch timed from outside (its per-call set-up, data
    validation included, spread over the epoch's steps), and ``epoch``, the second epoch of a
    two-epoch call as its history records it (what every epoch after the first costs), against
    the plain loop's second epoch."""
    torch.manual_seed(0)
    data = (torch.rand(batch_size * steps, 28, 28) < 0.13).float()
    base = pg.VAE(pg.DataInfo((28, 28), "binary"), 32, hidden=(256, 256))
    kinds = ("plain", "compiled") if compiled else ("plain",)
    calls = {"probgen": [], **{kind: [] for kind in kinds}}
    epochs = {"probgen": [], **{kind: [] for kind in kinds}}
    plain_models = {}
    pg.fit(copy.deepcopy(base), data, epochs=1, batch_size=batch_size, device=device, progress=False)  # warm-up
    for _ in range(rounds):
        vae = copy.deepcopy(base)
        start = time.perf_counter()
        pg.fit(vae, data, epochs=1, batch_size=batch_size, device=device, progress=False)
        calls["probgen"].append(time.perf_counter() - start)
        run = pg.fit(copy.deepcopy(base), data, epochs=2, batch_size=batch_size, device=device, progress=False)
        epochs["probgen"].append(run.history["seconds"][-1])

        for kind in kinds:
            vae = plain_models.setdefault(kind, copy.deepcopy(base).to(device))  # one module: no recompiling
            vae.load_state_dict(base.state_dict())
            opt = torch.optim.Adam(vae.parameters(), lr=1e-3)
            step = make_step(kind, vae, opt)
            for record in (calls, epochs):  # the first pass (the call) moves the data, the second reuses them
                start = time.perf_counter()
                x = data.to(device)
                order = torch.randperm(len(x))
                for i in range(0, len(x), batch_size):
                    step(x[order[i : i + batch_size]])
                if device.type == "cuda":
                    torch.cuda.synchronize()
                record[kind].append(time.perf_counter() - start)
    return ({k: statistics.median(v) / steps for k, v in calls.items()},
            {k: statistics.median(v) / steps for k, v in epochs.items()})


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 1024])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--compiled", action="store_true", help="add the plain loss under torch.compile")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, pyro {pyro.__version__}, device {device}, "
          f"threads {torch.get_num_threads()}, {args.rounds} rounds x {args.steps} steps (medians)")
    compiled_header = f"{'compiled ms':>13}{'ratio':>8}" if args.compiled else ""
    print(f"{'what':<22}{'batch':>7}{'probgen ms':>13}{'plain ms':>11}{'ratio':>8}{compiled_header}")
    for batch_size in args.batch_sizes:
        call, epoch = bench_fit(batch_size, device, args.rounds, args.steps, compiled=args.compiled)
        rows = (("train step", bench_steps(batch_size, device, args.rounds, args.steps, compiled=args.compiled)),
                ("pg.fit call / step", call), ("pg.fit epoch / step", epoch))
        for label, t in rows:
            extra = f"{1e3 * t['compiled']:>13.3f}{t['probgen'] / t['compiled']:>8.3f}" if "compiled" in t else ""
            print(f"{label:<22}{batch_size:>7}{1e3 * t['probgen']:>13.3f}{1e3 * t['plain']:>11.3f}"
                  f"{t['probgen'] / t['plain']:>8.3f}{extra}")
    print("target (issue 18): the pg.fit epoch within 1.10x the plain loop on CPU; on a GPU, faster than plain eager")


if __name__ == "__main__":
    main()

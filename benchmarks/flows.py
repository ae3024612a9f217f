"""Cost of probgen's flow wrapper: against native nflows on the same transform, and against zuko.

Rows, for each flow kind (MAF, NSF):

- ``probgen``: the nflows stack behind :class:`probgen.flows.NflowsTransform`, used as a Pyro
  ``TransformedDistribution`` (:class:`probgen.flows.FlowDistribution`);
- ``nflows``: ``nflows.flows.Flow`` on the *same* transform object and the same data;
- ``pg.fit step``: one step of what :func:`probgen.fit` runs for a :class:`probgen.Flow` (a Pyro
  ``Trace_ELBO`` over a model with no latent site, then Adam) on that same transform;
- ``zuko``: zuko's MAF/NSF with the same number of steps and a conditioner width chosen so
  its parameter count matches (printed).

Timed operations: ``log_prob`` of a batch (no grad), ``sample`` of a batch (no grad), and a
training step (``-log_prob(x).mean()``, backward, Adam). Each round times every implementation
once, in a fresh random order; a ratio is the median over rounds of an implementation's time
over native nflows' time *in the same round*, which cancels the load a round shares (the
machine is shared). The ``control`` column times the same nflows call a second time in each
round: its distance from 1.000 is the noise of the measurement. Target: probgen / nflows <=
1.05. Pyro's argument validation is off, as inside ``pg.fit`` and ``pg.log_likelihood`` (which
validate the data once, up front). The wrapper's fixed cost per call, building the
distribution and Pyro's bookkeeping in ``log_prob``, is a few tens of microseconds.

    python benchmarks/flows.py                    # D=8, batch 1024, 5 steps, width 64
    python benchmarks/flows.py --dim 32 --batch 4096 --rounds 30
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import pyro
import torch
import zuko
from nflows.distributions import StandardNormal
from nflows.flows import Flow as NflowsFlow

import probgen as pg
from probgen.infer import resolve_objective


def interleave(functions, rounds, warmup=2, reference="nflows", seed=0, device=torch.device("cpu")):
    """Median time of each function, and the median over rounds of each one's time divided
    by the reference's time in the same round. Every round runs each function once, in a
    fresh random order, so neither drifts in machine load nor a slot in the order favours
    one side; the paired ratios cancel the load that a round shares."""
    order = random.Random(seed)
    for fn in functions.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in functions}
    for _ in range(rounds):
        names = list(functions)
        order.shuffle(names)
        for name in names:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            functions[name]()
            if device.type == "cuda":  # the work, not only its launch
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in times.items()}
    ratios = {name: statistics.median(a / b for a, b in zip(values, times[reference])) for name, values in times.items()}
    return medians, ratios


def num_params(module):
    return sum(p.numel() for p in module.parameters())


def zuko_matching(kind, dim, layers, target, bins):
    """A zuko flow with ``layers`` steps whose parameter count is closest to ``target``."""
    best = None
    for width in range(8, 1025, 8):
        flow = (zuko.flows.MAF(dim, transforms=layers, hidden_features=(width, width)) if kind == "maf"
                else zuko.flows.NSF(dim, transforms=layers, bins=bins, hidden_features=(width, width)))
        gap = abs(num_params(flow) - target)
        if best is None or gap < best[0]:
            best = (gap, flow, width)
        if num_params(flow) > target:
            break
    return best[1], best[2]


def train_step(loss_fn, params):
    opt = torch.optim.Adam(params, lr=1e-4)  # tiny lr: the weights barely move between rounds

    def step():
        loss = loss_fn()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def bench(kind, args):
    torch.manual_seed(0)
    dim = args.dim
    options = {"num_bins": args.bins} if kind == "nsf" else {}
    flow = pg.flows.build(kind, dim, num_layers=args.layers, hidden=args.hidden, **options)
    stack = flow.nflows  # the very same nflows transform on both sides
    native = NflowsFlow(stack, StandardNormal([dim]))
    wrapped = pg.flows.FlowDistribution(flow, dim)
    model = pg.Flow((dim,), flow)  # the pg.fit path over the same transform
    objective = resolve_objective(model)
    zuko_flow, zuko_width = zuko_matching(kind, dim, args.layers, num_params(stack), args.bins)
    device = torch.device(args.device)
    model.to(device)  # the transform's modules are shared with native and wrapped
    native.to(device)
    zuko_flow.to(device)
    x = torch.randn(args.batch, dim, device=device) * 0.8

    print(f"\n{kind.upper()}: D={dim}, {args.layers} steps, batch {args.batch}; parameters: "
          f"nflows/probgen {num_params(stack)}, zuko {num_params(zuko_flow)} (width {zuko_width} x 2)")
    rows = {}
    with torch.no_grad():
        rows["log_prob"] = interleave({
            "probgen": lambda: wrapped().log_prob(x),
            "nflows": lambda: native.log_prob(x),
            "nflows again": lambda: native.log_prob(x),
            "zuko": lambda: zuko_flow().log_prob(x),
        }, args.rounds, device=device)
        sample_rounds = max(3, args.rounds // 3)  # autoregressive sampling costs D passes
        rows["sample"] = interleave({
            "probgen": lambda: wrapped().sample((args.batch,)),
            "nflows": lambda: native.sample(args.batch),
            "nflows again": lambda: native.sample(args.batch),
            "zuko": lambda: zuko_flow().sample((args.batch,)),
        }, sample_rounds, device=device)

    def fit_step():
        def update(group, loss):  # what pg.fit's update does, minus the finite check
            fit_opt.zero_grad(set_to_none=True)
            loss.backward()
            fit_opt.step()

        objective.train_step(model, x, update)

    fit_opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    rows["train step"] = interleave({
        "probgen": train_step(lambda: -wrapped().log_prob(x).mean(), stack.parameters()),
        "nflows": train_step(lambda: -native.log_prob(x).mean(), stack.parameters()),
        "nflows again": train_step(lambda: -native.log_prob(x).mean(), stack.parameters()),
        "pg.fit step": fit_step,
        "zuko": train_step(lambda: -zuko_flow().log_prob(x).mean(), zuko_flow.parameters()),
    }, args.rounds, device=device)

    header = (f"{'operation':<12}{'nflows ms':>11}{'probgen ms':>12}{'ratio':>8}{'pg.fit ms':>11}{'ratio':>8}"
              f"{'zuko ms':>10}{'ratio':>8}{'control':>9}")
    print(header)
    print("-" * len(header))
    for op, (t, r) in rows.items():
        fit = f"{1e3 * t['pg.fit step']:>11.2f}{r['pg.fit step']:>8.3f}" if "pg.fit step" in t else f"{'':>11}{'':>8}"
        print(f"{op:<12}{1e3 * t['nflows']:>11.2f}{1e3 * t['probgen']:>12.2f}{r['probgen']:>8.3f}"
              f"{fit}{1e3 * t['zuko']:>10.2f}{r['zuko']:>8.3f}{r['nflows again']:>9.3f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=8)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--bins", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    parser.add_argument("--kinds", nargs="+", default=["maf", "nsf"], choices=["maf", "nsf"])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, device {args.device}, {args.threads} thread(s); {args.rounds} rounds (sampling: "
          f"{max(3, args.rounds // 3)}), each timing every implementation once in a random order; times are "
          "medians, ratios are medians over rounds of the time over native nflows' time in the same round; "
          "'control' times the same nflows call twice per round: its distance from 1 is the noise")
    # what pg.fit and pg.log_likelihood run: data are validated once up front, not per call
    with pyro.validation_enabled(False):
        for kind in args.kinds:
            bench(kind, args)


if __name__ == "__main__":
    main()

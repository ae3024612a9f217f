"""Data-parallel pg.fit: one process against N (torchrun), same model, same global batch.

    python benchmarks/distributed.py                 # CPU: 1 against 2 processes, gloo, one thread each
    python benchmarks/distributed.py --device cuda   # every visible GPU, NCCL

A compute-bound model (a masked autoregressive flow, 4 layers of 512 hidden units, on
16-dimensional real data) trains for a few epochs at the same global batch on 1 and on N
processes. The table gives seconds per epoch (after a first, warm-up epoch), the speed-up,
and the equality check: a flow on real data draws no noise in its loss, so the N-process
history must match the one-process history up to the order of floating-point sums.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

DIM, HIDDEN, LAYERS, POINTS, BATCH, EPOCHS = 16, 512, 4, 16384, 2048, 4


def train(device: str) -> dict:
    """One run, in this process (as one of a torchrun group when launched so)."""
    import probgen as pg

    torch.set_num_threads(1)
    torch.manual_seed(0)
    mixing = torch.randn(DIM, DIM, generator=torch.Generator().manual_seed(1)) / DIM**0.5
    x = torch.randn(POINTS, DIM, generator=torch.Generator().manual_seed(2)) @ mixing
    flow = pg.Flow(pg.DataInfo((DIM,), "real"), "maf", num_layers=LAYERS, hidden=HIDDEN)
    run = pg.fit(flow, x, epochs=EPOCHS, batch_size=BATCH, progress=False, device=device)
    return {"seconds": run.history["seconds"], "train_loss": run.history["train_loss"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--processes", type=int, default=None,
                        help="N (default: 2 on the CPU, every visible GPU with --device cuda)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # the JSON file a launched run writes
    args = parser.parse_args()
    if args.worker:
        result = train(args.device)
        if int(os.environ.get("RANK", "0")) == 0:
            Path(args.worker).write_text(json.dumps(result))
        return
    processes = args.processes or (torch.cuda.device_count() if args.device == "cuda" else 2)
    with tempfile.TemporaryDirectory() as folder:
        results = {}
        for n in (1, processes):
            out = Path(folder) / f"{n}.json"
            launcher = [sys.executable] if n == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                        f"--nproc_per_node={n}"]
            subprocess.run([*launcher, __file__, "--device", args.device, "--worker", str(out)], check=True,
                           env={**os.environ, "OMP_NUM_THREADS": "1"})
            results[n] = json.loads(out.read_text())
    one, many = results[1], results[processes]
    epoch = {n: sum(r["seconds"][1:]) / len(r["seconds"][1:]) for n, r in results.items()}
    gap = max(abs(a - b) / abs(a) for a, b in zip(one["train_loss"], many["train_loss"]))
    print(f"MAF {LAYERS} x {HIDDEN} on {POINTS} points of dimension {DIM}, global batch {BATCH}, {args.device}")
    print("| processes | s / epoch | speed-up | largest relative gap in the loss history |")
    print("|---|---|---|---|")
    print(f"| 1 | {epoch[1]:.3f} | 1.00 | reference |")
    print(f"| {processes} | {epoch[processes]:.3f} | {epoch[1] / epoch[processes]:.2f} | {gap:.1e} "
          f"({'equal up to the order of sums' if gap < 1e-4 else 'DIFFERENT'}) |")


if __name__ == "__main__":
    main()

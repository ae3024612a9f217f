r"""Data parallelism on ``torch.distributed``: what :func:`probgen.fit` and the estimators
do when a script runs under ``torchrun``.

The same script runs as ``python train.py`` and as ``torchrun --nproc_per_node=N train.py``
(or on several machines through torchrun's rendezvous). Under torchrun, :func:`probgen.fit`
finds the launch in the environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``), joins the
process group (gloo on CPUs, NCCL on CUDA devices, one device per local rank), and trains
data-parallel:

- **The batch keeps its meaning.** ``batch_size`` is the global batch: every process walks
  the same permutation of the data and takes a contiguous share of each batch. Rank
  :math:`r` computes the mean loss :math:`L_r` of its :math:`n_r` points; the gradient of the
  batch's mean loss is :math:`\sum_r (n_r / n) \nabla L_r`, which one all-reduce of the
  weighted gradients gives every rank. So the same call is the same optimisation on 1 or N
  processes: a model whose loss draws no noise (a flow on real data) follows the
  single-process run up to the order of floating-point sums, and models whose loss draws
  noise (each rank has its own random stream) agree with it statistically.
- **Every objective** goes through the loop's one update step, so SVI (model and guide
  parameters, flow priors and posteriors), the diffusion estimator and the adversarial game
  (both optimizers, ``k`` discriminator steps, R1 and gradient penalties) are averaged alike.
- **A non-finite loss on any rank stops every rank with the same error**: the loss travels
  in the same all-reduce as the gradients, so every rank notes the same reduced value and
  stops at the end of the same epoch, with the weights that epoch started from.
- **Rank 0 writes**: checkpoints, the progress bar and TensorBoard logs. Every rank reads
  the same checkpoint on resume; each rank's random state is saved, so a resume on the same
  number of processes repeats the run exactly, and a resume on another number is refused.
- **The group is left at exit.** The process group :func:`probgen.fit` joined is destroyed
  when the script ends (unless the script destroyed it itself): a gloo group still alive when
  the interpreter shuts down can abort the process.
- **Evaluation is sharded**: the validation loss in :func:`probgen.fit`, and, with
  ``sharded=True``, :func:`probgen.log_likelihood` (so :func:`probgen.compare`) and
  :func:`probgen.infer.importance_log_weights` (so the PSIS diagnostics): each rank scores a
  contiguous part of the data and every rank receives all the values, in the original order.

Everything here goes through :class:`Ranks`; in a single process the loop holds ``None``
instead and nothing in this module runs.

References:
    Li et al. (2020), PyTorch Distributed: Experiences on Accelerating Data Parallel
    Training. VLDB.
"""

from __future__ import annotations

import atexit
import dataclasses
import datetime
import os
import sys
from typing import NoReturn

import torch
import torch.distributed as dist

from ..checks import MAX_SEED

__all__ = ["Ranks", "current", "exit_process", "join", "launched", "rank_seed", "sharding"]

#: how long a rank waits for the others to join the process group
STORE_TIMEOUT = datetime.timedelta(minutes=5)

#: environment variables torchrun sets for every worker
LAUNCH_VARIABLES = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def launched() -> bool:
    """Whether this process was started by torchrun (or another launcher that sets its
    variables) as one of several workers."""
    return all(name in os.environ for name in LAUNCH_VARIABLES) and int(os.environ["WORLD_SIZE"]) > 1


@dataclasses.dataclass(frozen=True)
class Ranks:
    """This process's place in the process group, and the collectives the loop needs."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the one process that writes files."""
        return self.rank == 0

    def share(self, n: int) -> slice:
        """This rank's contiguous part of ``n`` items: the first ``n % world_size`` ranks take
        one more than the others."""
        base, extra = divmod(n, self.world_size)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (self.rank < extra))

    def share_sizes(self, sizes) -> set[int]:
        """The sizes of the shares of batches of ``sizes`` (every rank's, not only this one's)."""
        return {len(range(n)[Ranks(r, self.world_size, 0).share(n)]) for n in sizes for r in range(self.world_size)}

    def average_gradients(self, loss: torch.Tensor, params: list[torch.Tensor], weight: float) -> torch.Tensor:
        """All-reduce ``weight * loss`` and ``weight * grad`` of every parameter in one
        flat buffer; ``weight`` is this rank's fraction of the batch. The parameters get the
        batch's gradient (a parameter that no rank reached keeps ``grad = None``, as in one
        process); the batch's loss is returned, on every rank the same."""
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        reached = torch.tensor([p.grad is not None for p in params], dtype=loss.dtype, device=loss.device)
        buffer = torch.cat([loss.detach().reshape(1) * weight, reached, *(g.reshape(-1) * weight for g in grads)])
        dist.all_reduce(buffer)
        reduced_loss, reached, flat = buffer[0], buffer[1 : 1 + len(params)], buffer[1 + len(params) :]
        for p, g, hit in zip(params, flat.split([p.numel() for p in params]), reached.tolist()):
            p.grad = g.view_as(p).clone() if hit else None
        return reduced_loss

    def sum(self, value: float) -> float:
        """The sum of a number over all ranks."""
        total = torch.tensor([value], dtype=torch.float64, device=_collective_device())
        dist.all_reduce(total)
        return float(total.item())

    def broadcast_module(self, module: torch.nn.Module) -> None:
        """Give every rank rank 0's parameters and buffers (each rank built its own, from its
        own random state)."""
        with torch.no_grad():
            for tensor in module.state_dict().values():
                dist.broadcast(tensor, src=0)

    def gather(self, part: torch.Tensor, dim: int = 0) -> torch.Tensor:
        """The ranks' parts (of any lengths along ``dim``) concatenated in rank order, on every rank."""
        device = _collective_device()
        sizes = [torch.zeros(1, dtype=torch.long, device=device) for _ in range(self.world_size)]
        dist.all_gather(sizes, torch.tensor([part.shape[dim]], device=device))
        sizes = [int(s.item()) for s in sizes]
        longest = max(sizes)
        padding = list(part.shape)
        padding[dim] = longest - part.shape[dim]
        padded = torch.cat([part.to(device), torch.zeros(padding, dtype=part.dtype, device=device)], dim)
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(parts, padded.contiguous())
        return torch.cat([p.narrow(dim, 0, n) for p, n in zip(parts, sizes)], dim).to(part.device)

    def gather_objects(self, value) -> list:
        """Every rank's ``value`` (picklable), in rank order, on every rank."""
        values = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def barrier(self) -> None:
        dist.barrier()


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s random stream: rank 0 keeps ``seed`` (a run on one process
    is rank 0 alone), the others get streams of their own."""
    return (seed + 0x9E3779B1 * rank) % (MAX_SEED + 1)


def sharding(sharded: bool, n: int) -> Ranks | None:
    """The ranks to split ``n`` data points over when an estimator is asked for
    ``sharded=True`` in a process group of several ranks, each taking at least one point;
    ``None`` (score them all here) otherwise."""
    ranks = current() if sharded else None
    return ranks if ranks is not None and n >= ranks.world_size else None


def _collective_device() -> torch.device:
    """Where tensors must be for the group's backend (NCCL: this rank's CUDA device)."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def current() -> Ranks | None:
    """The process group this process has joined, or ``None`` (one process, or a group of one)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return None
    return Ranks(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))


def join(device: torch.device) -> Ranks:
    """Join the process group torchrun described (if not joined already): NCCL for CUDA
    devices, gloo for CPUs; on CUDA, this process takes the device of its local rank."""
    if not dist.is_available():
        raise RuntimeError("this torch build has no torch.distributed")
    ranks = current()
    if ranks is not None:
        return ranks
    if not launched():
        raise ValueError("distributed=True needs a torchrun launch (WORLD_SIZE > 1, RANK, LOCAL_RANK, MASTER_ADDR and "
                         "MASTER_PORT in the environment) or a process group of several ranks already initialized")
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    backend = "nccl" if device.type == "cuda" else "gloo"
    # the group is left before the interpreter shuts down: a gloo group still alive then can
    # abort the process (SIGABRT, "terminate called without an active exception") when its
    # worker threads release tensors after Python is gone
    atexit.register(_leave)
    restart = os.environ.get("TORCHELASTIC_RESTART_COUNT")
    if restart is None:  # another launcher: the environment's rendezvous as it is
        dist.init_process_group(backend=backend)
        return current()
    # after an elastic restart the workers meet in the same store as before, where the
    # addresses of the dead attempt's ranks are still written: each attempt keys its own
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    agent_serves = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world_size,
                          is_master=rank == 0 and not agent_serves, timeout=STORE_TIMEOUT)
    dist.init_process_group(backend=backend, store=dist.PrefixStore(f"probgen/attempt{restart}", store), rank=rank,
                            world_size=world_size)
    return current()


def exit_process(code: int = 0) -> NoReturn:
    """End a worker process of a distributed run once its work is done: run the exit handlers
    (probgen's leaves the process group), flush the standard streams, and exit with ``code``
    without the interpreter's finalization. A gloo group can abort a process during
    finalization (SIGABRT, "terminate called without an active exception": its threads
    release Python objects after Python is gone; pytorch issue 190489), even after the group
    was destroyed. ``probgen`` on the command line ends its workers this way; a script of
    your own can call it last."""
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _leave() -> None:
    """Destroy the process group :func:`join` created, unless the script destroyed it already."""
    if dist.is_initialized():
        dist.destroy_process_group()

"""Interruption and hostile files: a run killed at any moment (SIGKILL, mid-save included)
leaves loadable checkpoints and resumes to the history of an uninterrupted run; a checkpoint
that would run code when unpickled is refused without running it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

import probgen as pg
from probgen.infer import CheckpointError

TRAIN = textwrap.dedent(
    """
    import sys, torch, probgen as pg
    torch.set_num_threads(1)
    torch.manual_seed(0)
    flow = pg.Flow(pg.DataInfo((2,), "real"), "maf", num_layers=2, hidden=16)
    x = torch.randn(512, 2, generator=torch.Generator().manual_seed(1))
    pg.fit(flow, x, x[:64], epochs=int(sys.argv[2]), batch_size=32, checkpoint_dir=sys.argv[1], resume=True,
           progress=False, device="cpu")
    """
)


def train(folder, epochs, kill_after=None):
    """Run the training script in a fresh process; with ``kill_after``, SIGKILL it that many
    seconds after it next writes ``last.pt`` (so that kills land during training and saves)."""
    process = subprocess.Popen([sys.executable, "-c", TRAIN, str(folder), str(epochs)], stderr=subprocess.PIPE)
    if kill_after is None:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err.decode()
        return
    last = folder / "last.pt"
    written = last.stat().st_mtime_ns if last.exists() else None
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        if last.exists() and last.stat().st_mtime_ns != written:
            break
        time.sleep(0.005)
    time.sleep(kill_after)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=60)


def history(folder):
    return torch.load(folder / "last.pt", weights_only=True)["history"]


@pytest.mark.parametrize("kills", [pytest.param(2, id="2-kills"), pytest.param(20, id="20-kills", marks=pytest.mark.slow)])
def test_runs_killed_at_random_moments_resume_to_the_uninterrupted_history(tmp_path, kills):
    epochs = max(20, 3 * kills)  # each kill lands after a new save: room for all of them
    train(tmp_path / "straight", epochs)
    folder = tmp_path / "killed"
    # an epoch (and its save) takes about 0.1 s: kills land anywhere in the next few epochs
    delays = torch.empty(kills).uniform_(0.0, 0.3, generator=torch.Generator().manual_seed(kills))
    for delay in delays.tolist():
        train(folder, epochs, kill_after=delay)
        if (folder / "last.pt").exists():  # every checkpoint a kill leaves behind loads
            assert len(history(folder)["train_loss"]) == torch.load(folder / "last.pt", weights_only=True)["epoch"]
    train(folder, epochs)
    straight, resumed = history(tmp_path / "straight"), history(folder)
    assert resumed["train_loss"] == straight["train_loss"] and resumed["valid_loss"] == straight["valid_loss"]
    assert not list(folder.glob("*.tmp"))


class RunsCode:
    """Unpickling this calls ``os.system``: what a hostile checkpoint would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_checkpoint_that_runs_code_when_unpickled_is_refused_without_running_it(tmp_path):
    marker, path = tmp_path / "ran", tmp_path / "model.pt"
    torch.save({"format": 2, "config": {"family": "vae"}, "model": RunsCode(marker)}, path)
    with pytest.raises(CheckpointError, match=f"{path} is not a readable probgen checkpoint"):
        pg.load_model(path)
    path.rename(tmp_path / "last.pt")  # the same file as a training checkpoint to resume
    with pytest.raises(CheckpointError, match=str(tmp_path / "last.pt")):
        pg.fit(pg.Flow((2,), "maf", num_layers=1, hidden=4), torch.randn(8, 2), checkpoint_dir=tmp_path,
               resume=True, progress=False)
    assert not marker.exists()

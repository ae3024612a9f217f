"""What :func:`probgen.fit` promises on bad options, interruption and tampered checkpoints."""

from __future__ import annotations

import pytest
import torch

import probgen as pg
from probgen.infer import CheckpointError
from probgen.infer.checkpoint import load_checkpoint, save_checkpoint


def small_flow():
    torch.manual_seed(0)
    return pg.Flow((2,), "maf", num_layers=1, hidden=8)


@pytest.fixture(scope="module")
def points():
    return torch.randn(96, 2, generator=torch.Generator().manual_seed(0))


def run(points, **options):
    return pg.fit(small_flow(), points, epochs=options.pop("epochs", 2), batch_size=options.pop("batch_size", 32),
                  progress=False, device="cpu", **options)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"clip_grad": -1}, ValueError, "clip_grad must be a positive finite number, got -1"),
        ({"clip_grad": float("nan")}, ValueError, "clip_grad must be a positive finite number, got nan"),
        ({"patience": -1}, ValueError, "patience must be a positive integer, got -1"),
        ({"patience": 0}, ValueError, "patience must be a positive integer, got 0"),
        ({"seed": "abc"}, ValueError, "seed must be an integer from 0 to 4294967295, got 'abc'"),
        ({"seed": -1}, ValueError, "seed must be an integer from 0 to 4294967295, got -1"),
        ({"seed": 2**32}, ValueError, "seed must be an integer from 0 to 4294967295"),
        ({"lr": 1e39}, ValueError, "lr must be a positive finite number below 3.245e\\+32, got 1e\\+39"),
        ({"lr": -1e-3}, ValueError, "lr must be a positive finite number"),
        ({"lr": {"model": "fast"}}, ValueError, "lr\\['model'\\] must be a positive finite number"),
        ({"optimizer": "adam"}, TypeError, "optimizer must be a torch.optim.Optimizer class"),
        ({"optimizer_options": {"betas": (0.5, 0.9), "bogus": 1}}, ValueError,
         "optimizer_options has unknown options \\['bogus'\\]"),
        ({"optimizer_options": [0.5]}, TypeError, "optimizer_options must be a dict"),
        ({"callbacks": [print]}, TypeError, "callbacks must be probgen.infer.Callback objects"),
        ({"restore_best": "no"}, TypeError, "restore_best must be True or False, got 'no'"),
        ({"progress": 1}, TypeError, "progress must be True or False, got 1"),
    ],
)
def test_bad_options_are_refused_before_any_step(points, options, error, message):
    flow = small_flow()
    before = [p.clone() for p in flow.parameters()]
    with pytest.raises(error, match=message):
        pg.fit(flow, points, epochs=2, progress=options.pop("progress", False), device="cpu", **options)
    assert all(torch.equal(a, b) for a, b in zip(before, flow.parameters()))


def test_a_checkpoint_dir_that_cannot_be_a_folder_is_refused_before_training(points, tmp_path):
    taken = tmp_path / "taken"
    taken.write_text("keep")
    for folder in (taken, taken / "below"):
        with pytest.raises(ValueError, match="cannot be a folder: .* is a file"):
            run(points, checkpoint_dir=folder)
    assert taken.read_text() == "keep"


@pytest.mark.parametrize(("option", "value"), [("seed", 1), ("batch_size", 16)])
def test_resuming_with_another_seed_or_batch_size_is_refused(points, tmp_path, option, value):
    run(points, checkpoint_dir=tmp_path, seed=0, batch_size=32)
    with pytest.raises(ValueError, match=f"written by a run with {option}=.*this call has {option}={value}"):
        run(points, checkpoint_dir=tmp_path, resume=True, epochs=3, **{"seed": 0, "batch_size": 32, option: value})


def test_temporary_files_of_a_killed_save_are_removed_and_the_run_resumes(points, tmp_path):
    straight = run(points, checkpoint_dir=tmp_path / "straight", epochs=3).history["train_loss"]
    folder = tmp_path / "killed"
    run(points, checkpoint_dir=folder, epochs=2)
    # what a kill between writing the temporary file and renaming it leaves behind
    (folder / ".last.pt.x1y2z3.tmp").write_bytes(b"half a checkpoint")
    (folder / ".best.pt.a1b2c3.tmp").write_bytes(b"")
    resumed = run(points, checkpoint_dir=folder, epochs=3, resume=True).history["train_loss"]
    assert resumed == straight
    assert sorted(p.name for p in folder.iterdir()) == ["best.pt", "last.pt"]


def tamper(path, **changes):
    state = load_checkpoint(path, required=())
    state.update(changes)
    save_checkpoint(state, path)


@pytest.mark.parametrize(
    "changes",
    [
        {"config": ["not", "a", "dict"]},
        {"rng": {}},
        {"rng": {"torch": torch.zeros(3)}},
        {"history": torch.zeros(2)},
        {"history": {"train_loss": [1.0]}},
        {"epoch": "two"},
        {"epoch": -1},
        {"optimizers": {}},
        {"optimizers": {"model": {"state": {}, "param_groups": "x"}}},
        {"model": {"weight": "not a tensor"}},
        {"model": {"weight": torch.zeros(3)}},
    ],
    ids=lambda changes: "-".join(f"{k}={type(v).__name__}" for k, v in changes.items()),
)
def test_a_tampered_checkpoint_is_refused_with_its_path(points, tmp_path, changes):
    run(points, checkpoint_dir=tmp_path)
    tamper(tmp_path / "last.pt", **changes)
    with pytest.raises((CheckpointError, ValueError), match=str(tmp_path / "last.pt")):
        run(points, checkpoint_dir=tmp_path, resume=True, epochs=3)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"family": "vae", "data": [2], "latent_dim": 2, "colour": "red"}, "a vae config has unknown keys \\['colour'\\]"),
        (["family", "vae"], "a model config must be a dict, got list"),
        ({"family": "nope", "data": [2]}, "unknown model family 'nope'"),
        ({"family": "vae", "data": [2], "latent_dim": -2}, "latent_dim must be a positive integer, got -2"),
    ],
)
def test_a_model_file_whose_config_builds_nothing_is_refused_with_its_path(tmp_path, config, message):
    path = tmp_path / "model.pt"
    save_checkpoint({"format": 2, "config": config, "model": {}}, path)
    with pytest.raises(CheckpointError, match=f"{path} holds a config that builds no model: {message}"):
        pg.load_model(path)

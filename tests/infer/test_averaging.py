"""Model-declared fit defaults and the moving average of the weights (pg.fit(..., ema=))."""

from __future__ import annotations

import copy

import pytest
import torch

import probgen as pg
from probgen.infer.averaging import WeightAverage


def small_flow():
    torch.manual_seed(0)
    return pg.Flow((2,), "maf", num_layers=1, hidden=8)


def data(n=96, seed=0):
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))


def test_the_average_follows_its_formula():
    layer = torch.nn.Linear(2, 1)
    average = WeightAverage(layer, 0.9)
    start = copy.deepcopy(layer.state_dict())
    expected = {name: value.clone() for name, value in start.items()}
    for n in range(1, 30):
        with torch.no_grad():
            for p in layer.parameters():
                p.add_(torch.randn_like(p))
        average.update()
        keep = min(0.9, (1 + n) / (10 + n))
        for name, value in layer.state_dict().items():
            expected[name] = keep * expected[name] + (1 - keep) * value
    current = copy.deepcopy(layer.state_dict())
    with average.swapped():
        for name, value in layer.state_dict().items():
            torch.testing.assert_close(value, expected[name])
    for name, value in layer.state_dict().items():  # the current weights come back
        assert torch.equal(value, current[name])
    with pytest.raises(ValueError, match=r"ema must be a number from 0 up to \(not including\) 1"):
        WeightAverage(layer, 1.0)


def test_fit_ends_with_the_averaged_weights_and_validates_them():
    train, valid = data(), data(32, seed=1)
    plain = pg.fit(small_flow(), train, valid, epochs=3, batch_size=32, progress=False, restore_best=False)
    flow = small_flow()
    run = pg.fit(flow, train, valid, epochs=3, batch_size=32, ema=0.5, progress=False, restore_best=False)
    assert run.history["train_loss"] == plain.history["train_loss"]  # training itself is unchanged
    # the exact log-likelihood of the final (averaged) weights is the last validation loss
    final = -pg.log_likelihood(flow, valid, method="exact").mean
    assert final == pytest.approx(run.history["valid_loss"][-1], abs=1e-4)
    assert run.history["valid_loss"] != plain.history["valid_loss"]


def test_resume_with_an_average_repeats_an_uninterrupted_run(tmp_path):
    train, valid = data(), data(32, seed=1)
    whole_model = small_flow()
    whole = pg.fit(whole_model, train, valid, epochs=4, batch_size=32, ema=0.8, progress=False)
    pg.fit(small_flow(), train, valid, epochs=2, batch_size=32, ema=0.8, checkpoint_dir=tmp_path, progress=False)
    state = pg.infer.load_checkpoint(tmp_path / "last.pt")
    assert state["ema"]["steps"] == 6 and state["ema"]["decay"] == 0.8
    resumed_model = small_flow()
    resumed = pg.fit(resumed_model, train, valid, epochs=4, batch_size=32, ema=0.8, checkpoint_dir=tmp_path,
                     resume=True, progress=False)
    assert resumed.history["valid_loss"] == whole.history["valid_loss"]
    for a, b in zip(whole_model.state_dict().values(), resumed_model.state_dict().values()):
        assert torch.equal(a, b)
    # a checkpoint's "model" is the averaged model: loading it gives the validated weights
    best = pg.load_model(tmp_path / "best.pt")
    assert -pg.log_likelihood(best, valid, method="exact").mean == pytest.approx(resumed.best_loss, abs=1e-4)
    for ema in (None, 0.9):
        with pytest.raises(ValueError, match="resume with the same ema"):
            pg.fit(small_flow(), train, valid, epochs=5, batch_size=32, ema=ema, checkpoint_dir=tmp_path,
                   resume=True, progress=False)


def test_model_fit_defaults_apply_unless_the_call_sets_its_own(tmp_path):
    data = pg.datasets.load("ring8")
    gan = pg.GAN(data.info, 2, hidden=(8,))
    assert gan.fit_defaults["optimizer_options"]["betas"] == (0.5, 0.999)

    def settings(folder, **options):
        options.setdefault("epochs", 1)
        pg.fit(gan, data.train[:128], batch_size=128, progress=False, checkpoint_dir=tmp_path / folder, **options)
        groups = pg.infer.load_checkpoint(tmp_path / folder / "last.pt")["optimizers"]["generator"]["param_groups"]
        return groups[0]

    assert tuple(settings("a")["betas"]) == (0.5, 0.999)
    merged = settings("b", optimizer_options={"weight_decay": 1e-5})  # merged under the call's own
    assert tuple(merged["betas"]) == (0.5, 0.999) and merged["weight_decay"] == 1e-5
    assert tuple(settings("c", optimizer_options={"betas": (0.9, 0.99)})["betas"]) == (0.9, 0.99)
    assert "betas" not in settings("d", optimizer=torch.optim.SGD)  # Adam's options stay with Adam
    # the GAN's schedule holds the rate, then takes it down to 0 over the last quarter of the epochs
    assert settings("e", epochs=4)["lr"] == pytest.approx(0.0, abs=1e-12)
    assert settings("f", epochs=4, lr_schedule="constant")["lr"] == 1e-3
    assert pg.Diffusion((2,), num_steps=10).fit_defaults == {"ema": 0.999}

    class Odd(pg.Flow):
        fit_defaults = {"momentum": 0.9}

    with pytest.raises(ValueError, match=r"Odd.fit_defaults sets \['momentum'\]; it may set"):
        pg.fit(Odd((2,), "maf", num_layers=1, hidden=4), data.train[:64], epochs=1, progress=False)

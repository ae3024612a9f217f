"""TensorBoard logs of pg.fit, read back with TensorBoard's own event reader."""

from __future__ import annotations

import pytest
import torch

import probgen as pg

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator",
                                        reason="the tensorboard package (probgen[tensorboard]) is not installed")


def read(folder):
    events = event_accumulator.EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "histograms": 0})
    events.Reload()
    return events


def test_a_diffusion_run_logs_losses_rates_gradient_norms_terms_and_samples(tmp_path):
    x = torch.randn(128, 2, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = pg.Diffusion(pg.DataInfo((2,), "real"), num_steps=4)
    run = pg.fit(model, x, x[:32], epochs=3, batch_size=32, progress=False, device="cpu", log_dir=tmp_path, log_every=2)
    events = read(tmp_path)
    tags = events.Tags()
    for tag in ("loss/train", "loss/valid", "lr/model", "grad_norm/model", "seconds_per_epoch"):
        assert [e.step for e in events.Scalars(tag)] == [1, 2, 3], tag
    assert [e.value for e in events.Scalars("loss/valid")] == pytest.approx(run.history["valid_loss"])
    terms = [tag for tag in tags["scalars"] if tag.startswith("terms/")]
    assert terms, tags["scalars"]  # the diffusion's ELBO terms, one scalar each
    assert all(len(events.Scalars(tag)) == 3 for tag in terms)
    assert all(e.value > 0 for e in events.Scalars("grad_norm/model"))
    assert [e.step for e in events.Histograms("samples/dim0")] == [1, 2]  # the first epoch, then every 2nd


def test_an_image_model_logs_a_sample_grid_and_logging_leaves_the_run_unchanged(tmp_path):
    digits = pg.datasets.load("optdigits")

    def run(**options):
        torch.manual_seed(0)
        vae = pg.VAE(digits.info, 2, hidden=(16,))
        return pg.fit(vae, digits.train[:256], digits.valid[:64], epochs=2, batch_size=64, progress=False,
                      device="cpu", **options)

    logged = run(log_dir=tmp_path / "logs")
    assert logged.history["train_loss"] == run().history["train_loss"]  # logging draws with its own random state
    images = read(tmp_path / "logs").Images("samples")
    assert [image.step for image in images] == [1] and images[0].width == images[0].height == 8 * 8  # 8 x 8 digits


def test_a_log_dir_that_cannot_be_a_folder_is_refused_before_training(tmp_path):
    (tmp_path / "taken").write_text("keep")
    with pytest.raises(ValueError, match="log_dir .* cannot be a folder"):
        pg.fit(pg.Flow((2,), "maf", num_layers=1, hidden=4), torch.randn(8, 2), progress=False,
               log_dir=tmp_path / "taken")

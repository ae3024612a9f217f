"""pg.GAN: the implicit Pyro program, training in pg.fit, checkpoints with two optimizers."""

from __future__ import annotations

import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch

import probgen as pg


def test_the_program_puts_g_of_z_at_site_x():
    gan = pg.GAN((2,), 3, hidden=(16,))
    trace = poutine.trace(gan.model).get_trace(num_data=5)
    site, z = trace.nodes["x"], trace.nodes["z"]["value"]
    assert isinstance(site["fn"], dist.Delta) and not site["is_observed"]
    assert z.shape == (5, 3) and torch.equal(site["value"], gan.generate(z))
    assert [f.name for f in site["cond_indep_stack"]] == ["data"]
    assert site["value"].requires_grad  # differentiable in G's parameters
    gan.obs_noise = 0.3
    site = poutine.trace(gan.model).get_trace(num_data=4).nodes["x"]
    assert isinstance(site["fn"].base_dist, dist.Normal) and (site["fn"].base_dist.scale == 0.3).all()
    assert gan.config["obs_noise"] == 0.3


def test_default_networks_and_sample_shapes():
    torch.manual_seed(0)
    images = pg.GAN(pg.DataInfo((8, 8), "discrete", 17), 4)
    assert type(images.generator).__name__ == "DCGANGenerator" and images.config["network"] == "dcgan"
    x = images.sample(6)
    assert x.shape == (6, 8, 8) and x.min() >= 0 and x.max() <= 16 and torch.equal(x, x.round())
    mean = images.sample(6, mean=True)  # G(z) itself, between the levels
    # (a sigmoid scaled to the levels' range: float32 rounds its tails to the ends, 0 and 16)
    assert not torch.equal(mean, mean.round()) and mean.min() >= 0 and mean.max() <= 16
    assert (images.info.support, images.info.num_levels) == ("discrete", 17)
    images.obs_noise = 1.0  # a logistic of scale 1 level, discretized: still a probability of the levels
    noisy = images.sample(6)
    assert images.info.support == "discrete" and torch.equal(noisy, noisy.round()) and 0 <= noisy.min() <= noisy.max() <= 16
    images.obs_noise = None
    assert images.discriminator(x).shape == (6,)
    vectors = pg.GAN((5,), 2, spectral_norm=True)
    assert type(vectors.generator).__name__ == "MLPGenerator"
    assert any(hasattr(m, "parametrizations") for m in vectors.discriminator.modules())
    # nets accept extra leading dims (AIS runs chains x data at once)
    assert vectors.generate(torch.randn(3, 4, 2)).shape == (3, 4, 5)
    assert images.eval().generate(torch.randn(3, 4, 4)).shape == (3, 4, 8, 8)


def test_training_on_ring8_covers_more_modes_than_at_initialization():
    torch.manual_seed(0)
    gan = pg.GAN((2,), 2, hidden=(64, 64), loss="hinge")
    before = pg.metrics.mode_coverage(gan.sample(2500), "ring8")
    data = pg.datasets.load("ring8")
    # 300 generator steps; on the CPU, whose random stream the seed above fixes (a GPU's
    # stream differs, and 300 steps of one run are a single draw of a noisy outcome)
    pg.fit(gan, data.train[:19200], epochs=1, batch_size=64, lr=1e-3, optimizer_options={"betas": (0.5, 0.999)},
           progress=False, device="cpu")
    after = pg.metrics.mode_coverage(gan.sample(2500), "ring8")
    assert after.modes_covered > before.modes_covered
    radius = gan.sample(2500).norm(dim=1)
    assert (radius - 1).abs().median() < 0.5  # the samples moved out to the ring


def _fit(gan, data, epochs, folder, resume=False):
    # a constant rate: the GAN's default schedule depends on the number of epochs
    return pg.fit(gan, data, data[:64], epochs=epochs, batch_size=64, checkpoint_dir=folder, resume=resume,
                  lr={"generator": 1e-3, "discriminator": 2e-3}, lr_schedule="constant", progress=False, seed=3)


@pytest.mark.parametrize("loss", ["nonsaturating", "wgan-gp"])
def test_checkpoints_and_resume_with_both_optimizers(tmp_path, loss):
    data = pg.datasets.load("ring8").train[:256]
    torch.manual_seed(1)
    straight = pg.GAN((2,), 2, hidden=(16, 16), loss=loss)
    torch.manual_seed(1)
    resumed = pg.GAN((2,), 2, hidden=(16, 16), loss=loss)
    full = _fit(straight, data, 3, tmp_path / "a")
    _fit(resumed, data, 2, tmp_path / "b")
    state = pg.infer.load_checkpoint(tmp_path / "b" / "last.pt")
    assert set(state["optimizers"]) == {"generator", "discriminator"}
    assert state["optimizers"]["discriminator"]["param_groups"][0]["lr"] == 2e-3
    torch.manual_seed(123)  # resuming restores the random state; this must not matter
    run = _fit(resumed, data, 3, tmp_path / "b", resume=True)
    assert run.history["train_loss"] == full.history["train_loss"]
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    with pytest.raises(FileExistsError, match="already holds a checkpoint"):
        _fit(resumed, data, 3, tmp_path / "b")


def test_save_and_load_round_trip(tmp_path):
    info = pg.DataInfo((8, 8), "discrete", 17, name="optdigits")
    gan = pg.GAN(info, 4, loss="hinge", obs_noise=0.5)
    gan.obs_noise = 1.5
    pg.save_model(gan, tmp_path / "gan.pt")
    loaded = pg.load_model(tmp_path / "gan.pt").eval()
    assert loaded.obs_noise == 1.5 and loaded.loss == "hinge" and loaded.info == info
    z = torch.randn(3, 4)
    assert torch.equal(loaded.generate(z), gan.eval().generate(z))
    packed = pg.GAN((8, 8), 4, pack=3)  # the DCGAN discriminator takes packs as channels
    assert packed.discriminator.net[0].in_channels == 3
    pg.save_model(packed, tmp_path / "packed.pt")
    loaded = pg.load_model(tmp_path / "packed.pt")
    assert loaded.pack == 3 and loaded.discriminator.net[0].in_channels == 3
    custom = pg.GAN((2,), 2, generator=torch.nn.Linear(2, 2))
    assert custom.config is None
    with pytest.raises(ValueError, match="no config to rebuild it from"):
        pg.save_model(custom, tmp_path / "custom.pt")


def test_gan_bad_input():
    with pytest.raises(ValueError, match=r"unknown adversarial loss 'wgan'; expected one of .*'hinge', 'wgan-gp'"):
        pg.GAN((2,), 2, loss="wgan")  # refused when the model is built, not when it trains
    with pytest.raises(ValueError, match="latent_dim must be a positive integer"):
        pg.GAN((2,), 0)
    with pytest.raises(ValueError, match="obs_noise must be a positive finite number"):
        pg.GAN((2,), 2, obs_noise=-1.0)
    with pytest.raises(ValueError, match="discrete data needs num_levels >= 2"):
        pg.GAN(pg.DataInfo((2,), "discrete", 1), 2)
    with pytest.raises(ValueError, match="flip probability, below 0.5"):
        pg.GAN(pg.DataInfo((2,), "binary"), 2, obs_noise=0.5)
    with pytest.raises(ValueError, match="network must be 'mlp' or 'dcgan'"):
        pg.GAN((2,), 2, network="resnet")
    with pytest.raises(ValueError, match="height and width divisible by 4"):
        pg.GAN((6, 6), 2, network="dcgan")
    gan = pg.GAN(pg.DataInfo((8, 8), "discrete", 17), 2)
    with pytest.raises(ValueError, match=r"integer levels \{0, 1, ..., 16\}"):
        pg.fit(gan, torch.full((4, 8, 8), 0.5), epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"shape \(num_data, 8, 8\)"):
        pg.fit(gan, torch.zeros(4, 64), epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"lr must give one learning rate for each parameter group \[.discriminator., .generator.\]; it has none for \[.discriminator.\]"):
        pg.fit(gan, torch.zeros(4, 8, 8), epochs=1, lr={"generator": 1e-3}, progress=False)


def test_a_gan_with_observation_noise_is_refused_by_the_adversarial_game_before_any_step():
    # binary data: x ~ Bernoulli(eps + (1 - 2 eps) G(z)) has no reparameterized draw (on real data the
    # Gaussian noise is reparameterized, and the game trains on noisy samples)
    gan = pg.GAN(pg.DataInfo((2,), "binary"), 2, hidden=(8,))
    gan.obs_noise = 0.3
    before = [p.clone() for p in gan.parameters()]
    with pytest.raises(ValueError, match="has obs_noise=0.3, so its site 'x' draws from the observation model.*set "
                                         "obs_noise = None"):
        pg.fit(gan, torch.ones(64, 2), epochs=1, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, gan.parameters()))


def test_the_loss_names_a_gan_takes_are_the_adversarial_games():
    from probgen.models.gan import LOSSES

    assert list(LOSSES) == [loss.value for loss in pg.infer.AdversarialLoss]
    with pytest.raises(ValueError, match=r"unknown adversarial loss 'nope'; expected one of \['nonsaturating'"):
        pg.GAN((2,), 2, loss="nope")

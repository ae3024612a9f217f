"""Every family built from the data's description: the right likelihood for each support,
training and sampling inside the support, mismatches refused before work, the description
kept in checkpoints, and the GAN's discrete likelihood against an exact oracle."""

from __future__ import annotations

import math

import pyro.distributions as dist
import pytest
import torch

import probgen as pg
from probgen.distributions import BernoulliLikelihood, DiscretizedLogistic, DiscretizedLogisticLikelihood, NormalLikelihood

SHAPE = (6,)
INFOS = {
    "binary": pg.DataInfo(SHAPE, "binary"),
    "levels": pg.DataInfo(SHAPE, "discrete", 17),
    "real": pg.DataInfo(SHAPE, "real"),
}


def data_for(support, n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    if support == "binary":
        return torch.randint(0, 2, (n, *SHAPE), generator=g).float()
    if support == "levels":
        return torch.randint(0, 17, (n, *SHAPE), generator=g).float()
    return torch.randn(n, *SHAPE, generator=g)


def build(family, info):
    if family == "vae":
        return pg.VAE(info, 2, hidden=(16,))
    if family == "hvae":
        return pg.HierarchicalVAE(info, (3, 2), hidden=(16,))
    if family == "flow":
        return pg.Flow(info, "maf", num_layers=1, hidden=8)
    if family == "diffusion":
        return pg.Diffusion(info, num_steps=10)
    return pg.GAN(info, 2, hidden=(16,))


def in_support(x, support):
    if support == "real":
        return bool(torch.isfinite(x).all())
    top = 1 if support == "binary" else 16
    return bool(((x == x.round()) & (x >= 0) & (x <= top)).all())


@pytest.mark.parametrize("support", list(INFOS))
def test_the_vae_likelihood_follows_the_support(support):
    expected = {"binary": BernoulliLikelihood, "levels": DiscretizedLogisticLikelihood, "real": NormalLikelihood}
    vae = build("vae", INFOS[support])
    assert type(vae.likelihood) is expected[support] and vae.info == INFOS[support]


@pytest.mark.parametrize("support", list(INFOS))
def test_flow_diffusion_and_gan_follow_the_support(support):
    info = INFOS[support]
    flow, diff, gan = build("flow", info), build("diffusion", info), build("gan", info)
    # a flow dequantizes discrete data (a latent "y", bounds) and is exact on real data
    assert flow.likelihood_methods == (("exact",) if support == "real" else ("iwae", "elbo"))
    # the diffusion's decoder is categorical over the levels, or a Normal for real data
    decoder = diff.decoder(torch.zeros(3, *SHAPE)).base_dist
    assert isinstance(decoder, dist.Normal if support == "real" else dist.Categorical)
    if support != "real":
        assert decoder.logits.shape[-1] == info.num_levels
    # the GAN's observation model is over the data's own support
    gan.obs_noise = 0.1
    observation = gan.observation(torch.randn(3, 2)).base_dist
    assert isinstance(observation, {"binary": dist.Bernoulli, "levels": DiscretizedLogistic, "real": dist.Normal}[support])
    assert gan.info == info


@pytest.mark.parametrize("family", ["vae", "hvae", "flow", "diffusion", "gan"])
@pytest.mark.parametrize("support", list(INFOS))
def test_each_family_trains_and_samples_inside_the_support(family, support):
    torch.manual_seed(0)
    model = build(family, INFOS[support])
    x = data_for(support)
    run = pg.fit(model, x, epochs=1, batch_size=16, progress=False, device="cpu")
    assert len(run.history["train_loss"]) == 1 and math.isfinite(run.history["train_loss"][0])
    model.eval()
    samples = model.sample(20)
    assert samples.shape == (20, *SHAPE) and in_support(samples, support)
    if family == "gan":
        model.obs_noise = 0.2
        assert in_support(model.sample(20), support)
    if family != "gan":  # a GAN's likelihood needs obs_noise and AIS: the oracle test below
        estimate = pg.log_likelihood(model, x[:8], num_samples=2)
        assert estimate.density == (support == "real")
        if support != "real":
            assert (estimate.pointwise <= 1e-6).all()  # log-probabilities of discrete values


def test_a_support_mismatch_is_refused_before_any_work(tmp_path):
    levels = data_for("levels")
    binary_vae = pg.VAE(INFOS["binary"], 2, hidden=(8,))
    with pytest.raises(ValueError, match=r"this VAE models binary values \{0, 1\}, but train holds .* pg.VAE\(data.info"):
        pg.fit(binary_vae, levels, epochs=1, progress=False, checkpoint_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match="this GAN models binary values"):
        pg.fit(pg.GAN(INFOS["binary"], 2, hidden=(8,)), levels, epochs=1, progress=False)
    # an event shape alone means real data; fitting it to levels must be asked for explicitly
    for family in ("vae", "hvae", "flow", "diffusion", "gan"):
        with pytest.raises(ValueError, match=r"built from an event shape alone.*'discrete', 17.*pg.DataInfo\(\(6,\), 'real'\)"):
            pg.fit(build(family, SHAPE), levels, epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"built from an event shape alone.*\(6,\), 'binary'"):
        pg.log_likelihood(pg.VAE(SHAPE, 2, hidden=(8,)), data_for("binary")[:4])
    run = pg.fit(pg.VAE(INFOS["real"], 2, hidden=(8,)), levels, epochs=1, progress=False)  # stated: a density
    assert math.isfinite(run.best_loss)
    assert pg.VAE(SHAPE, 2, likelihood="normal").support_assumed is False
    # a likelihood that does not cover the described support is refused when the model is built
    with pytest.raises(ValueError, match=r"BernoulliLikelihood.* models binary values \{0, 1\}, but the data are integer levels"):
        pg.VAE(INFOS["levels"], 2, likelihood="bernoulli")
    with pytest.raises(ValueError, match=r"models integer levels \{0, 1, ..., 4\}, but the data are integer levels \{0, 1, ..., 16\}"):
        pg.Diffusion(INFOS["levels"], likelihood="categorical", num_levels=5)


@pytest.mark.parametrize("family", ["vae", "hvae", "flow", "diffusion", "gan"])
def test_checkpoints_keep_the_description(tmp_path, family):
    info = pg.DataInfo(SHAPE, "discrete", 17, name="six levels")
    model = build(family, info)
    pg.fit(model, data_for("levels"), epochs=1, batch_size=32, progress=False, checkpoint_dir=tmp_path / "run")
    saved = pg.infer.load_checkpoint(tmp_path / "run" / "last.pt")
    assert saved["config"]["data"] == info.to_config()
    loaded = pg.load_model(tmp_path / "run" / "last.pt")
    assert loaded.info == info and type(loaded) is type(model)
    shape_only = build(family, SHAPE)
    assert pg.load_model(pg.save_model(shape_only, tmp_path / "shape.pt")).support_assumed


def test_configs_written_before_the_description_still_load():
    old = {
        "vae": {"family": "vae", "event_shape": [6], "latent_dim": 2, "likelihood": "categorical", "num_levels": 17,
                "prior": "normal", "posterior": "normal", "network": "mlp", "hidden": [8], "activation": "silu"},
        "flow": {"family": "flow", "event_shape": [6], "transform": "maf", "num_layers": 1, "hidden": 8,
                 "context_dim": None, "support": "discrete", "num_levels": 17, "dequantization": "uniform",
                 "logit_alpha": 0.05},
        "gan": {"family": "gan", "event_shape": [6], "latent_dim": 2, "loss": "hinge", "spectral_norm": False,
                "obs_noise": 0.5, "prior": "normal", "num_levels": 2, "network": "mlp", "discriminator_steps": 1,
                "hidden": [8], "pack": 1, "r1_weight": 0.0, "gp_weight": 10.0},
    }
    vae, flow, gan = (pg.models.build_model(config) for config in old.values())
    assert (vae.info.support, vae.info.num_levels) == ("discrete", 17)
    assert flow.info == pg.DataInfo(SHAPE, "discrete", 17)
    # its obs_noise was a Gaussian's sigma: on binary data the observation model is now Bernoulli
    assert gan.info == pg.DataInfo(SHAPE, "binary") and gan.obs_noise is None


# -- the GAN's likelihood in the discrete space, against an exact oracle --------------------


class Linear1(torch.nn.Module):
    """A frozen generator from a 1-D latent: raw output a z + b, before the GAN's squashing."""

    def __init__(self, a, b):
        super().__init__()
        self.register_buffer("a", torch.tensor(a))
        self.register_buffer("b", torch.tensor(b))

    def forward(self, z):
        return z * self.a + self.b


def exact_log_prob(gan, x, nodes=20001):
    """log P(x) = log of the integral of N(z; 0, 1) p(x | G(z)) dz, by the trapezoid rule on a fine grid."""
    z = torch.linspace(-9, 9, nodes, dtype=torch.float64)[:, None]
    with torch.no_grad():
        log_lik = gan.observation(z.float()).log_prob(x[:, None]).double()  # (points, nodes)
    log_integrand = log_lik + torch.distributions.Normal(0.0, 1.0).log_prob(z[:, 0]).double()
    weights = torch.full((nodes,), 18 / (nodes - 1), dtype=torch.float64)
    weights[[0, -1]] /= 2
    return torch.logsumexp(log_integrand + weights.log(), -1)


@pytest.mark.parametrize("support, noise", [("discrete", 0.6), ("binary", 0.05)])
def test_the_discrete_gan_likelihood_matches_an_exact_oracle(support, noise):
    levels = 3 if support == "discrete" else 2
    info = pg.DataInfo((2,), support, levels if support == "discrete" else None)
    gan = pg.GAN(info, 1, generator=Linear1([1.5, -1.0], [0.3, 0.2]), obs_noise=noise)
    grid = torch.cartesian_prod(torch.arange(levels.__float__()), torch.arange(levels.__float__()))
    exact = exact_log_prob(gan, grid)
    # a probability of the discrete values: the cells' masses add up to one
    torch.testing.assert_close(exact.exp().sum(), torch.tensor(1.0, dtype=torch.float64), atol=1e-6, rtol=0)
    estimate = pg.log_likelihood(gan, grid, method="ais", num_samples=64, num_steps=200, leapfrog_steps=5)
    assert estimate.kind == "estimate" and not estimate.density
    # AIS over 64 chains of a 1-D posterior: its error here is a few thousandths of a nat
    torch.testing.assert_close(estimate.pointwise, exact, atol=0.03, rtol=0)


def test_checkpoint_formats(tmp_path):
    model = build("vae", INFOS["levels"])
    path = pg.save_model(model, tmp_path / "model.pt", data="six levels")
    state = pg.infer.load_checkpoint(path)
    assert state["format"] == pg.infer.CHECKPOINT_FORMAT and state["data"] == "six levels"
    # format 1: an "event_shape" config, as written before models took the data's description
    old = {"config": {"family": "vae", "event_shape": [6], "latent_dim": 2, "likelihood": "categorical",
                      "num_levels": 17, "prior": "normal", "posterior": "normal", "network": "mlp", "hidden": [16],
                      "activation": "silu"}, "model": pg.VAE(SHAPE, 2, likelihood="categorical", num_levels=17,
                                                           hidden=(16,)).state_dict()}
    torch.save(old, tmp_path / "old.pt")
    assert pg.load_model(tmp_path / "old.pt").info == pg.DataInfo(SHAPE, "discrete", 17)
    torch.save({**state, "format": 99}, tmp_path / "new.pt")
    with pytest.raises(pg.infer.CheckpointError, match=r"format 99, by a newer probgen; this version reads formats 1 to 2"):
        pg.load_model(tmp_path / "new.pt")
    with pytest.raises(ValueError, match="may not use the checkpoint's own keys"):
        pg.save_model(model, tmp_path / "x.pt", config={})

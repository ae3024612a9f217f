import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch
from pyro.poutine.util import site_is_subsample

import probgen as pg


@pytest.fixture(scope="module")
def digits():
    return pg.datasets.load("optdigits")


def small_vae(**options):
    options.setdefault("likelihood", "categorical")
    options.setdefault("num_levels", 17)
    return pg.VAE((8, 8), 4, hidden=(64, 64), **options)


def latent_sites(trace):
    return [name for name in trace.stochastic_nodes if not site_is_subsample(trace.nodes[name])]


def test_trace_site_names_and_shapes(digits):
    vae = small_vae()
    x = digits.train[:7]
    model_trace = poutine.trace(vae.model).get_trace(x)
    guide_trace = poutine.trace(vae.guide).get_trace(x)
    assert latent_sites(model_trace) == ["z"] and model_trace.observation_nodes == ["x"]
    assert model_trace.nodes["x"]["is_observed"] and torch.equal(model_trace.nodes["x"]["value"], x)
    assert model_trace.nodes["z"]["value"].shape == (7, 4)
    for site in (model_trace.nodes["x"], model_trace.nodes["z"], guide_trace.nodes["z"]):
        assert [(f.name, f.dim, f.size) for f in site["cond_indep_stack"]] == [("data", -1, 7)]
    assert latent_sites(guide_trace) == ["z"] and guide_trace.observation_nodes == []


def test_model_without_data_samples(digits):
    vae = small_vae()
    trace = poutine.trace(vae.model).get_trace(num_data=5)
    assert trace.nodes["x"]["value"].shape == (5, 8, 8) and not trace.nodes["x"]["is_observed"]
    samples = vae.sample(6)
    assert samples.shape == (6, 8, 8) and ((samples >= 0) & (samples <= 16)).all()
    assert vae.sample(6, mean=True).shape == (6, 8, 8)


def test_pyro_svi_with_pyro_optim_reduces_the_loss(digits):
    pyro.set_rng_seed(0)
    vae = small_vae()
    svi = pyro.infer.SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 3e-3}), pyro.infer.Trace_ELBO())
    x = digits.train[:512]
    first = sum(svi.evaluate_loss(x) for _ in range(5)) / 5
    for _ in range(150):
        svi.step(x)
    last = sum(svi.evaluate_loss(x) for _ in range(5)) / 5
    assert last < first - 20 * len(x), (first / len(x), last / len(x))


def test_pyro_predictive_draws_from_the_model(digits):
    vae = small_vae()
    predictive = pyro.infer.Predictive(vae.model, num_samples=3, return_sites=["x", "z"])
    draws = predictive(num_data=4)
    assert draws["x"].shape == (3, 4, 8, 8) and draws["z"].shape == (3, 4, 4)


def test_two_models_keep_their_own_parameters(digits):
    a, b = small_vae(), small_vae()
    x = digits.train[:256]
    before = [p.clone() for p in b.parameters()]
    pg.fit(a, x, epochs=2, progress=False)
    assert all(torch.equal(p, q) for p, q in zip(before, b.parameters()))
    assert len(pyro.get_param_store()) == 0


@pytest.mark.parametrize(
    "prior",
    [
        "mixture",
        "vamp",
        dist.StudentT(3.0, torch.zeros(4), torch.ones(4)).to_event(1),
        dist.MixtureSameFamily(
            dist.Categorical(logits=torch.zeros(3)),
            dist.Normal(torch.tensor([[-2.0] * 4, [0.0] * 4, [2.0] * 4]), torch.ones(3, 4)).to_event(1),
        ),
    ],
    ids=["mixture", "vamp", "user-student-t", "user-mixture"],
)
def test_other_priors_train_through_fit(digits, prior):
    vae = small_vae(prior=prior)
    result = pg.fit(vae, digits.train[:1024], digits.valid[:200], epochs=4, progress=False)
    assert result.history["valid_loss"][-1] < result.history["valid_loss"][0]
    est = pg.log_likelihood(vae, digits.test[:20], method="iwae", num_samples=20)
    assert torch.isfinite(est.pointwise).all()


def test_the_vamp_prior_takes_its_number_of_pseudo_inputs_and_a_checkpoint_keeps_it(digits, tmp_path):
    vae = small_vae(prior="vamp", num_pseudo_inputs=7)
    assert vae.prior.pseudo_inputs.shape == (7, 8, 8)
    # each component is the encoder's q(z | u_k) at one pseudo-input
    loc, scale = vae._posterior_params(vae.prior.pseudo_inputs)
    torch.testing.assert_close(vae.prior().locs, loc)
    torch.testing.assert_close(vae.prior().scales, scale)
    pg.fit(vae, digits.train[:256], epochs=1, checkpoint_dir=tmp_path, progress=False)
    rebuilt = pg.load_model(tmp_path / "last.pt")  # the model rebuilt from the checkpoint's config
    assert rebuilt.config["num_pseudo_inputs"] == 7
    torch.testing.assert_close(rebuilt.prior.pseudo_inputs, vae.prior.pseudo_inputs.cpu())
    with pytest.raises(ValueError, match=r"num_pseudo_inputs must be a positive integer, got 0"):
        small_vae(prior="vamp", num_pseudo_inputs=0)


def test_clamped_pseudo_inputs_are_read_in_the_unit_interval_and_a_checkpoint_keeps_them(digits, tmp_path):
    vae = small_vae(prior="vamp", num_pseudo_inputs=7, pseudo_inputs="clamped")
    assert abs(vae.prior.pseudo_inputs.mean().item() - 0.05) < 0.005
    with torch.no_grad():
        vae.prior.pseudo_inputs[0] = 2.0  # read as a white image
    loc, _ = vae._posterior_params(torch.ones(1, 8, 8))
    torch.testing.assert_close(vae.prior().locs[:1], loc)
    pg.fit(vae, digits.train[:256], epochs=1, checkpoint_dir=tmp_path, progress=False)
    rebuilt = pg.load_model(tmp_path / "last.pt")
    assert rebuilt.config["pseudo_inputs"] == "clamped"
    torch.testing.assert_close(rebuilt.prior().locs, vae.cpu().prior().locs)
    with pytest.raises(ValueError, match=r"this data is real-valued: use pseudo_inputs='uniform'"):
        pg.VAE(pg.DataInfo((5,)), 2, prior="vamp", pseudo_inputs="clamped")


def test_a_user_prior_module_returning_a_distribution_is_used(digits):
    class LearnedScale(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.log_scale = torch.nn.Parameter(torch.zeros(4))

        def forward(self):
            return dist.Laplace(torch.zeros(4), self.log_scale.exp()).to_event(1)

    vae = small_vae(prior=LearnedScale())
    trace = poutine.trace(vae.model).get_trace(digits.train[:3])
    assert isinstance(trace.nodes["z"]["fn"], dist.Independent)
    assert isinstance(trace.nodes["z"]["fn"].base_dist, dist.Laplace)
    assert any(p is vae.prior.log_scale for p in vae.parameters())


def test_a_prior_of_the_wrong_shape_is_refused():
    with pytest.raises(ValueError, match=r"event_shape \(4,\)"):
        small_vae(prior=dist.Normal(torch.zeros(4), 1.0))  # batch_shape (4,), event_shape ()
    with pytest.raises(ValueError, match="unknown prior"):
        small_vae(prior="cauchy")


def test_conv_networks_for_images():
    vae = pg.VAE((28, 28), 8, likelihood="bernoulli", network="conv")
    x = (torch.rand(5, 28, 28) < 0.3).float()
    est = pg.log_likelihood(vae, x, method="iwae", num_samples=4)
    assert est.pointwise.shape == (5,)
    assert vae.sample(2).shape == (2, 28, 28)


@pytest.mark.parametrize("objective", ["elbo", "meanfield", "iwae:4", pg.IWAE(3)])
def test_each_objective_lowers_the_loss(digits, objective):
    vae = small_vae()
    result = pg.fit(vae, digits.train[:1024], digits.valid[:300], epochs=3, objective=objective, progress=False)
    assert result.history["valid_loss"][-1] < result.history["valid_loss"][0]


def test_iwae_objective_is_at_most_the_elbo_loss(digits):
    vae = small_vae()
    x = digits.train[:200]
    torch.manual_seed(0)
    elbo_loss = sum(pyro.infer.Trace_ELBO().differentiable_loss(vae.model, vae.guide, x).item() for _ in range(20))
    iwae_loss = sum(pg.IWAE(10).differentiable_loss(vae.model, vae.guide, x).item() for _ in range(20))
    assert iwae_loss < elbo_loss


def test_iwae_works_with_pyro_svi(digits):
    vae = small_vae()
    svi = pyro.infer.SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-3}), pg.IWAE(4))
    assert torch.isfinite(torch.tensor(svi.step(digits.train[:64])))


def test_bad_inputs_are_refused_before_training(digits):
    vae = small_vae()
    with pytest.raises(ValueError, match=r"train must have shape \(num_data, 8, 8\)"):
        pg.fit(vae, digits.train.reshape(-1, 64), epochs=1, progress=False)
    with pytest.raises(ValueError, match="NaN"):
        bad = digits.train[:10].clone()
        bad[3, 2, 2] = float("nan")
        pg.fit(vae, bad, epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"integer levels \{0, 1, \.\.\., 16\}"):
        pg.fit(vae, digits.train[:10] / 16, epochs=1, progress=False)
    with pytest.raises(ValueError, match="empty"):
        pg.fit(vae, digits.train[:0], epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"this VAE models binary values.*pg.VAE\(data.info, ...\)"):
        pg.log_likelihood(pg.VAE(pg.DataInfo((8, 8), "binary"), 2), digits.test[:5])


def test_a_callable_likelihood_needs_a_decoder():
    with pytest.raises(ValueError, match="needs a decoder"):
        pg.VAE((4,), 2, likelihood=lambda out: dist.Normal(out, 1.0).to_event(1))


def test_fit_skips_param_statements_only_where_that_is_safe(digits):
    from pyro.nn import PyroParam

    def param_sites(vae):
        trace = poutine.trace(vae.model).get_trace(digits.train[:4])
        return [name for name, site in trace.nodes.items() if site["type"] == "param"]

    plain = small_vae()
    assert param_sites(plain)  # SVI needs them outside fit
    with plain.without_param_sites():
        assert param_sites(plain) == []

    class LearnedPriorScale(pg.VAE):
        @pyro.nn.pyro_method
        def prior_distribution(self):
            return dist.Normal(torch.zeros_like(self.prior_scale), self.prior_scale).to_event(1)

    custom = LearnedPriorScale((8, 8), 4, likelihood="categorical", num_levels=17, hidden=(16, 16))
    custom.prior_scale = PyroParam(torch.ones(4), constraint=dist.constraints.positive)
    with custom.without_param_sites():  # a Pyro-managed attribute: the module context stays
        assert "prior_scale" in param_sites(custom)
    pg.fit(custom, digits.train[:256], epochs=2, progress=False)
    assert not torch.equal(custom.prior_scale.cpu(), torch.ones(4))


@pytest.mark.parametrize("latent_dim", [0, -1, 2.7, True, "4"])
def test_latent_dim_must_be_a_positive_integer(latent_dim):
    with pytest.raises(ValueError, match=r"latent_dim must be a positive integer, got"):
        pg.VAE(pg.DataInfo((4,), "binary"), latent_dim)

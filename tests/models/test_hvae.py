"""The hierarchical VAE: its Pyro program, the per-layer ELBO terms, training with both guides
(each with and without the deterministic top-down path) and any top prior, checkpoints,
warm-up per layer, bad input, and the diffusion bridge: a
hierarchy with the forward noising process as guide and a diffusion's reverse steps as
conditionals has the diffusion's explicit-chain ELBO on the same draws."""

from __future__ import annotations

from itertools import pairwise

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.distributions.kl import kl_divergence
from pyro.poutine.util import site_is_subsample
from torch import nn

import probgen as pg
from probgen.infer.objectives import KLWarmup
from probgen.models.hvae import (
    LadderMerge,
    PathStep,
    StatePosterior,
    precision_weighted,
)

INFERENCE = ["top-down", "bottom-up"]
# the generative model: the Markov chain z_L -> ... -> z_1 -> x, or with the top-down path
PATH = [pytest.param(False, id="chain"), pytest.param(True, id="path")]


@pytest.fixture(scope="module")
def digits():
    return pg.datasets.load("optdigits")


def small_hvae(inference="top-down", latent_dims=(6, 3), seed=0, **options):
    torch.manual_seed(seed)
    options.setdefault("hidden", (48,))
    return pg.HierarchicalVAE(pg.DataInfo((8, 8), "discrete", 17), latent_dims, inference=inference, **options)


def latent_sites(trace):
    return [name for name in trace.stochastic_nodes if not site_is_subsample(trace.nodes[name])]


# -- the Pyro program --------------------------------------------------------------------


@pytest.mark.parametrize("top_down_path", PATH)
@pytest.mark.parametrize("inference", INFERENCE)
def test_named_sites_under_the_data_plate_in_each_guide_order(digits, inference, top_down_path):
    hvae = small_hvae(inference, latent_dims=(5, 4, 3), top_down_path=top_down_path)
    x = digits.train[:7]
    guide = poutine.trace(hvae.guide).get_trace(x)
    model = poutine.trace(poutine.replay(hvae.model, trace=guide)).get_trace(x)
    assert latent_sites(model) == ["z3", "z2", "z1"] and model.observation_nodes == ["x"]
    order = ["z3", "z2", "z1"] if inference == "top-down" else ["z1", "z2", "z3"]
    assert latent_sites(guide) == order and guide.observation_nodes == []
    for name, size in (("z1", 5), ("z2", 4), ("z3", 3)):
        assert model.nodes[name]["value"].shape == (7, size)
        assert model.nodes[name]["value"] is guide.nodes[name]["value"]
        for site in (model.nodes[name], guide.nodes[name]):
            assert [(f.name, f.dim, f.size) for f in site["cond_indep_stack"]] == [("data", -1, 7)]


def _program_sites(program, values, *args):
    """The sites of ``program`` run with its latents fixed at ``values``."""
    return poutine.trace(poutine.condition(program, data=values)).get_trace(*args).nodes


@pytest.mark.parametrize("inference", INFERENCE)
def test_with_the_path_each_layer_and_the_decoder_see_every_layer_above(digits, inference):
    """Markov chain: p(z1 | z2, z3) and p(x | z1, z2, z3) ignore everything but the next
    layer up. With the path they read every layer above, and so does the ladder's q(z1 | x, ...)."""
    x = digits.test[:4]
    values = {"z3": torch.randn(4, 3), "z2": torch.randn(4, 4), "z1": torch.randn(4, 5)}
    moved = {**values, "z3": values["z3"] + 1.0}  # only the top layer changes

    def reads_z3(program, read):
        return not torch.allclose(read(_program_sites(program, values, x)), read(_program_sites(program, moved, x)))

    def z1_loc(sites):
        return sites["z1"]["fn"].base_dist.loc

    for top_down_path in (False, True):
        hvae = small_hvae(inference, latent_dims=(5, 4, 3), top_down_path=top_down_path)
        assert reads_z3(hvae.model, z1_loc) == top_down_path
        assert reads_z3(hvae.model, lambda sites: sites["x"]["fn"].log_prob(x)) == top_down_path
        if inference == "top-down":
            assert reads_z3(hvae.guide, z1_loc) == top_down_path
    assert hvae.config["top_down_path"] is True and len(hvae.path) == 3
    assert isinstance(hvae.path[0], PathStep) and hvae.path[-1].state_features == 0


@pytest.mark.parametrize("inference", INFERENCE)
def test_a_single_layer_hierarchy_trains(digits, inference):
    hvae = small_hvae(inference, latent_dims=(4,))
    assert len(hvae.conditionals) == 0 and len(hvae.posteriors) == 1
    x = digits.train[:5]
    trace = poutine.trace(hvae.guide).get_trace(x)
    assert latent_sites(trace) == ["z1"] and hvae.prior_distribution().event_shape == (4,)
    assert list(hvae.elbo_terms(x)) == ["z1", "reconstruction"]
    run = pg.fit(hvae, digits.train[:512], digits.valid[:100], epochs=2, progress=False)
    assert run.history["valid_loss"][-1] < run.history["valid_loss"][0]


@pytest.mark.parametrize("top_down_path", PATH)
def test_model_without_data_samples_and_predictive_draws_every_layer(digits, top_down_path):
    hvae = small_hvae(top_down_path=top_down_path)
    trace = poutine.trace(hvae.model).get_trace(num_data=5)
    assert trace.nodes["x"]["value"].shape == (5, 8, 8) and not trace.nodes["x"]["is_observed"]
    samples = hvae.sample(6)
    assert samples.shape == (6, 8, 8) and ((samples >= 0) & (samples <= 16) & (samples == samples.round())).all()
    assert hvae.sample(6, mean=True).shape == (6, 8, 8)
    draws = pyro.infer.Predictive(hvae.model, num_samples=3, return_sites=["x", "z1", "z2"])(num_data=4)
    assert draws["x"].shape == (3, 4, 8, 8) and draws["z1"].shape == (3, 4, 6) and draws["z2"].shape == (3, 4, 3)


def test_the_ladder_merge_is_the_normalized_product_of_two_gaussians():
    loc_a, scale_a, loc_b, scale_b = torch.tensor([1.0]), torch.tensor([2.0]), torch.tensor([-1.0]), torch.tensor([1.0])
    loc, scale = precision_weighted(loc_a, scale_a, loc_b, scale_b)
    grid = torch.linspace(-8, 8, 20001)
    density = (dist.Normal(loc_a, scale_a).log_prob(grid) + dist.Normal(loc_b, scale_b).log_prob(grid)).exp()
    density = density / density.sum()
    mean = (grid * density).sum()
    torch.testing.assert_close(loc, mean.reshape(1), atol=1e-4, rtol=0)
    torch.testing.assert_close(scale, ((grid - mean) ** 2 * density).sum().sqrt().reshape(1), atol=1e-4, rtol=0)
    merge = LadderMerge(4, 2)
    features, prior_loc, prior_scale = torch.randn(3, 4), torch.randn(3, 2), torch.rand(3, 2) + 0.1
    loc, scale = merge(features, None, prior_loc, prior_scale)
    assert (scale < prior_scale).all()  # the data only sharpen the layer's conditional


# -- the ELBO, one term per layer -----------------------------------------------------


@pytest.mark.parametrize("top_down_path", PATH)
def test_per_layer_terms_add_up_to_the_elbo_on_the_same_draws(digits, top_down_path):
    """With a mixture top prior and the bottom-up guide every term is the draw's own
    log q - log p: the same draws give the same ELBO as the importance weights, exactly."""
    hvae = small_hvae("bottom-up", latent_dims=(6, 4, 3), prior="mixture", top_down_path=top_down_path)
    x = digits.test[:20]
    with torch.no_grad():
        pyro.set_rng_seed(1)
        terms = hvae.elbo_terms(x, 8)
        pyro.set_rng_seed(1)
        log_w = pg.infer.log_weights(hvae, x, 8)
    assert list(terms) == ["z3", "z2", "z1", "reconstruction"]
    torch.testing.assert_close(sum(terms.values()), log_w.mean(0), atol=1e-3, rtol=1e-6)


@pytest.mark.parametrize("top_down_path", PATH)
@pytest.mark.parametrize("inference", INFERENCE)
def test_closed_form_kls_sum_to_the_kl_of_the_elbo(digits, inference, top_down_path):
    """Where a term is a closed-form KL it has the Monte Carlo KL's expectation: the sum of the
    layers' KLs meets E_q[log q(z|x) - log p(z)] within the Monte Carlo error."""
    hvae = small_hvae(inference, top_down_path=top_down_path)
    x = digits.test[:10]
    k = 4000
    with torch.no_grad():
        terms = hvae.elbo_terms(x, k)
        with pyro.plate("_particles", k, dim=-2):
            guide = poutine.trace(hvae.guide).get_trace(x)
            model = poutine.trace(poutine.replay(hvae.model, trace=guide)).get_trace(x)
        guide.compute_log_prob()
        model.compute_log_prob()
        kl_draws = sum(guide.nodes[name]["log_prob"] - model.nodes[name]["log_prob"] for name in ("z1", "z2"))
    kl_layers = -(terms["z1"] + terms["z2"])
    error = (kl_layers - kl_draws.mean(0)).abs()
    assert (error < 4 * kl_draws.std(0) / k**0.5 + 1e-3).all(), error
    if inference == "top-down":  # each layer's term is a conditional KL: never negative
        assert (terms["z1"] <= 1e-6).all() and (terms["z2"] <= 1e-6).all()


def test_log_likelihood_elbo_reports_the_layers_in_nats_and_bits(digits):
    hvae = small_hvae()
    est = pg.log_likelihood(hvae, digits.test[:30], method="elbo", num_samples=4)
    assert est.is_bound and list(est.terms) == ["z2", "z1", "reconstruction"]
    torch.testing.assert_close(sum(est.terms.values()), est.pointwise, rtol=1e-6, atol=1e-4)
    text = str(est)
    assert "ELBO bound, k=4" in text and "z2:" in text and "reconstruction:" in text


@pytest.mark.parametrize("top_down_path", PATH)
def test_estimators_and_diagnostics_need_no_branch_for_the_family(digits, top_down_path):
    hvae = small_hvae(top_down_path=top_down_path)
    x = digits.test[:12]
    assert pg.infer.resolve_method(hvae) == "iwae"
    table = pg.compare({"hvae": hvae, "vae": pg.VAE(hvae.info, 4, hidden=(48,))}, x, num_samples=8,
                       estimator_options={"ais": {"num_samples": 2, "num_steps": 5}})
    assert {row.model for row in table.rows} == {"hvae", "vae"}
    ais = pg.log_likelihood(hvae, x[:3], method="ais", num_samples=2, num_steps=5, leapfrog_steps=2)
    assert torch.isfinite(ais.pointwise).all()
    psis = pg.psis_khat(hvae, x, num_samples=30, warn=False)
    assert psis.khat.shape == (12,)
    # top-down: the guide draws each layer given the one above as the model does, so Pyro's
    # analytic-KL ELBO is a valid objective
    run = pg.fit(hvae, digits.train[:256], epochs=1, objective="meanfield", progress=False)
    assert torch.isfinite(torch.tensor(run.history["train_loss"])).all()


@pytest.mark.parametrize("top_down_path", PATH)
def test_the_joint_prior_and_observation_that_ais_reads_are_the_models(digits, top_down_path):
    """prior_distribution() is the model's joint over the layers and observation(z) its
    p(x | z), path or not: log p(z) + log p(x | z) of the traced program, at the same z."""
    hvae = small_hvae(latent_dims=(5, 4, 3), prior="mixture", top_down_path=top_down_path)
    x = digits.test[:6]
    with torch.no_grad():
        z = hvae.prior_distribution().sample((2, 6))
        assert z.shape == (2, 6, 12)
        z1, z2, z3 = z.split((5, 4, 3), -1)
        with pyro.plate("_particles", 2, dim=-2):
            trace = poutine.trace(poutine.condition(hvae.model, data={"z1": z1, "z2": z2, "z3": z3})).get_trace(x)
        trace.compute_log_prob()
        latents = sum(trace.nodes[name]["log_prob"] for name in ("z1", "z2", "z3"))
        torch.testing.assert_close(hvae.prior_distribution().log_prob(z), latents)
        torch.testing.assert_close(hvae.observation(z).log_prob(x), trace.nodes["x"]["log_prob"])


# -- training -----------------------------------------------------------------------------


@pytest.mark.parametrize("top_down_path", PATH)
@pytest.mark.parametrize("inference", INFERENCE)
def test_both_guides_train(digits, inference, top_down_path):
    hvae = small_hvae(inference, top_down_path=top_down_path)
    run = pg.fit(hvae, digits.train[:768], digits.valid[:200], epochs=3, progress=False)
    losses = run.history["valid_loss"]
    assert losses[-1] < losses[0] - 2, losses


def test_the_top_down_guide_defaults_to_the_concat_merge_and_an_old_config_keeps_the_ladder():
    """The measured default (benchmarks/hvae_optdigits.py): the top-down guide's posterior
    steps read both sides in one head; a checkpoint config written before ``merge`` existed
    rebuilds the ladder merge it was trained with."""
    assert small_hvae("top-down").merge.value == "concat"
    assert isinstance(small_hvae("top-down").posteriors[0], StatePosterior)
    assert isinstance(small_hvae("top-down", merge="precision").posteriors[0], LadderMerge)
    old = dict(small_hvae("top-down", merge="precision").config)
    del old["merge"]
    assert pg.models.build_model(old).merge.value == "precision"


@pytest.mark.parametrize("top_down_path", [True, False])
def test_the_guide_runs_the_conditionals_only_for_posterior_steps_that_read_them(digits, top_down_path):
    """The concat step ignores the conditional's (prior_loc, prior_scale), so the guide passes
    None and spares the conditional a pass; the ladder merge and a custom step that does not
    say otherwise get them."""
    x = digits.test[:10]

    def conditional_calls_in_guide(hvae):
        calls = []
        hooks = [c.register_forward_hook(lambda *_: calls.append(1)) for c in hvae.conditionals]
        poutine.trace(hvae.guide).get_trace(x)
        for hook in hooks:
            hook.remove()
        return len(calls)

    latent_dims = (6, 4, 3)
    assert conditional_calls_in_guide(small_hvae(latent_dims=latent_dims, top_down_path=top_down_path)) == 0
    assert conditional_calls_in_guide(small_hvae(latent_dims=latent_dims, top_down_path=top_down_path,
                                                 merge="precision")) == 2

    class Reads(nn.Module):  # a user's step, written before reads_prior existed
        def __init__(self, inner):
            super().__init__()
            self.inner, self.seen = inner, []

        def forward(self, features, above, prior_loc, prior_scale):
            self.seen.append(prior_loc is not None and prior_scale is not None)
            return self.inner(features, above, None, None)

    width = 48
    steps = [Reads(StatePosterior(width, d, width if top_down_path else above))
             for d, above in pairwise(latent_dims)]
    custom = small_hvae(latent_dims=latent_dims, top_down_path=top_down_path,
                        posteriors=[*steps, pg.models.hvae.GaussianHead(width, latent_dims[-1])])
    assert conditional_calls_in_guide(custom) == 2 and all(step.seen == [True] for step in steps)


@pytest.mark.parametrize("inference", INFERENCE)
def test_encoder_noise_perturbs_what_the_guide_reads_in_training_only(digits, tmp_path, inference):
    """encoder_noise: the guide reads x plus Gaussian noise while the model is in training mode
    (what fit's steps run), the data as they are in evaluation mode (validation, every
    estimator); the model's program never sees the noise, and the option survives a reload."""
    noisy, clean = small_hvae(inference, encoder_noise=0.5), small_hvae(inference)
    clean.load_state_dict(noisy.state_dict())
    x = digits.test[:20]

    def guide_draws(hvae, training):
        hvae.train(training)
        pyro.set_rng_seed(3)
        trace = poutine.trace(hvae.guide).get_trace(x)
        return [trace.nodes[name]["fn"].base_dist.loc for name in ("z1", "z2")]

    for a, b in zip(guide_draws(noisy, False), guide_draws(clean, False)):
        torch.testing.assert_close(a, b)
    for a, b in zip(guide_draws(noisy, True), guide_draws(clean, True)):
        assert (a - b).abs().max() > 1e-3
    noisy.eval()
    torch.testing.assert_close(pg.log_likelihood(noisy, x, method="iwae", num_samples=8).pointwise,
                               pg.log_likelihood(clean, x, method="iwae", num_samples=8).pointwise)
    loaded = pg.load_model(pg.save_model(noisy, tmp_path / "hvae.pt", data="optdigits"))
    assert loaded.encoder_noise == 0.5 and loaded.config == noisy.config
    old = dict(clean.config)
    del old["encoder_noise"]  # a config written before the option existed
    assert pg.models.build_model(old).encoder_noise == 0.0


@pytest.mark.parametrize(("inference", "top_down_path"),
                         [("top-down", True), ("top-down", False), ("bottom-up", False)])
def test_generative_dropout_drops_the_decoders_units_in_training_only(digits, tmp_path, inference, top_down_path):
    """generative_dropout: in training mode the generative networks below the guide's reach
    drop hidden units (two runs of the model on the same draws differ) while the guide is
    untouched; in evaluation mode the model is the mean network (every estimator equals the
    twin's without dropout); the option survives a reload."""
    options = {"latent_dims": (6, 4, 3), "top_down_path": top_down_path}
    dropped, kept = small_hvae(inference, generative_dropout=0.5, **options), small_hvae(inference, **options)
    kept.load_state_dict(dropped.state_dict())
    x = digits.test[:20]

    kept.eval()
    draws = poutine.trace(kept.guide).get_trace(x)  # one set of latents for every run below

    def replayed(hvae, program, training, seed):
        hvae.train(training)
        pyro.set_rng_seed(seed)
        return poutine.trace(poutine.replay(program, trace=draws)).get_trace(x)

    def model_log_prob(hvae, training, seed):
        return replayed(hvae, hvae.model, training, seed).log_prob_sum()

    for training in (False, True):  # the guide reads no dropped unit
        a, b = replayed(dropped, dropped.guide, training, 1), replayed(kept, kept.guide, training, 1)
        for name in ("z1", "z2", "z3"):
            torch.testing.assert_close(a.nodes[name]["fn"].base_dist.loc, b.nodes[name]["fn"].base_dist.loc)
            torch.testing.assert_close(a.nodes[name]["fn"].base_dist.scale, b.nodes[name]["fn"].base_dist.scale)
    torch.testing.assert_close(model_log_prob(dropped, False, 1), model_log_prob(kept, False, 1))
    first = model_log_prob(dropped, True, 1)
    assert abs(first - model_log_prob(dropped, True, 2)) > 1.0 and abs(first - model_log_prob(kept, True, 1)) > 1.0
    torch.testing.assert_close(model_log_prob(kept, True, 2), model_log_prob(kept, True, 1))
    dropped.eval()
    torch.testing.assert_close(pg.log_likelihood(dropped, x, method="iwae", num_samples=8).pointwise,
                               pg.log_likelihood(kept, x, method="iwae", num_samples=8).pointwise)
    loaded = pg.load_model(pg.save_model(dropped, tmp_path / "hvae.pt", data="optdigits"))
    assert loaded.generative_dropout == 0.5 and loaded.config == dropped.config
    assert abs(model_log_prob(loaded, True, 1) - model_log_prob(loaded, True, 2)) > 1.0
    old = dict(kept.config)
    del old["generative_dropout"]  # a config written before the option existed
    assert pg.models.build_model(old).generative_dropout == 0.0


@pytest.mark.parametrize("top_down_path", PATH)
def test_the_concat_merge_trains_and_round_trips(digits, tmp_path, top_down_path):
    """merge="concat": q(z_l | x, z_{>l}) read by one head from d_l and the state above, as
    Tomczak & Welling's q(z1 | x, z2); each layer's term is still a conditional KL."""
    hvae = small_hvae("top-down", latent_dims=(6, 4, 3), merge="concat", top_down_path=top_down_path)
    assert [type(p) for p in hvae.posteriors] == [StatePosterior, StatePosterior, pg.models.hvae.GaussianHead]
    x = digits.test[:10]
    with torch.no_grad():
        terms = hvae.elbo_terms(x, 50)
    assert all((terms[name] <= 1e-6).all() for name in ("z1", "z2", "z3"))
    run = pg.fit(hvae, digits.train[:768], digits.valid[:200], epochs=3, progress=False)
    assert run.history["valid_loss"][-1] < run.history["valid_loss"][0] - 2, run.history["valid_loss"]
    loaded = pg.load_model(pg.save_model(hvae, tmp_path / "hvae.pt", data="optdigits"))
    assert loaded.merge.value == "concat" and loaded.config == hvae.config
    first = pg.log_likelihood(hvae, x, method="iwae", num_samples=8)
    torch.testing.assert_close(pg.log_likelihood(loaded, x, method="iwae", num_samples=8).pointwise, first.pointwise)


class LearnedLaplace(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(dim))

    def forward(self):
        return dist.Laplace(torch.zeros_like(self.log_scale), self.log_scale.exp()).to_event(1)


@pytest.mark.parametrize(
    "prior",
    [dist.StudentT(3.0, torch.zeros(3), torch.ones(3)).to_event(1), LearnedLaplace(3), "vamp", "nsf"],
    ids=["user-student-t", "user-module", "vamp", "flow"],
)
def test_any_top_prior_trains(digits, prior):
    hvae = small_hvae(prior=prior, num_pseudo_inputs=7)
    before = [p.detach().clone() for p in hvae.prior.parameters()]
    run = pg.fit(hvae, digits.train[:512], digits.valid[:200], epochs=3, progress=False)
    assert run.history["valid_loss"][-1] < run.history["valid_loss"][0]
    trace = poutine.trace(hvae.model).get_trace(digits.test[:3])
    assert trace.nodes["z2"]["fn"].event_shape == (3,)
    # a learned prior's parameters train with the model (a fixed distribution has none)
    assert all(not torch.equal(b, p) for b, p in zip(before, hvae.prior.parameters()))
    if prior == "vamp":
        assert hvae.prior.pseudo_inputs.shape == (7, 8, 8)


@pytest.mark.parametrize("inference", ["top-down", "bottom-up"])
def test_clamped_pseudo_inputs_start_near_black_stay_in_the_unit_interval_and_a_checkpoint_keeps_them(
        digits, tmp_path, inference):
    hvae = small_hvae(inference, prior="vamp", num_pseudo_inputs=7, pseudo_inputs="clamped")
    u = hvae.prior.pseudo_inputs
    assert abs(u.mean().item() - 0.05) < 0.005 and 0.005 < u.std().item() < 0.015
    pg.fit(hvae, digits.train[:512], epochs=3, lr=0.05, checkpoint_dir=tmp_path, progress=False)
    assert (hvae.prior.pseudo_inputs < 0).any()  # pushed below the bound, yet the encoder reads 0
    read = hvae.prior.inputs()
    assert read.min() >= 0 and read.max() <= 1
    torch.testing.assert_close(hvae.prior().locs, hvae._top_posterior_params(read)[0])
    rebuilt = pg.load_model(tmp_path / "last.pt")
    assert rebuilt.config["pseudo_inputs"] == "clamped" and rebuilt.prior.bounds == (0.0, 1.0)
    torch.testing.assert_close(rebuilt.prior().locs, hvae.cpu().prior().locs)


def test_clamped_pseudo_inputs_need_discrete_data_and_a_known_name():
    with pytest.raises(ValueError, match=r"pseudo_inputs='clamped' keeps the pseudo-inputs in \[0, 1\].*this data is "
                                         r"real-valued: use pseudo_inputs='uniform'"):
        pg.HierarchicalVAE(pg.DataInfo((5,)), (4, 2), prior="vamp", pseudo_inputs="clamped")
    with pytest.raises(ValueError, match=r"pseudo_inputs must be one of \['uniform', 'clamped'\], got 'clip'"):
        small_hvae(prior="vamp", pseudo_inputs="clip")


def test_bottom_up_vamp_prior_reads_the_chain_of_posterior_means(digits):
    hvae = small_hvae("bottom-up", prior="vamp", num_pseudo_inputs=5)
    u = hvae.prior.pseudo_inputs
    loc1, _ = hvae.posteriors[0](hvae.encoder(u))
    loc2, scale2 = hvae.posteriors[1](loc1)
    mixture = hvae.prior()
    torch.testing.assert_close(mixture.locs, loc2)
    torch.testing.assert_close(mixture.scales, scale2)


@pytest.mark.parametrize("top_down_path", PATH)
def test_kl_warmup_scales_every_layer(digits, top_down_path):
    hvae = small_hvae(latent_dims=(6, 4, 3), top_down_path=top_down_path)
    x = digits.train[:50]
    warmup = KLWarmup(4)
    warmup.begin_epoch(1)  # beta = 1/4
    losses = []
    pyro.set_rng_seed(3)
    warmup.train_step(hvae, x, lambda group, loss: losses.append(loss.detach()))
    pyro.set_rng_seed(3)
    guide = poutine.trace(hvae.guide).get_trace(x)
    model = poutine.trace(poutine.replay(hvae.model, trace=guide)).get_trace(x)
    log_px = model.nodes["x"]["fn"].log_prob(x).sum()
    layers = [model.nodes[name]["fn"].log_prob(model.nodes[name]["value"]).sum()
              - guide.nodes[name]["fn"].log_prob(guide.nodes[name]["value"]).sum() for name in ("z1", "z2", "z3")]
    expected = -(log_px + 0.25 * sum(layers)) / len(x)
    torch.testing.assert_close(losses[0], expected.detach(), rtol=1e-5, atol=1e-4)
    run = pg.fit(hvae, digits.train[:512], digits.valid[:100], epochs=2, objective="warmup:2", progress=False)
    assert run.history["train_loss"][1] < run.history["train_loss"][0]


# -- checkpoints -----------------------------------------------------------------------


@pytest.mark.parametrize("top_down_path", PATH)
@pytest.mark.parametrize("inference", INFERENCE)
def test_save_load_and_resume(digits, tmp_path, inference, top_down_path):
    train, valid = digits.train[:300], digits.valid[:100]
    options = {"prior": "vamp", "num_pseudo_inputs": 6, "activation": "gated", "top_down_path": top_down_path}
    whole = pg.fit(small_hvae(inference, **options), train, valid, epochs=3, seed=5, progress=False)
    pg.fit(small_hvae(inference, **options), train, valid, epochs=2, seed=5, checkpoint_dir=tmp_path / "run",
           progress=False)
    resumed_model = small_hvae(inference, seed=9, **options)  # other weights: the checkpoint's must win
    resumed = pg.fit(resumed_model, train, valid, epochs=3, seed=5, checkpoint_dir=tmp_path / "run", resume=True,
                     progress=False)
    assert resumed.history["train_loss"] == whole.history["train_loss"]
    assert resumed.history["valid_loss"] == whole.history["valid_loss"]

    path = pg.save_model(resumed_model, tmp_path / "hvae.pt", data="optdigits")
    loaded = pg.load_model(path)
    assert type(loaded) is pg.HierarchicalVAE and loaded.config == resumed_model.config
    assert loaded.config["inference"] == inference and loaded.config["latent_dims"] == [6, 3]
    assert loaded.top_down_path is top_down_path and loaded.config["top_down_path"] is top_down_path
    x = digits.test[:10]
    first = pg.log_likelihood(resumed_model, x, method="iwae", num_samples=8)
    again = pg.log_likelihood(loaded, x, method="iwae", num_samples=8)
    torch.testing.assert_close(first.pointwise, again.pointwise)
    assert pg.load_model(tmp_path / "run" / "last.pt").inference.value == inference


def test_custom_modules_leave_no_config():
    hvae = small_hvae(prior=dist.Normal(torch.zeros(3), 1.0).to_event(1))
    assert hvae.config is None
    with pytest.raises(ValueError, match="no config"):
        pg.save_model(hvae, "unused.pt")


# -- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"latent_dims": ()}, ValueError, r"latent_dims must be a non-empty sequence of positive integers .*, got \(\)"),
        ({"latent_dims": 4}, ValueError, "latent_dims must be a non-empty sequence of positive integers .*, got 4"),
        ({"latent_dims": "32"}, ValueError, "latent_dims must be a non-empty sequence"),
        ({"latent_dims": (4, 0)}, ValueError, r"latent_dims must be a non-empty sequence .*, got \(4, 0\)"),
        ({"latent_dims": (4, 2.5)}, ValueError, r"latent_dims must be a non-empty sequence .*, got \(4, 2.5\)"),
        ({"inference": "sideways"}, ValueError, r"unknown inference 'sideways'; expected one of \['top-down', 'bottom-up'\]"),
        ({"top_down_path": "yes"}, TypeError, "top_down_path must be True or False, got 'yes'"),
        ({"merge": "sum"}, ValueError, r"unknown merge 'sum'; expected one of \['precision', 'concat'\]"),
        ({"merge": "concat", "inference": "bottom-up"}, ValueError, "the bottom-up guide has no merge"),
        ({"top_down_path": 1}, TypeError, "top_down_path must be True or False, got 1"),
        ({"path": [nn.Identity(), nn.Identity()]}, ValueError, "pass top_down_path=True with it"),
        ({"top_down_path": True, "path": [nn.Identity()]}, ValueError, "path must be a sequence of 2 modules"),
        ({"top_down_path": True, "conditionals": []}, ValueError,
         r"conditionals must be a sequence of 1 modules, each state_above -> \(loc, scale\)"),
        ({"hidden": ()}, ValueError, "hidden must be a non-empty sequence"),
        ({"num_pseudo_inputs": 0}, ValueError, "num_pseudo_inputs must be a positive integer, got 0"),
        ({"encoder_noise": -0.1}, ValueError, "encoder_noise must be a non-negative finite number, got -0.1"),
        ({"encoder_noise": float("nan")}, ValueError, "encoder_noise must be a non-negative finite number, got nan"),
        ({"encoder_noise": "0.2"}, ValueError, "encoder_noise must be a non-negative finite number, got '0.2'"),
        ({"generative_dropout": 1.0}, ValueError, r"generative_dropout must be a number from 0 up to \(not including\) 1, got 1.0"),
        ({"generative_dropout": -0.1}, ValueError, "generative_dropout must be a number from 0 up to"),
        ({"generative_dropout": float("nan")}, ValueError, "generative_dropout must be a number from 0 up to"),
        ({"generative_dropout": "0.2"}, ValueError, "generative_dropout must be a number from 0 up to"),
        ({"generative_dropout": 0.2, "decoder": nn.Linear(6, 64)}, ValueError,
         "with a custom decoder, conditionals or path, put dropout in those modules instead"),
        ({"activation": "swishy"}, ValueError, "activation must be one of"),
        ({"prior": "cauchy"}, ValueError, "unknown prior 'cauchy'"),
        ({"prior": dist.Normal(torch.zeros(3), 1.0)}, ValueError, r"event_shape \(3,\)"),
        ({"prior": dist.Normal(torch.zeros(4), 1.0).to_event(1)}, ValueError, r"event_shape \(3,\)"),
        ({"conditionals": [nn.Linear(3, 6), nn.Linear(3, 6)]}, ValueError, "conditionals must be a sequence of 1 modules"),
        ({"posteriors": [nn.Linear(3, 6)]}, ValueError, "posteriors must be a sequence of 2 modules"),
        ({"encoder": lambda x: x}, TypeError, "encoder must be a torch module"),
        ({"likelihood": "bernoulli"}, ValueError, "binary"),
        ({"likelihood": lambda out: out}, ValueError, "a callable likelihood needs a decoder"),
    ],
)
def test_bad_arguments_are_refused_before_any_work(options, error, message):
    options = {"latent_dims": (6, 3), **options}
    with pytest.raises(error, match=message):
        pg.HierarchicalVAE(pg.DataInfo((8, 8), "discrete", 17), **options)


def test_bad_data_is_refused_before_any_work(digits, tmp_path):
    hvae = small_hvae()
    with pytest.raises(ValueError, match="shape"):
        pg.fit(hvae, torch.zeros(10, 7, 7), epochs=1, progress=False, checkpoint_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match="levels"):
        hvae.elbo_terms(digits.test[:4] + 0.5)
    with pytest.raises(ValueError, match="num_samples must be a positive integer"):
        hvae.elbo_terms(digits.test[:4], 0)
    with pytest.raises(ValueError, match="n must be a positive integer"):
        hvae.sample(0)
    with pytest.raises(ValueError, match=r"built from an event shape alone.*'discrete', 17"):
        pg.fit(pg.HierarchicalVAE((8, 8), (4, 2), hidden=(8,)), digits.train[:20], epochs=1, progress=False)

    class OneFeature(nn.Module):
        def forward(self, x):
            return x.flatten(1)

    broken = small_hvae(encoder=OneFeature(), posteriors=[LadderMerge(64, 6), pg.models.hvae.GaussianHead(64, 3)])
    with pytest.raises(ValueError, match="must return a tuple of 2 feature tensors"):
        broken.elbo_terms(digits.test[:4])


# -- the diffusion bridge --------------------------------------------------------------------


def _step_coefficients(logsnr_t, logsnr_s):
    r"""q(z_s | z_t, y) = N(a z_t + b y, scale^2) of a variance-preserving process, lambda_s > lambda_t."""
    alpha_t = torch.sigmoid(logsnr_t).sqrt()
    alpha_s, sigma_s = torch.sigmoid(logsnr_s).sqrt(), torch.sigmoid(-logsnr_s).sqrt()
    c = -torch.expm1(logsnr_t - logsnr_s)
    return (alpha_s / alpha_t * (1 - c)).item(), (alpha_s * c).item(), (sigma_s * c.sqrt()).item()


class ReverseStep(nn.Module):
    """The diffusion's p(z_s | z_t): the forward posterior at the network's estimate of y."""

    def __init__(self, diffusion, logsnr_t, logsnr_s):
        super().__init__()
        self.diffusion, self.logsnr_t = diffusion, logsnr_t
        self.a, self.b, self.scale = _step_coefficients(logsnr_t, logsnr_s)

    def forward(self, z):
        loc = self.a * z + self.b * self.diffusion.denoise(z, self.logsnr_t)
        return loc, torch.full_like(loc, self.scale)


class ForwardStep(nn.Module):
    """The forward process's q(z_s | z_t, x), as a top-down posterior step (y is the layer's feature)."""

    def __init__(self, logsnr_t, logsnr_s):
        super().__init__()
        self.a, self.b, self.scale = _step_coefficients(logsnr_t, logsnr_s)

    def forward(self, y, above, prior_loc, prior_scale):
        loc = self.a * above + self.b * y
        return loc, torch.full_like(loc, self.scale)


class ForwardMarginal(nn.Module):
    """q(z_1 | x) = N(alpha_1 y, sigma_1^2), the top layer's guide."""

    def __init__(self, logsnr):
        super().__init__()
        self.alpha, self.sigma = torch.sigmoid(logsnr).sqrt().item(), torch.sigmoid(-logsnr).sqrt().item()

    def forward(self, y):
        loc = self.alpha * y
        return loc, torch.full_like(loc, self.sigma)


class DiffusionSpace(nn.Module):
    """The ladder's features: the data mapped to [-1, 1], the same for every layer."""

    def __init__(self, diffusion, num_layers):
        super().__init__()
        self.diffusion, self.num_layers = diffusion, num_layers

    def forward(self, x):
        return (self.diffusion.to_diffusion_space(x),) * self.num_layers


def diffusion_as_hvae(diffusion):
    """The hierarchy z{T+1} (t = 1) -> ... -> z1 (t = 0) -> x of a discrete-time diffusion."""
    steps = diffusion.num_steps
    logsnr = diffusion.schedule(torch.arange(steps + 1, dtype=torch.float64) / steps)  # t_0 = 0, ..., t_T = 1
    return pg.HierarchicalVAE(
        diffusion.info, (diffusion.num_dims,) * (steps + 1), inference="top-down",
        likelihood=diffusion.decoder, decoder=nn.Identity(), encoder=DiffusionSpace(diffusion, steps + 1),
        conditionals=[ReverseStep(diffusion, logsnr[layer], logsnr[layer - 1]) for layer in range(1, steps + 1)],
        posteriors=[ForwardStep(logsnr[layer], logsnr[layer - 1]) for layer in range(1, steps + 1)]
        + [ForwardMarginal(logsnr[steps])],
    )


def _log_weight(program, x, values):
    """log p(x, z) - log q(z | x) of ``program``'s model and guide at the latents ``values``."""
    total = 0.0
    for fn, sign in ((program.model, 1.0), (program.guide, -1.0)):
        trace = poutine.trace(poutine.condition(fn, data=values)).get_trace(x)
        trace.compute_log_prob()
        total = total + sign * sum(site["log_prob"] for site in trace.nodes.values()
                                   if site["type"] == "sample" and not site_is_subsample(site))
    return total


def test_a_diffusion_is_the_hierarchy_with_the_forward_process_as_guide(digits):
    steps = 4
    torch.manual_seed(0)
    diffusion = pg.Diffusion(pg.DataInfo((64,), "discrete", 17), num_steps=steps)
    hvae = diffusion_as_hvae(diffusion)
    assert any(p is next(diffusion.network.parameters()) for p in hvae.parameters())  # shared, not copied
    x = digits.train[:16].reshape(16, 64)
    with torch.no_grad():
        # the same draws of the chain: the importance weights (the ELBO's integrand) agree
        chain = poutine.trace(diffusion.guide).get_trace(x)
        values = {f"z_{j}": chain.nodes[f"z_{j}"]["value"] for j in range(steps + 1)}
        renamed = {f"z{j + 1}": value for j, value in enumerate(values[f"z_{j}"] for j in range(steps + 1))}
        torch.testing.assert_close(_log_weight(hvae, x, renamed), _log_weight(diffusion, x, values), atol=1e-3, rtol=1e-6)

        # the hierarchy's per-layer terms are the chain's Gaussian KLs and reconstruction
        for seed in range(3):
            pyro.set_rng_seed(seed)
            terms = hvae.elbo_terms(x, 1)
            pyro.set_rng_seed(seed)  # the chain drawn in the same order: the same noise
            with pyro.plate("_particles", 1, dim=-2):
                guide = poutine.trace(diffusion.guide).get_trace(x)
                model = poutine.trace(poutine.replay(diffusion.model, trace=guide)).get_trace(x)
            for j in range(steps + 1):
                kl = kl_divergence(guide.nodes[f"z_{j}"]["fn"], model.nodes[f"z_{j}"]["fn"])[0]
                torch.testing.assert_close(terms[f"z{j + 1}"], -kl, atol=1e-3, rtol=1e-6)
            torch.testing.assert_close(terms["reconstruction"], model.nodes["x"]["fn"].log_prob(x)[0])

        # and Pyro's analytic-KL ELBO of the two programs is the same number
        elbo = pyro.infer.TraceMeanField_ELBO(max_plate_nesting=1)
        pyro.set_rng_seed(7)
        on_diffusion = elbo.loss(diffusion.model, diffusion.guide, x)
        pyro.set_rng_seed(7)
        assert elbo.loss(hvae.model, hvae.guide, x) == pytest.approx(on_diffusion, rel=1e-6)

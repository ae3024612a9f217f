"""KL warm-up: the annealed ELBO, the epoch hook of the loop, and gated hidden units."""

import pyro
import pyro.poutine as poutine
import pytest
import torch

import probgen as pg
from probgen.infer.objectives import KLWarmup, resolve_objective


@pytest.fixture(scope="module")
def digits():
    return pg.datasets.load("optdigits")


def small_vae(**options):
    torch.manual_seed(0)
    return pg.VAE((8, 8), 4, likelihood="categorical", num_levels=17, hidden=(32, 32), **options)


def test_beta_rises_linearly_to_one_over_the_warmup_epochs():
    warmup = resolve_objective(small_vae(), "warmup:4")
    assert isinstance(warmup, KLWarmup) and warmup.epochs == 4
    betas = []
    for epoch in range(1, 7):
        warmup.begin_epoch(epoch)
        betas.append(warmup.beta)
    assert betas == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_the_training_loss_is_the_reconstruction_term_minus_beta_times_the_kl(digits):
    vae = small_vae()
    x = digits.train[:50]
    warmup = KLWarmup(4)
    warmup.begin_epoch(1)  # beta = 1/4
    losses = []
    pyro.set_rng_seed(3)
    warmup.train_step(vae, x, lambda group, loss: losses.append(loss.detach()))
    # the same draw of z, scored by hand
    pyro.set_rng_seed(3)
    guide = poutine.trace(vae.guide).get_trace(x)
    model = poutine.trace(poutine.replay(vae.model, trace=guide)).get_trace(x)
    log_px = model.nodes["x"]["fn"].log_prob(x).sum()
    log_pz = model.nodes["z"]["fn"].log_prob(model.nodes["z"]["value"]).sum()
    log_qz = guide.nodes["z"]["fn"].log_prob(guide.nodes["z"]["value"]).sum()
    expected = -(log_px + 0.25 * (log_pz - log_qz)) / len(x)
    torch.testing.assert_close(losses[0], expected.detach(), rtol=1e-5, atol=1e-4)


def test_validation_loss_is_the_full_negative_elbo(digits):
    vae = small_vae()
    warmup = KLWarmup(10)
    warmup.begin_epoch(1)
    pyro.set_rng_seed(0)
    annealed = float(warmup.eval_loss(vae, digits.valid[:100]))
    pyro.set_rng_seed(0)
    full = float(resolve_objective(vae, "elbo").eval_loss(vae, digits.valid[:100]))
    assert annealed == pytest.approx(full, rel=1e-6)


class _Recording(KLWarmup):
    def __init__(self, epochs):
        super().__init__(epochs)
        self.seen = []

    def begin_epoch(self, epoch):
        self.seen.append(epoch)
        super().begin_epoch(epoch)


def test_fit_calls_the_epoch_hook_also_after_a_resume(digits, tmp_path):
    first = _Recording(3)
    pg.fit(small_vae(), digits.train[:200], epochs=2, objective=first, checkpoint_dir=tmp_path, progress=False)
    second = _Recording(3)
    pg.fit(small_vae(), digits.train[:200], epochs=4, objective=second, checkpoint_dir=tmp_path, resume=True,
           progress=False)
    assert first.seen == [1, 2] and second.seen == [3, 4] and second.beta == 1.0


def test_warmup_rejects_a_bad_length():
    with pytest.raises(ValueError, match="epochs must be a positive integer, got 0"):
        KLWarmup(0)


def test_gated_units_train_and_rebuild_from_a_checkpoint(digits, tmp_path):
    vae = small_vae(activation="gated")
    assert any(isinstance(m, pg.nn.GatedLinear) for m in vae.modules())
    result = pg.fit(vae, digits.train[:300], epochs=2, objective="warmup:2", progress=False)
    assert result.history["train_loss"][1] < result.history["train_loss"][0]
    pg.save_model(vae, tmp_path / "gated.pt")
    again = pg.load_model(tmp_path / "gated.pt").to(vae.device)
    x, z = digits.test[:5].to(vae.device), torch.zeros(1, 4, device=vae.device)
    torch.testing.assert_close(again.decoder(z), vae.decoder(z))
    assert again.config["activation"] == "gated" and again.encoder(x).shape == vae.encoder(x).shape


def test_unknown_activation_is_refused():
    with pytest.raises(ValueError, match="activation must be one of"):
        small_vae(activation="swishy")
    with pytest.raises(ValueError, match="unknown activation"):
        pg.nn.MLP(3, (4,), 2, activation="swishy")

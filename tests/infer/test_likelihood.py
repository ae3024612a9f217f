import math

import pytest
import torch

import probgen as pg
from probgen.infer import LikelihoodEstimate


def test_summary_statistics_and_bits_per_dim():
    values = torch.tensor([-10.0, -12.0, -11.0, -15.0], dtype=torch.float64)
    est = LikelihoodEstimate(values, method="iwae", is_bound=True, num_samples=100, num_dims=64)
    assert est.mean == pytest.approx(-12.0)
    assert est.stderr == pytest.approx(values.std().item() / 2)
    assert est.bits_per_dim == pytest.approx(12.0 / (64 * math.log(2)))
    text = str(est)
    assert text.startswith("-12.00 ± 1.08 nats (IWAE bound, k=100) = 0.271 bits/dim")


def test_estimates_are_labelled_as_bounds_when_they_are():
    vae = pg.VAE((8, 8), 3, likelihood="categorical", num_levels=17, hidden=(16, 16))
    x = pg.datasets.load("optdigits").test[:12]
    for method in ("elbo", "iwae", "auto"):
        est = pg.log_likelihood(vae, x, method=method, num_samples=5)
        assert est.is_bound and est.kind == "bound" and "bound" in str(est)
        assert est.method == ("iwae" if method == "auto" else method)
        assert est.pointwise.shape == (12,) and est.num_dims == 64
        assert est.bits_per_dim == pytest.approx(-est.mean / (64 * math.log(2)))


def test_chunked_iwae_equals_the_logmeanexp_of_all_weights(ppca, monkeypatch):
    vae = ppca.vae()
    x = ppca.sample(6, seed=6)
    torch.manual_seed(0)
    weights = pg.infer.log_weights(vae, x, 40).double()
    expected = torch.logsumexp(weights, 0) - math.log(40)
    chunks = iter(weights.split(7, 0))
    monkeypatch.setattr(pg.infer.likelihood, "log_weights", lambda model, data, k: next(chunks))
    est = pg.log_likelihood(vae, x, method="iwae", num_samples=40, particle_batch=7)
    torch.testing.assert_close(est.pointwise, expected)


def test_memory_stays_bounded_for_many_samples(shared_data):
    data = pg.datasets.load("binarized_mnist", root=shared_data)
    vae = pg.VAE((28, 28), 16, likelihood="bernoulli", hidden=(64, 64))
    est = pg.log_likelihood(vae, data.test[:4], method="iwae", num_samples=5000, batch_size=4)
    # one pass holds at most 2**22 data values: 5000 samples run in chunks of at most 1337
    assert est.num_samples == 5000 and torch.isfinite(est.pointwise).all()


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        ({"method": "exact"}, ValueError, "not valid for VAE"),
        ({"method": "magic"}, ValueError, "unknown method 'magic'"),
        ({"num_samples": 0}, ValueError, "num_samples must be a positive integer"),
    ],
)
def test_bad_requests_are_refused(kwargs, error, message):
    vae = pg.VAE((4,), 2, likelihood="normal", hidden=(8, 8))
    with pytest.raises(error, match=message):
        pg.log_likelihood(vae, torch.zeros(3, 4), **kwargs)


def test_exact_estimates_are_labelled_exact():
    est = LikelihoodEstimate(torch.tensor([-1.0, -2.0]), method="exact", is_bound=False, num_samples=1,
                             num_dims=2, kind="exact", density=True)
    assert str(est).startswith("-1.50 ± 0.50 nats (density) (exact) = ")


def test_exact_is_refused_for_a_model_without_an_exact_likelihood():
    class NotExact(pg.VAE):
        likelihood_methods = ("exact", "iwae")

    with pytest.raises(ValueError, match=r"lists 'exact'.*its guide draws the latent sites \['z'\]"):
        pg.log_likelihood(NotExact((4,), 2, likelihood="normal", hidden=(8, 8)), torch.zeros(3, 4), method="exact")

"""The probabilistic-PCA oracle: a linear-Gaussian VAE has an exact log-likelihood."""

import torch

import probgen as pg
from tests.conftest import PPCA


def test_elbo_below_exact_and_iwae_rises_to_it(ppca):
    vae = ppca.vae()
    train, test = ppca.sample(2000, seed=1), ppca.sample(300, seed=2)
    pg.fit(vae, train, epochs=40, lr=3e-3, progress=False, seed=0)
    # the decoder did not require grad, so fit left it at the oracle's W, b
    assert torch.equal(vae.decoder.weight.cpu(), ppca.W) and torch.equal(vae.decoder.bias.cpu(), ppca.b)
    exact = ppca.exact(test)

    elbo = pg.log_likelihood(vae, test, method="elbo", num_samples=1000)
    assert elbo.is_bound and elbo.method == "elbo"
    assert (elbo.pointwise <= exact).all(), "the ELBO exceeded log p(x) for some data point"

    means = []
    for k in (1, 10, 100, 1000):
        est = pg.log_likelihood(vae, test, method="iwae", num_samples=k)
        assert est.num_samples == k and est.is_bound
        means.append(est.mean)
    assert means == sorted(means), f"IWAE did not rise with k: {means}"
    gap = exact.mean().item() - means[-1]
    assert 0 <= gap + 1e-3 and gap < est.stderr, (gap, est.stderr)
    assert gap < 0.02
    assert exact.mean().item() - means[0] > 0.05  # k=1 is visibly looser: the test can fail


def test_iwae_equals_exact_with_the_exact_posterior():
    """With q(z|x) the true posterior every importance weight equals p(x)."""
    # orthogonal columns make the posterior covariance diagonal, so a diagonal guide is exact
    q, _ = torch.linalg.qr(torch.randn(10, 3, generator=torch.Generator().manual_seed(3)))
    ppca = PPCA(W=q * torch.tensor([2.0, 1.0, 0.5]))
    vae = ppca.vae()
    precision = ppca.W.T @ ppca.W / ppca.noise**2 + torch.eye(ppca.latent_dim)
    post_cov = torch.linalg.inv(precision)

    class ExactEncoder(torch.nn.Module):
        out_features = ppca.data_dim

        def forward(self, x):
            return x

    vae.encoder = ExactEncoder()
    head = torch.nn.Linear(ppca.data_dim, 2 * ppca.latent_dim)
    gain = post_cov @ ppca.W.T / ppca.noise**2
    head.weight.data = torch.cat([gain, torch.zeros(ppca.latent_dim, ppca.data_dim)])
    raw = torch.log(torch.expm1(post_cov.diagonal().sqrt() - 1e-4))  # inverse of softplus(.) + 1e-4
    head.bias.data = torch.cat([-gain @ ppca.b, raw])
    vae.posterior_head = head
    test = ppca.sample(50, seed=4)
    est = pg.log_likelihood(vae, test, method="iwae", num_samples=16)
    torch.testing.assert_close(est.pointwise, ppca.exact(test), atol=1e-4, rtol=0)
    elbo = pg.log_likelihood(vae, test, method="elbo", num_samples=16)
    torch.testing.assert_close(elbo.pointwise, ppca.exact(test), atol=1e-4, rtol=0)

"""The ArviZ export: groups, dimension names and sizes, resampling, netCDF round trip."""

import warnings

import numpy as np
import pytest
import torch

import probgen as pg
from probgen.diagnostics import ParetoKWarning, load_inference_data
from tests.diagnostics.test_psis import exact_posterior_ppca


def test_groups_dims_and_sizes():
    ppca, vae = exact_posterior_ppca()
    x = ppca.sample(12, seed=0)
    idata = pg.to_inference_data(vae, x, num_samples=40)
    assert set(idata.groups()) == {"posterior", "log_likelihood", "sample_stats", "observed_data"}
    assert dict(idata.posterior["z"].sizes) == {"chain": 1, "draw": 40, "datum": 12, "latent_dim": 2}
    assert dict(idata.log_likelihood["x"].sizes) == {"chain": 1, "draw": 1, "datum": 12}
    assert dict(idata.sample_stats["log_weight"].sizes) == {"chain": 1, "draw": 40, "datum": 12}
    assert dict(idata.sample_stats["pareto_k"].sizes) == {"datum": 12}
    assert dict(idata.observed_data["x"].sizes) == {"datum": 12, "x_dim_0": 6}
    np.testing.assert_array_equal(idata.observed_data["x"].values, x.double().numpy())
    # the log-likelihood group holds the model's best estimate (IWAE): here the exact value
    assert idata.log_likelihood.attrs["method"] == "iwae" and idata.log_likelihood.attrs["kind"] == "bound"
    np.testing.assert_allclose(idata.log_likelihood["x"].values[0, 0], ppca.exact(x).numpy(), atol=1e-4)
    assert np.isneginf(idata.sample_stats["pareto_k"].values).all()


def test_posterior_draws_come_from_the_guide_and_match_their_weights():
    ppca, vae = exact_posterior_ppca(guide_scale=0.5)
    x = ppca.sample(200, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ParetoKWarning)
        idata = pg.to_inference_data(vae, x, num_samples=50)
    z = torch.as_tensor(idata.posterior["z"].values[0])  # (draw, datum, latent)
    loc, scale = vae._posterior_params(x)
    # standardized draws are N(0, 1) under the guide
    standardized = (z - loc.double()) / scale.double()
    assert abs(standardized.mean().item()) < 0.03 and abs(standardized.std().item() - 1) < 0.03
    # each stored weight is log p(x, z) - log q(z | x) of the stored draw
    prior = torch.distributions.Normal(0.0, 1.0)
    n, s = 3, 7
    zs = z[s, n].float()
    log_joint = prior.log_prob(zs).sum() + vae.observation(zs).log_prob(x[n])
    log_q = torch.distributions.Normal(loc[n], scale[n]).log_prob(zs).sum()
    stored = idata.sample_stats["log_weight"].values[0, s, n]
    assert abs(stored - (log_joint - log_q).item()) < 1e-4


def test_importance_resampling_moves_draws_to_the_posterior():
    # the guide is twice as wide as the exact posterior; resampled draws shrink back to it
    ppca, vae = exact_posterior_ppca(guide_scale=2.0)
    x = ppca.sample(100, seed=2)
    raw = pg.to_inference_data(vae, x, num_samples=400, method="elbo")
    resampled = pg.to_inference_data(vae, x, num_samples=400, method="elbo", resample=True)
    assert resampled.posterior.attrs["resampled"] == 1
    loc, scale = vae._posterior_params(x)
    post_sd = scale / 2.0

    def spread(idata):
        z = torch.as_tensor(idata.posterior["z"].values[0])
        return ((z - loc.double()) / post_sd.double()).std().item()

    assert abs(spread(raw) - 2.0) < 0.1
    assert abs(spread(resampled) - 1.0) < 0.1


def test_netcdf_round_trip(tmp_path):
    ppca, vae = exact_posterior_ppca(guide_scale=1.5)
    x = ppca.sample(8, seed=3)
    idata = pg.to_inference_data(vae, x, num_samples=30)
    path = tmp_path / "idata.nc"
    idata.to_netcdf(str(path))
    loaded = load_inference_data(path)
    assert set(loaded.groups()) == set(idata.groups())
    for group in idata.groups():
        original, back = idata[group], loaded[group]
        assert set(back.data_vars) == set(original.data_vars)
        for name in original.data_vars:
            assert back[name].dims == original[name].dims
            np.testing.assert_array_equal(back[name].values, original[name].values)
    assert loaded.posterior.attrs["family"] == "vae"
    with pytest.raises(FileNotFoundError, match="no InferenceData file"):
        load_inference_data(tmp_path / "missing.nc")


def test_image_data_and_site_choice():
    vae = pg.VAE((8, 8), 3, likelihood="categorical", num_levels=17)
    x = pg.datasets.load("optdigits").test[:4]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ParetoKWarning)
        idata = pg.to_inference_data(vae, x, num_samples=25, sites=["z"])
    assert dict(idata.observed_data["x"].sizes) == {"datum": 4, "x_dim_0": 8, "x_dim_1": 8}
    assert dict(idata.posterior["z"].sizes) == {"chain": 1, "draw": 25, "datum": 4, "latent_dim": 3}
    with pytest.raises(ValueError, match=r"sites \['w'\] are not latent sites of this model; it has \['z'\]"):
        pg.to_inference_data(vae, x, num_samples=25, sites=["w"])
    with pytest.raises(ValueError, match="at least 25"):
        pg.to_inference_data(vae, x, num_samples=5)

"""pg.compare: paired differences, ranking, kinds, the table's forms, failures reported."""

import math

import numpy as np
import pytest
import torch

import probgen as pg
from probgen.infer import LikelihoodEstimate
from tests.conftest import PPCA


@pytest.fixture
def two_vaes():
    ppca = PPCA(data_dim=6, latent_dim=2)
    good, poor = ppca.vae(), ppca.vae()
    torch.manual_seed(0)
    with torch.no_grad():
        poor.decoder.bias.add_(0.5)  # a shifted mean: a visibly worse model of the same data
    return ppca, good, poor


def test_paired_stderr_equals_a_direct_computation(two_vaes):
    ppca, good, poor = two_vaes
    x = ppca.sample(60, seed=1)
    table = pg.compare({"good": good, "poor": poor}, x, num_samples=20)
    assert [row.model for row in table.rows] == ["good", "poor"] and table.best == "good"
    a = table.estimates["good"].pointwise.numpy()
    b = table.estimates["poor"].pointwise.numpy()
    d = b - a
    direct_se = math.sqrt(((d - d.mean()) ** 2).sum() / (len(d) * (len(d) - 1)))
    assert table["poor"].diff == pytest.approx(d.mean(), abs=1e-12)
    assert table["poor"].diff_stderr == pytest.approx(direct_se, abs=1e-12)
    assert table["poor"].diff < 0
    # each row's own numbers are the estimates' numbers
    assert table["good"].mean_nats == pytest.approx(a.mean(), abs=1e-12)
    assert table["good"].stderr == pytest.approx(a.std(ddof=1) / math.sqrt(len(a)), abs=1e-12)
    assert table["good"].bits_per_dim == pytest.approx(-a.mean() / (6 * math.log(2)), abs=1e-12)
    assert table["good"].diff == 0 and table["good"].diff_stderr == 0
    # the same estimates given directly give the same table
    again = pg.compare(dict(table.estimates), x)
    assert again.to_dataframe().equals(table.to_dataframe())


def test_a_model_compared_with_itself_has_difference_zero(two_vaes):
    ppca, good, _ = two_vaes
    x = ppca.sample(30, seed=2)
    table = pg.compare({"a": good, "b": good}, x, num_samples=10)
    for row in table.rows:
        assert row.diff == 0.0 and row.diff_stderr == 0.0
    assert table["a"].mean_nats == table["b"].mean_nats


def test_methods_per_model_and_kinds(two_vaes):
    ppca, good, _ = two_vaes
    x = ppca.sample(40, seed=3)
    table = pg.compare({"iwae": good, "elbo": good}, x, methods={"elbo": "elbo"}, num_samples=50)
    assert table["iwae"].method == "iwae" and table["elbo"].method == "elbo"
    assert {row.kind for row in table.rows} == {"bound"}
    # same model: IWAE (k=50) >= ELBO, so the ELBO row trails
    assert table.best == "iwae" and table["elbo"].diff < 0
    text = str(table)
    assert "bound: a lower bound on log p(x)" in text and "0 (best)" in text
    # per-method options: here a different number of samples for IWAE than for the ELBO
    table = pg.compare({"iwae": good, "elbo": good}, x, methods={"elbo": "elbo"}, num_samples=5,
                       estimator_options={"iwae": {"num_samples": 30}})
    assert table["iwae"].num_samples == 30 and table["elbo"].num_samples == 5
    with pytest.raises(ValueError, match="method 'exact' is not valid for VAE"):
        pg.compare({"a": good}, x, methods="exact")


def test_dataframe_markdown_and_plot(two_vaes, tmp_path):
    ppca, good, poor = two_vaes
    x = ppca.sample(20, seed=4)
    table = pg.compare({"good": good, "poor": poor}, x, num_samples=10)
    frame = table.to_dataframe()
    assert list(frame.index) == ["good", "poor"]
    assert {"mean_nats", "stderr", "bits_per_dim", "kind", "diff", "diff_stderr"} <= set(frame.columns)
    np.testing.assert_allclose(frame.loc["poor", "diff"], table["poor"].diff)
    markdown = table.to_markdown()
    table_lines = [line for line in markdown.splitlines() if line.startswith("|")]
    assert len(table_lines) == 4  # header, rule, two models
    assert table_lines[0].startswith("| model | log p(x) [nats]")
    assert table_lines[2].startswith("| good |") and table_lines[3].startswith("| poor |")
    assert pg.diagnostics.save_comparison(table, tmp_path / "compare.png").stat().st_size > 1000


def test_a_failing_model_is_reported_not_dropped(two_vaes):
    ppca, good, _ = two_vaes
    x = ppca.sample(10, seed=5)
    wrong = pg.VAE((3,), 2, likelihood="normal")  # scores 3-vectors, not 6-vectors
    with pytest.warns(RuntimeWarning, match="model 'wrong' could not be scored"):
        table = pg.compare({"good": good, "wrong": wrong}, x, num_samples=5, on_error="report")
    assert table.best == "good" and table.rows[-1].model == "wrong"
    assert "ValueError" in table["wrong"].error and math.isnan(table["wrong"].mean_nats)
    assert "failed" in str(table)
    with pytest.raises(ValueError):
        pg.compare({"good": good, "wrong": wrong}, x, num_samples=5)


def test_bad_input_is_refused(two_vaes):
    ppca, good, _ = two_vaes
    x = ppca.sample(10, seed=6)
    with pytest.raises(TypeError, match="models must be a non-empty dict"):
        pg.compare([good], x)
    with pytest.raises(ValueError, match="on_error must be 'raise' or 'report'"):
        pg.compare({"a": good}, x, on_error="ignore")
    short = LikelihoodEstimate(torch.zeros(3), "iwae", True, 10, 6)
    with pytest.raises(ValueError, match="holds 3 data points, x holds 10"):
        pg.compare({"a": short}, x)
    with pytest.raises(TypeError, match="methods must be None"):
        pg.compare({"a": good}, x, methods=3)

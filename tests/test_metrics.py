"""The PacGAN mode-coverage protocol on synthetic samples."""

from __future__ import annotations

import math

import pytest
import torch

import probgen as pg


@pytest.mark.parametrize("name, num_modes", [("ring8", 8), ("grid25", 25)])
def test_perfect_samples_cover_every_mode(name, num_modes):
    centres, sd = pg.datasets.mode_centers(name)
    on_modes = centres.repeat(math.ceil(2500 / num_modes), 1)[:2500] + 0.5 * sd * torch.rand(2500, 2)
    result = pg.metrics.mode_coverage(on_modes, name)
    assert (result.modes_covered, result.num_modes, result.high_quality) == (num_modes, num_modes, 1.0)
    assert result.reverse_kl == pytest.approx(0, abs=1e-3) and int(result.counts.sum()) == 2500
    # draws from the true mixture: 1 - exp(-9/2) = 98.9% of a 2-D Gaussian lies within 3 sd
    truth = pg.metrics.mode_coverage(pg.datasets.sample_toy(name, 2500, seed=5), name)
    assert truth.modes_covered == num_modes
    assert abs(truth.high_quality - (1 - math.exp(-4.5))) < 0.01
    assert truth.reverse_kl < 0.02


def test_one_mode_and_off_mode_noise():
    centres, sd = pg.datasets.mode_centers("grid25")
    one = centres[7] + sd * torch.randn(2500, 2).clamp(-1, 1)
    result = pg.metrics.mode_coverage(one, "grid25")
    assert result.modes_covered == 1 and result.high_quality == 1.0
    assert result.reverse_kl == pytest.approx(math.log(25))
    # points half-way between modes are near none of them
    between = centres[:20] + torch.tensor([1.0, 1.0])
    result = pg.metrics.mode_coverage(between.repeat(125, 1), "grid25")
    assert (result.modes_covered, result.high_quality, result.reverse_kl) == (0, 0.0, math.inf)
    # a sample just outside 3 sd is low quality, just inside is high quality
    centre = centres[0]
    result = pg.metrics.mode_coverage(torch.stack([centre + torch.tensor([3.1 * sd, 0]), centre + torch.tensor([2.9 * sd, 0])]), "grid25")
    assert result.high_quality == 0.5 and result.modes_covered == 1
    assert "1/25 modes" in str(result)


def test_mode_coverage_bad_input():
    with pytest.raises(ValueError, match="no mode benchmark named 'ring9'"):
        pg.metrics.mode_coverage(torch.zeros(5, 2), "ring9")
    with pytest.raises(ValueError, match=r"shape \(num_samples, 2\)"):
        pg.metrics.mode_coverage(torch.zeros(5, 3))
    with pytest.raises(ValueError, match="NaN or infinite"):
        pg.metrics.mode_coverage(torch.full((5, 2), float("nan")))
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        pg.metrics.mode_coverage([[0.0, 1.0]])

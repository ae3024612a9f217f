"""pg.DataInfo: the data's description that every model takes first."""

from __future__ import annotations

import pytest
import torch

import probgen as pg
from probgen.distributions import integer_levels


def test_it_validates_itself():
    with pytest.raises(ValueError, match="support must be one of"):
        pg.DataInfo((2,), "ordinal")
    with pytest.raises(ValueError, match="num_levels >= 2"):
        pg.DataInfo((2,), "discrete")
    with pytest.raises(ValueError, match="real data has no num_levels"):
        pg.DataInfo((2,), "real", 5)
    with pytest.raises(ValueError, match="binary data has 2 levels"):
        pg.DataInfo((2,), "binary", 3)
    for shape in [(), (0,), (2, -1), (2.5,), "ab"]:
        with pytest.raises((ValueError, TypeError), match="event_shape"):
            pg.DataInfo(shape)
    with pytest.raises(TypeError, match="num_levels must be an integer"):
        pg.DataInfo((2,), "discrete", 2.5)
    assert pg.DataInfo((28, 28), "binary").num_levels == 2
    assert pg.DataInfo(5).event_shape == (5,)


def test_an_event_shape_alone_means_real_data_and_configs_round_trip():
    assert pg.DataInfo.of((8, 8)) == pg.DataInfo((8, 8), "real")
    info = pg.datasets.load("optdigits").info
    assert pg.DataInfo.of(info) is info
    assert pg.DataInfo.from_config(info.to_config()) == info
    assert (info.num_dims, info.is_discrete, info.name) == (64, True, "optdigits")
    with pytest.raises(ValueError, match="keys"):
        pg.DataInfo.from_config({"shape": [2]})


def test_support_containment_and_scaling():
    binary, levels17, levels5, real = (pg.DataInfo((3,), "binary"), pg.DataInfo((3,), "discrete", 17),
                                       pg.DataInfo((3,), "discrete", 5), pg.DataInfo((3,)))
    assert levels17.contains(binary) and levels17.contains(levels5) and not levels5.contains(levels17)
    assert real.contains(levels17) and not binary.contains(real) and not binary.contains(levels5)
    assert not real.contains(pg.DataInfo((4,)))
    x = torch.tensor([[0.0, 8.0, 16.0]])
    assert torch.equal(levels17.to_unit_interval(x), torch.tensor([[0.0, 0.5, 1.0]]))
    assert torch.equal(levels17.to_signed_interval(x), torch.tensor([[-1.0, 0.0, 1.0]]))
    assert real.to_unit_interval(x) is x


def test_validate_names_the_support_and_the_offending_value():
    info = pg.DataInfo((3,), "discrete", 17)
    info.validate(torch.tensor([[0.0, 3.0, 16.0]]))
    with pytest.raises(ValueError, match=r"integer levels \{0, 1, ..., 16\}.*2 values off.*e.g. 0.5"):
        info.validate(torch.tensor([[0.5, 3.0, 17.0]]), "train")
    with pytest.raises(TypeError, match="floating-point"):
        info.validate(torch.tensor([[0, 3, 16]]))
    with pytest.raises(ValueError, match=r"shape \(num_data, 3\)"):
        info.validate(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="NaN"):
        pg.DataInfo((3,)).validate(torch.tensor([[0.0, float("nan"), 1.0]]))


def test_integer_levels_recognises_level_data():
    assert integer_levels(torch.tensor([0.0, 3.0, 16.0])) == 17
    assert integer_levels(torch.tensor([0.0, 1.0])) == 2
    assert integer_levels(torch.tensor([0.0, 0.0])) == 2
    assert integer_levels(torch.tensor([0.5, 1.0])) is None
    assert integer_levels(torch.tensor([-1.0, 1.0])) is None

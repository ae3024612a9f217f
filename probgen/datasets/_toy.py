"""Two-dimensional toy densities, drawn with fixed seeds.

Every generator is written as a sampler from a density we can reason about, so that
the true entropy (the floor of any model's test NLL) is a property of the generator.
"""

from __future__ import annotations

import math

import torch

from ._core import DataInfo, Dataset, _register

__all__ = ["TOY_SIZES", "sample_toy", "mode_centers"]

TOY_SIZES = {"train": 20000, "valid": 5000, "test": 10000}
_SPLIT_SEEDS = {"train": 0, "valid": 1, "test": 2}


def _moons(n, g):
    # two interleaved half circles, angle uniform on [0, pi], Gaussian noise sd 0.1,
    # then scaled by 2 and centred
    t = torch.rand(n, generator=g) * math.pi
    upper = torch.rand(n, generator=g) < 0.5
    x = torch.where(upper, torch.cos(t), 1 - torch.cos(t))
    y = torch.where(upper, torch.sin(t), 0.5 - torch.sin(t))
    points = torch.stack([x, y], -1) + 0.1 * torch.randn(n, 2, generator=g)
    return 2 * points - torch.tensor([1.0, 0.5])


def _eight_gaussians(n, g):
    # unit-direction centres at radius 4, sd 0.5, all scaled by 1/sqrt(2)
    k = torch.randint(0, 8, (n,), generator=g)
    angle = k * (math.pi / 4)
    centres = 4 * torch.stack([torch.cos(angle), torch.sin(angle)], -1)
    return (centres + 0.5 * torch.randn(n, 2, generator=g)) / math.sqrt(2)


def _checkerboard(n, g):
    # uniform over the 8 dark squares (side 2) of a 4x4 board on [-4, 4]^2:
    # entropy ln(8 * 4) = ln 32
    dark = torch.tensor([(i, j) for i in range(4) for j in range(4) if (i + j) % 2 == 0])
    cell = dark[torch.randint(0, 8, (n,), generator=g)]
    return -4 + 2 * (cell + torch.rand(n, 2, generator=g))


def _pinwheel(n, g, num_arms=5, radial_sd=0.3, tangential_sd=0.1, rate=0.25):
    # the pinwheel of Johnson et al. (2016): stretched Gaussians rotated by radius
    arm = torch.randint(0, num_arms, (n,), generator=g)
    base = torch.randn(n, 2, generator=g) * torch.tensor([radial_sd, tangential_sd])
    base[:, 0] += 1.0
    angle = arm * (2 * math.pi / num_arms) + rate * torch.exp(base[:, 0])
    cos, sin = torch.cos(angle), torch.sin(angle)
    rotated = torch.stack([cos * base[:, 0] - sin * base[:, 1], sin * base[:, 0] + cos * base[:, 1]], -1)
    return 2 * rotated


def _spirals(n, g):
    # two interleaved Archimedean spirals, more points further out, noise sd 0.1
    t = torch.sqrt(torch.rand(n, generator=g)) * 3 * math.pi
    sign = torch.where(torch.rand(n, generator=g) < 0.5, 1.0, -1.0)
    points = sign[:, None] * torch.stack([t * torch.cos(t), t * torch.sin(t)], -1) / 3
    return points + 0.1 * torch.randn(n, 2, generator=g)


def mode_centers(name: str) -> tuple[torch.Tensor, float]:
    """Centres and standard deviation of the PacGAN mode benchmarks ``ring8``/``grid25``."""
    if name == "ring8":
        angle = torch.arange(8) * (2 * math.pi / 8)
        return torch.stack([torch.cos(angle), torch.sin(angle)], -1), 0.01
    if name == "grid25":
        values = torch.arange(-4.0, 5.0, 2.0)
        return torch.cartesian_prod(values, values), 0.05
    raise ValueError(f"no mode benchmark named {name!r}; expected 'ring8' or 'grid25'")


def _modes(name):
    def draw(n, g):
        centres, sd = mode_centers(name)
        k = torch.randint(0, len(centres), (n,), generator=g)
        return centres[k] + sd * torch.randn(n, 2, generator=g)

    return draw


_GENERATORS = {
    "moons": _moons,
    "eight_gaussians": _eight_gaussians,
    "checkerboard": _checkerboard,
    "pinwheel": _pinwheel,
    "spirals": _spirals,
    "ring8": _modes("ring8"),
    "grid25": _modes("grid25"),
}


def sample_toy(name: str, n: int, seed: int = 0) -> torch.Tensor:
    """Draw ``n`` points of the toy density ``name`` with a fixed seed."""
    if name not in _GENERATORS:
        raise ValueError(f"unknown toy density {name!r}; expected one of {sorted(_GENERATORS)}")
    return _GENERATORS[name](n, torch.Generator().manual_seed(seed)).float()


@_register(*_GENERATORS)
def _load_toy(name, root, download):
    splits = {s: sample_toy(name, size, seed=_SPLIT_SEEDS[s]) for s, size in TOY_SIZES.items()}
    return Dataset(splits["train"], splits["valid"], splits["test"], DataInfo((2,), "real", name=name))

"""Multilayer perceptrons: hidden layers (plain or gated), encoders and decoders for vectors,
and the MLP generator and discriminator of a GAN.

Every network here accepts any number of leading batch dimensions, so the same module
serves a batch of data and a batch of importance samples of that batch.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["ACTIVATIONS", "GatedLinear", "hidden_layers", "MLP", "MLPEncoder", "MLPDecoder", "MLPGenerator",
           "MLPDiscriminator"]


class GatedLinear(nn.Module):
    r"""A gated hidden layer, :math:`h = (W x + b) \odot \sigma(V x + c)` (Dauphin et al.,
    2017), as in the MLP VAEs of Tomczak & Welling (2018). One matrix product computes both
    halves."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.linear = nn.Linear(in_features, 2 * out_features)

    def forward(self, x):
        value, gate = self.linear(x).chunk(2, -1)
        return value * torch.sigmoid(gate)


def _plain(nonlinearity):
    return lambda a, b: [nn.Linear(a, b), nonlinearity()]


# name -> factory of one hidden layer's modules, (in_features, out_features) -> [modules]
ACTIVATIONS = {
    "silu": _plain(nn.SiLU),
    "relu": _plain(nn.ReLU),
    "tanh": _plain(nn.Tanh),
    "elu": _plain(nn.ELU),
    "gated": lambda a, b: [GatedLinear(a, b)],
}


def hidden_layers(sizes, activation=nn.SiLU) -> list[nn.Module]:
    """Hidden layers ``sizes[0] -> sizes[1] -> ...``: a linear map followed by ``activation``
    (a module class) each, or, for a name in ``ACTIVATIONS``, that name's layer (``"gated"``:
    one :class:`GatedLinear` each)."""
    if isinstance(activation, str):
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; expected one of {sorted(ACTIVATIONS)} or a module class")
        layer = ACTIVATIONS[activation]
    else:
        layer = _plain(activation)
    return [module for a, b in zip(sizes[:-1], sizes[1:]) for module in layer(a, b)]


class MLP(nn.Sequential):
    """A multilayer perceptron: ``in_features -> hidden... -> out_features``.

    :param activation: the nonlinearity class placed after every hidden layer, or a name:
        ``"silu"``, ``"relu"``, ``"tanh"``, ``"elu"``, or ``"gated"`` (:class:`GatedLinear`
        hidden layers).
    """

    def __init__(self, in_features: int, hidden: tuple[int, ...] | list[int], out_features: int, activation=nn.SiLU):
        sizes = [in_features, *hidden]
        layers = hidden_layers(sizes, activation)
        layers.append(nn.Linear(sizes[-1], out_features))
        super().__init__(*layers)
        self.in_features, self.out_features = in_features, out_features


class MLPEncoder(nn.Module):
    """Flattens the event dimensions and maps them to ``out_features`` features."""

    def __init__(self, event_shape, hidden=(256, 256), activation=nn.SiLU):
        super().__init__()
        self.event_shape = tuple(event_shape)
        self.out_features = hidden[-1]
        self.net = nn.Sequential(*hidden_layers([math.prod(self.event_shape), *hidden], activation))

    def forward(self, x):
        return self.net(x.flatten(-len(self.event_shape)))


class MLPDecoder(nn.Module):
    """Maps a latent vector to a flat vector of ``out_features`` likelihood parameters."""

    def __init__(self, latent_dim: int, out_features: int, hidden=(256, 256), activation=nn.SiLU):
        super().__init__()
        self.net = MLP(latent_dim, hidden, out_features, activation)

    def forward(self, z):
        return self.net(z)


class MLPGenerator(nn.Module):
    """Latent vectors to flat data vectors, reshaped to ``event_shape``."""

    def __init__(self, latent_dim, event_shape, hidden=(256, 256, 256)):
        super().__init__()
        self.event_shape = tuple(event_shape)
        self.net = MLP(latent_dim, hidden, math.prod(self.event_shape), nn.ReLU)

    def forward(self, z):
        return self.net(z).reshape(*z.shape[:-1], *self.event_shape)


class MLPDiscriminator(nn.Module):
    """Flattens the event dimensions; one real score per data point."""

    def __init__(self, event_shape, hidden=(256, 256, 256)):
        super().__init__()
        self.event_shape = tuple(event_shape)
        self.net = MLP(math.prod(self.event_shape), hidden, 1, lambda: nn.LeakyReLU(0.2))

    def forward(self, x):
        return self.net(x.flatten(-len(self.event_shape))).squeeze(-1)

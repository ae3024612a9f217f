"""Networks only: MLPs and a small convolutional encoder/decoder pair.

Every network here accepts any number of leading batch dimensions, so the same module
serves a batch of data and a batch of importance samples of that batch.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["ACTIVATIONS", "GatedLinear", "hidden_layers", "MLP", "MLPEncoder", "MLPDecoder", "ConvEncoder", "ConvDecoder"]


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


def _fold(x, event_dims):
    batch = x.shape[: x.dim() - event_dims]
    return x.reshape(-1, *x.shape[x.dim() - event_dims :]), batch


class ConvEncoder(nn.Module):
    """Two stride-2 convolutions and a linear layer, for ``(H, W)`` or ``(C, H, W)`` images
    whose height and width are multiples of 4."""

    def __init__(self, event_shape, channels=32, out_features=256):
        super().__init__()
        self.event_shape = tuple(event_shape)
        c, h, w = (1, *self.event_shape) if len(self.event_shape) == 2 else self.event_shape
        if h % 4 or w % 4:
            raise ValueError(f"ConvEncoder needs height and width divisible by 4, got {self.event_shape}")
        self.in_channels, self.out_features = c, out_features
        self.net = nn.Sequential(
            nn.Conv2d(c, channels, 4, 2, 1), nn.SiLU(),
            nn.Conv2d(channels, 2 * channels, 4, 2, 1), nn.SiLU(),
            nn.Flatten(), nn.Linear(2 * channels * (h // 4) * (w // 4), out_features), nn.SiLU(),
        )

    def forward(self, x):
        flat, batch = _fold(x, len(self.event_shape))
        if len(self.event_shape) == 2:
            flat = flat.unsqueeze(1)
        return self.net(flat).reshape(*batch, self.out_features)


class ConvDecoder(nn.Module):
    """A linear layer and two stride-2 transposed convolutions; outputs ``params_per_pixel``
    channels per pixel, returned flat (``params_per_pixel * C * H * W`` per latent)."""

    def __init__(self, latent_dim: int, event_shape, params_per_pixel: int, channels=32):
        super().__init__()
        self.event_shape = tuple(event_shape)
        c, h, w = (1, *self.event_shape) if len(self.event_shape) == 2 else self.event_shape
        if h % 4 or w % 4:
            raise ValueError(f"ConvDecoder needs height and width divisible by 4, got {self.event_shape}")
        self.start = (2 * channels, h // 4, w // 4)
        self.net = nn.Sequential(
            nn.Linear(latent_dim, math.prod(self.start)), nn.SiLU(),
            nn.Unflatten(1, self.start),
            nn.ConvTranspose2d(2 * channels, channels, 4, 2, 1), nn.SiLU(),
            nn.ConvTranspose2d(channels, params_per_pixel * c, 4, 2, 1),
        )

    def forward(self, z):
        flat, batch = _fold(z, 1)
        return self.net(flat).reshape(*batch, -1)


from .unet import NoiseLevelEmbedding, TimeMLP, UNet  # noqa: E402

__all__ += ["NoiseLevelEmbedding", "TimeMLP", "UNet"]

"""Convolutional networks for ``(H, W)`` or ``(C, H, W)`` images whose height and width are
multiples of 4: a VAE's encoder and decoder, and a DCGAN generator and discriminator
(Radford et al., 2016). Leading batch dimensions are folded and restored.

References:
    Radford, Metz, Chintala (2016). Unsupervised Representation Learning with Deep
    Convolutional Generative Adversarial Networks. ICLR.
"""

from __future__ import annotations

import math

from torch import nn

from .shapes import fold_batch, image_shape

__all__ = ["ConvEncoder", "ConvDecoder", "DCGANGenerator", "DCGANDiscriminator"]


class ConvEncoder(nn.Module):
    """Two stride-2 convolutions and a linear layer, for ``(H, W)`` or ``(C, H, W)`` images
    whose height and width are multiples of 4."""

    def __init__(self, event_shape, channels=32, out_features=256):
        super().__init__()
        self.event_shape = tuple(event_shape)
        c, h, w = image_shape(self.event_shape, "ConvEncoder", multiple=4)
        self.in_channels, self.out_features = c, out_features
        self.net = nn.Sequential(
            nn.Conv2d(c, channels, 4, 2, 1), nn.SiLU(),
            nn.Conv2d(channels, 2 * channels, 4, 2, 1), nn.SiLU(),
            nn.Flatten(), nn.Linear(2 * channels * (h // 4) * (w // 4), out_features), nn.SiLU(),
        )

    def forward(self, x):
        flat, batch = fold_batch(x, len(self.event_shape))
        if len(self.event_shape) == 2:
            flat = flat.unsqueeze(1)
        return self.net(flat).reshape(*batch, self.out_features)


class ConvDecoder(nn.Module):
    """A linear layer and two stride-2 transposed convolutions; outputs ``params_per_pixel``
    channels per pixel, returned flat (``params_per_pixel * C * H * W`` per latent)."""

    def __init__(self, latent_dim: int, event_shape, params_per_pixel: int, channels=32):
        super().__init__()
        self.event_shape = tuple(event_shape)
        c, h, w = image_shape(self.event_shape, "ConvDecoder", multiple=4)
        self.start = (2 * channels, h // 4, w // 4)
        self.net = nn.Sequential(
            nn.Linear(latent_dim, math.prod(self.start)), nn.SiLU(),
            nn.Unflatten(1, self.start),
            nn.ConvTranspose2d(2 * channels, channels, 4, 2, 1), nn.SiLU(),
            nn.ConvTranspose2d(channels, params_per_pixel * c, 4, 2, 1),
        )

    def forward(self, z):
        flat, batch = fold_batch(z, 1)
        return self.net(flat).reshape(*batch, -1)


class DCGANGenerator(nn.Module):
    """A small DCGAN generator: a linear layer and two stride-2 transposed convolutions,
    with batch normalization between them (Radford et al., 2016)."""

    def __init__(self, latent_dim, event_shape, channels=64):
        super().__init__()
        self.event_shape = tuple(event_shape)
        c, h, w = image_shape(self.event_shape, "a DCGAN network", multiple=4)
        start = (2 * channels, h // 4, w // 4)
        self.net = nn.Sequential(
            nn.Linear(latent_dim, math.prod(start)), nn.BatchNorm1d(math.prod(start)), nn.ReLU(),
            nn.Unflatten(1, start),
            nn.ConvTranspose2d(2 * channels, channels, 4, 2, 1), nn.BatchNorm2d(channels), nn.ReLU(),
            nn.ConvTranspose2d(channels, c, 4, 2, 1),
        )

    def forward(self, z):
        flat, batch = fold_batch(z, 1)
        return self.net(flat).reshape(*batch, *self.event_shape)


class DCGANDiscriminator(nn.Module):
    """A small DCGAN discriminator without batch normalization (so each data point's score,
    and its gradient, depends on that data point alone, as the gradient penalty needs)."""

    def __init__(self, event_shape, channels=64):
        super().__init__()
        self.event_shape = tuple(event_shape)
        c, h, w = image_shape(self.event_shape, "a DCGAN network", multiple=4)
        self.net = nn.Sequential(
            nn.Conv2d(c, channels, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(channels, 2 * channels, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Flatten(), nn.Linear(2 * channels * (h // 4) * (w // 4), 1),
        )

    def forward(self, x):
        flat, batch = fold_batch(x, len(self.event_shape))
        if len(self.event_shape) == 2:
            flat = flat.unsqueeze(1)
        return self.net(flat).reshape(batch)

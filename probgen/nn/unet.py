r"""Denoising networks for diffusion models: a noise-level embedding, an MLP for vectors and
a small U-Net for images.

Each network is called as ``network(z, logsnr)``: ``z`` has shape ``batch + event_shape``
(any number of leading batch dimensions) and ``logsnr`` shape ``batch``; it returns a
tensor shaped like ``z``. Conditioning on the log signal-to-noise ratio :math:`\lambda`
rather than on a time index makes one network serve every schedule and step count.

References:
    Vaswani et al. (2017). Attention Is All You Need. (sinusoidal embeddings)
    Ronneberger, Fischer, Brox (2015). U-Net. MICCAI.
    Ho, Jain, Abbeel (2020). Denoising Diffusion Probabilistic Models. NeurIPS.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .shapes import image_shape

__all__ = ["NoiseLevelEmbedding", "TimeMLP", "UNet"]


class NoiseLevelEmbedding(nn.Module):
    r"""Sinusoidal features of the log-SNR followed by a two-layer MLP.

    Frequencies are geometric between ``1/64`` and ``4`` per unit of :math:`\lambda`, which
    resolves both the coarse range (about :math:`[-20, 20]`) and fine steps of it.
    """

    def __init__(self, out_features: int = 128, num_frequencies: int = 32):
        super().__init__()
        self.register_buffer("frequencies", torch.exp(torch.linspace(math.log(1 / 64), math.log(4.0), num_frequencies)))
        self.out_features = out_features
        self.net = nn.Sequential(nn.Linear(2 * num_frequencies, out_features), nn.SiLU(), nn.Linear(out_features, out_features))

    def forward(self, logsnr: torch.Tensor) -> torch.Tensor:
        angles = logsnr.float().unsqueeze(-1) * self.frequencies
        return self.net(torch.cat([angles.sin(), angles.cos()], -1))


class TimeMLP(nn.Module):
    """An MLP denoiser for vector data: ``[z, embedding(logsnr)] -> hidden... -> z-shaped output``."""

    def __init__(self, event_shape, hidden=(256, 256, 256), embed_dim: int = 64):
        super().__init__()
        self.event_shape = tuple(event_shape)
        dim = math.prod(self.event_shape)
        self.embed = NoiseLevelEmbedding(embed_dim)
        sizes = [dim + embed_dim, *hidden]
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.SiLU()]
        layers.append(nn.Linear(sizes[-1], dim))
        self.net = nn.Sequential(*layers)

    def forward(self, z, logsnr):
        flat = z.flatten(z.dim() - len(self.event_shape))
        out = self.net(torch.cat([flat, self.embed(logsnr)], -1))
        return out.reshape(z.shape)


class _ResBlock(nn.Module):
    """Two 3x3 convolutions with GroupNorm; the noise-level embedding shifts the middle."""

    def __init__(self, in_channels, out_channels, embed_dim):
        super().__init__()
        self.norm1 = nn.GroupNorm(min(8, in_channels), in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.shift = nn.Linear(embed_dim, out_channels)
        self.norm2 = nn.GroupNorm(min(8, out_channels), out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()
        self.act = nn.SiLU()

    def forward(self, x, emb):
        h = self.conv1(self.act(self.norm1(x)))
        h = h + self.shift(emb)[:, :, None, None]
        h = self.conv2(self.act(self.norm2(h)))
        return self.skip(x) + h


class UNet(nn.Module):
    """A small U-Net for ``(H, W)`` or ``(C, H, W)`` images.

    Each level holds one residual block; the resolution halves between levels for as long as
    it stays even (at most ``len(channel_mults) - 1`` times), so 8x8 and 28x28 both work.
    Skip connections concatenate each level's output into the matching upward block.

    :param channels: channels of the first level.
    :param channel_mults: channel multiplier of each level.
    """

    def __init__(self, event_shape, channels: int = 32, channel_mults=(1, 2, 2), embed_dim: int = 128):
        super().__init__()
        self.event_shape = tuple(event_shape)
        c, h, w = image_shape(self.event_shape, "UNet")
        levels = 1
        while levels < len(channel_mults) and h % 2 == 0 and w % 2 == 0:
            h, w, levels = h // 2, w // 2, levels + 1
        widths = [channels * m for m in channel_mults[:levels]]
        self.embed = NoiseLevelEmbedding(embed_dim)
        self.conv_in = nn.Conv2d(c, widths[0], 3, padding=1)
        self.down_blocks = nn.ModuleList()
        self.downsample = nn.ModuleList()
        previous = widths[0]
        for i, width in enumerate(widths):
            self.down_blocks.append(_ResBlock(previous, width, embed_dim))
            previous = width
            if i < levels - 1:
                self.downsample.append(nn.Conv2d(width, width, 3, stride=2, padding=1))
        self.middle = _ResBlock(previous, previous, embed_dim)
        self.up_blocks = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i, width in reversed(list(enumerate(widths))):
            self.up_blocks.append(_ResBlock(previous + width, width, embed_dim))
            previous = width
            if i > 0:
                self.upsample.append(nn.ConvTranspose2d(width, widths[i - 1], 4, stride=2, padding=1))
                previous = widths[i - 1]
        self.out = nn.Sequential(nn.GroupNorm(min(8, previous), previous), nn.SiLU(), nn.Conv2d(previous, c, 3, padding=1))
        # start as the zero function: the first predictions are the prior mean
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, z, logsnr):
        event_dims = len(self.event_shape)
        batch = z.shape[: z.dim() - event_dims]
        x = z.reshape(-1, *self.event_shape)
        if event_dims == 2:
            x = x.unsqueeze(1)
        emb = self.embed(logsnr.reshape(-1))
        h = self.conv_in(x)
        skips = []
        for i, block in enumerate(self.down_blocks):
            h = block(h, emb)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        h = self.middle(h, emb)
        for i, block in enumerate(self.up_blocks):
            h = block(torch.cat([h, skips.pop()], 1), emb)
            if i < len(self.upsample):
                h = self.upsample[i](h)
        return self.out(h).reshape(*batch, *self.event_shape)

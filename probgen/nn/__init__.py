"""Networks only: MLPs, convolutional encoders and decoders, DCGAN networks, a U-Net with a
noise-level embedding, and the shape helpers they share (batch folding, image shapes, PacGAN
packing).

Every network here accepts any number of leading batch dimensions, so the same module
serves a batch of data and a batch of importance samples of that batch.
"""

from .conv import ConvDecoder, ConvEncoder, DCGANDiscriminator, DCGANGenerator
from .mlp import ACTIVATIONS, MLP, GatedLinear, MLPDecoder, MLPDiscriminator, MLPEncoder, MLPGenerator, hidden_layers
from .packing import pack, packed_event_shape
from .shapes import fold_batch, image_shape, side_by_side
from .unet import NoiseLevelEmbedding, TimeMLP, UNet

__all__ = [
    "ACTIVATIONS",
    "ConvDecoder",
    "ConvEncoder",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "GatedLinear",
    "MLP",
    "MLPDecoder",
    "MLPDiscriminator",
    "MLPEncoder",
    "MLPGenerator",
    "NoiseLevelEmbedding",
    "TimeMLP",
    "UNet",
    "fold_batch",
    "hidden_layers",
    "image_shape",
    "pack",
    "packed_event_shape",
    "side_by_side",
]

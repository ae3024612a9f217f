"""Model families, each a PyroModule with ``model()`` and ``guide()``."""

from .base import FAMILIES, DecoderModel, GenerativeModel, build_model, register_family, upgrade_config
from .diffusion import Diffusion
from .flow import Flow, Quantized
from .gan import GAN
from .hvae import HierarchicalVAE
from .priors import resolve_prior
from .vae import VAE, DecoderMean

__all__ = [
    "DecoderMean",
    "DecoderModel",
    "Diffusion",
    "FAMILIES",
    "Flow",
    "GAN",
    "GenerativeModel",
    "HierarchicalVAE",
    "Quantized",
    "VAE",
    "build_model",
    "register_family",
    "resolve_prior",
    "upgrade_config",
]

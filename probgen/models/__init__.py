"""Model families, each a PyroModule with ``model()`` and ``guide()``."""

from .base import FAMILIES, GenerativeModel, build_model, register_family, trace_log_weights
from .vae import VAE, DecoderMean, resolve_prior
from .flow import Flow, Quantized
from .gan import GAN
from .diffusion import Diffusion, DiffusionELBO

__all__ = ["DecoderMean", "Flow", "Quantized", "Diffusion", "DiffusionELBO", "GAN", "FAMILIES", "GenerativeModel", "VAE", "build_model", "register_family", "resolve_prior", "trace_log_weights"]

"""Closed-form optimal denoisers obeying the protocol ``D(x, sigma) -> x_hat``."""

from jaxgap.denoisers._base import Denoiser, Pytree, score, velocity

__all__ = ["Denoiser", "Pytree", "score", "velocity"]

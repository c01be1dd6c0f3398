"""Closed-form optimal denoisers obeying the protocol ``D(x, sigma) -> x_hat``.

Every denoiser is a pytree callable: ``x: [..., d]``, ``sigma`` a scalar or an array
broadcastable to ``x.shape[:-1]``; it passes through ``jax.jit``, ``vmap`` and ``grad``.
"""

from jaxgap.denoisers._base import Denoiser, Pytree, score, velocity
from jaxgap.denoisers._kernel import Posterior
from jaxgap.denoisers.empirical import EmpiricalDenoiser, ShardedEmpiricalDenoiser
from jaxgap.denoisers.gaussian import GaussianDenoiser
from jaxgap.denoisers.gmm import GMMDenoiser

__all__ = [
    "Denoiser",
    "EmpiricalDenoiser",
    "GMMDenoiser",
    "GaussianDenoiser",
    "Posterior",
    "Pytree",
    "ShardedEmpiricalDenoiser",
    "score",
    "velocity",
]

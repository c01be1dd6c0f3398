"""Closed-form optimal denoisers, and the protocol every denoiser obeys.

A denoiser is any callable ``D(x, sigma) -> x_hat`` (:class:`Denoiser`): ``x: [..., d]``,
``sigma`` a scalar or an array broadcastable to ``x.shape[:-1]``. A conditional denoiser
takes ``D(x, sigma, cond)`` (:class:`ConditionalDenoiser`) with ``cond`` an integer array
broadcastable to ``x.shape[:-1]``. Closed-form denoisers, ``nnx`` networks, plain
functions, closures and ``functools.partial`` objects all qualify; every consumer
(losses, samplers, metrics, theory, training) takes any of them and passes ``cond=``
through. The closed forms here are pytrees (:class:`ClosedForm`): they pass through
``jax.jit``, ``vmap`` and ``grad``.
"""

from jaxgap._protocol import ConditionalDenoiser, Denoiser
from jaxgap.denoisers._base import ClosedForm, Pytree, score, velocity
from jaxgap.denoisers._kernel import Posterior
from jaxgap.denoisers.empirical import EmpiricalDenoiser, ShardedEmpiricalDenoiser
from jaxgap.denoisers.gaussian import GaussianDenoiser
from jaxgap.denoisers.gmm import GMMDenoiser

__all__ = [
    "ClosedForm",
    "ConditionalDenoiser",
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

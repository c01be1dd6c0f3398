"""Closed-form optimal denoisers, and the protocol every denoiser obeys.

A denoiser is any callable ``D(x, sigma) -> x_hat`` (:class:`Denoiser`): ``x: [..., d]``,
``sigma`` a scalar or an array broadcastable to ``x.shape[:-1]``. A conditional denoiser
takes ``D(x, sigma, cond)`` (:class:`ConditionalDenoiser`) with ``cond`` an integer array
broadcastable to ``x.shape[:-1]``. Closed-form denoisers, ``nnx`` networks, plain
functions, closures and ``functools.partial`` objects all qualify; every consumer
(losses, samplers, metrics, theory, training) takes any of them and passes ``cond=``
through. The closed forms here are pytrees (:class:`ClosedForm`): they pass through
``jax.jit``, ``vmap`` and ``grad``.

Conditional closed forms (:class:`ConditionalEmpiricalDenoiser`,
:class:`ConditionalGaussianDenoiser`) treat the null condition :data:`NULL` (-1) as the
unconditional denoiser of all their training points; :func:`guided` gives the
classifier-free guidance combination of any conditional denoiser.
"""

from jaxgap._protocol import NULL, ConditionalDenoiser, Denoiser
from jaxgap.denoisers._base import ClosedForm, Pytree, score, velocity
from jaxgap.denoisers._kernel import Posterior
from jaxgap.denoisers.conditional import ConditionalEmpiricalDenoiser, ConditionalGaussianDenoiser
from jaxgap.denoisers.empirical import EmpiricalDenoiser, ShardedEmpiricalDenoiser
from jaxgap.denoisers.gaussian import GaussianDenoiser
from jaxgap.denoisers.gmm import GMMDenoiser
from jaxgap.denoisers.guidance import Guided, guided

__all__ = [
    "NULL",
    "ClosedForm",
    "ConditionalDenoiser",
    "ConditionalEmpiricalDenoiser",
    "ConditionalGaussianDenoiser",
    "Denoiser",
    "EmpiricalDenoiser",
    "GMMDenoiser",
    "GaussianDenoiser",
    "Guided",
    "Posterior",
    "Pytree",
    "ShardedEmpiricalDenoiser",
    "guided",
    "score",
    "velocity",
]

"""jaxgap: memorization and generalization in diffusion models, measured exactly in JAX.

Subpackages: :mod:`jaxgap.noise` (EDM noise grids, preconditioning, conversions),
:mod:`jaxgap.data` (datasets), :mod:`jaxgap.denoisers` (closed-form optimal denoisers),
:mod:`jaxgap.losses` (denoising losses over noise grids, gap curves), :mod:`jaxgap.nets`
(flax.nnx EDM denoisers), :mod:`jaxgap.train` (training that tracks the gap).
"""

from jaxgap import data, denoisers, losses, metrics, nets, noise, sampling, theory
from jaxgap.denoisers import (
    EmpiricalDenoiser,
    GaussianDenoiser,
    GMMDenoiser,
    score,
    velocity,
)

__version__ = "0.1.0"

__all__ = [
    "EmpiricalDenoiser",
    "GMMDenoiser",
    "GaussianDenoiser",
    "data",
    "denoisers",
    "losses",
    "metrics",
    "nets",
    "noise",
    "sampling",
    "theory",
    "score",
    "velocity",
]

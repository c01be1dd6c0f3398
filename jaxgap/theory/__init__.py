"""Theory: error-prone toy models of the optimal denoiser and linearized loss terms.

See :mod:`jaxgap.theory.error_models` for the precise definitions.
"""

from jaxgap.theory.error_models import (
    InputNoiseError,
    KernelWidthError,
    LogitNoiseError,
    LossExpansion,
    PositionError,
    PositionErrorField,
    WithError,
    loss_expansion,
    position_error_field,
    with_error,
)
from jaxgap.theory.linearized import (
    denoiser_jacobian,
    empirical_jacobian,
    linearized_sampling,
    position_error_jacobian,
)

__all__ = [
    "InputNoiseError",
    "KernelWidthError",
    "LogitNoiseError",
    "LossExpansion",
    "PositionError",
    "PositionErrorField",
    "WithError",
    "denoiser_jacobian",
    "empirical_jacobian",
    "linearized_sampling",
    "loss_expansion",
    "position_error_field",
    "position_error_jacobian",
    "with_error",
]

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

__all__ = [
    "InputNoiseError",
    "KernelWidthError",
    "LogitNoiseError",
    "LossExpansion",
    "PositionError",
    "PositionErrorField",
    "WithError",
    "loss_expansion",
    "position_error_field",
    "with_error",
]

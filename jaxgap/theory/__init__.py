"""Theory: error-prone toy models of the optimal denoiser and linearized loss terms.

- :mod:`~jaxgap.theory.error_models`: the models (:class:`PositionError`, ...),
  :func:`with_error`, :func:`loss_expansion`, :func:`position_error_field`.
- :mod:`~jaxgap.theory.linearized`: first-order propagation through the sampler, Jacobians.
- :mod:`~jaxgap.theory.closed_form`: closed-form train/validation losses of two toy models.
- :mod:`~jaxgap.theory.conditional`: per-condition memorization thresholds of the optimal
  conditional denoiser (the Gaussian REM limit with per-condition counts) and their
  measurement.
- :mod:`~jaxgap.theory.evidence`: sweeps, fits and validity checks of the position-error
  model (every function that takes a PRNG key takes it first).
"""

from jaxgap.theory.closed_form import (
    ClosedFormGap,
    GaussianPhase,
    gap_peak,
    gaussian_losses,
    two_point_losses,
)
from jaxgap.theory.conditional import (
    ConditionalGap,
    ConditionalThresholds,
    ConditionStats,
    condition_stats,
    conditional_losses,
    conditional_thresholds,
    loss_onset,
)
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
from jaxgap.theory.evidence import (
    DeltaFit,
    DeltaSweep,
    FirstOrderCheck,
    FirstOrderGap,
    FlowFields,
    TrainSizeSweep,
    default_fit_deltas,
    delta_sweep,
    first_order_check,
    first_order_gap,
    fit_delta,
    flow_fields,
    gap_vs_train_size,
)
from jaxgap.theory.linearized import (
    denoiser_jacobian,
    empirical_jacobian,
    linearized_sampling,
    position_error_jacobian,
)

__all__ = ["ClosedFormGap", "ConditionStats", "ConditionalGap", "ConditionalThresholds",
           "DeltaFit", "DeltaSweep", "FirstOrderCheck", "FirstOrderGap", "FlowFields",
           "GaussianPhase", "InputNoiseError", "KernelWidthError", "LogitNoiseError",
           "LossExpansion", "PositionError", "PositionErrorField", "TrainSizeSweep", "WithError",
           "condition_stats", "conditional_losses", "conditional_thresholds", "default_fit_deltas",
           "delta_sweep", "denoiser_jacobian", "empirical_jacobian", "first_order_check",
           "first_order_gap", "fit_delta", "flow_fields", "gap_peak", "gap_vs_train_size",
           "gaussian_losses", "linearized_sampling", "loss_expansion", "loss_onset",
           "position_error_field", "position_error_jacobian", "two_point_losses", "with_error"]

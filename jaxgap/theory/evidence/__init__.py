r"""Evidence from the position-error toy model: sweeps, fits and validity checks.

The toy model is :class:`~jaxgap.theory.PositionError`: the optimal denoiser of the
training set convolved with ``N(0, delta^2 I)``. This package turns it into measurements:

- :func:`fit_delta` (:mod:`.fit`): the ``delta`` whose gap curve best matches a target gap
  curve (e.g. a trained network's), by least squares in ``log sigma``.
- :func:`delta_sweep` (:mod:`.sweeps`): gap curves, their peaks and the memorized fraction
  of samples drawn with the toy model, per ``delta``.
- :func:`gap_vs_train_size` (:mod:`.sweeps`): the gap at fixed ``delta`` for nested
  training subsets.
- :func:`first_order_check`, :func:`first_order_gap` (:mod:`.first_order`): the first- and
  second-order expansions of the toy model's loss in ``delta^2`` against its exact loss,
  per sigma.
- :func:`flow_fields` (:mod:`.flow`): probability-flow velocities of ``D*`` and of the toy
  model on a 2-D grid (for stream plots).

The peak of a sampled gap curve is :func:`jaxgap.losses.curve_peak` (``refine=True``:
interpolated in ``log sigma``). Figures of these results: :mod:`jaxgap.report.theory_plots`.

All losses use :func:`jaxgap.losses.gap_curve` / :func:`jaxgap.losses.denoising_loss` with one
key for every model compared (common random numbers), so differences between models are not
buried in Monte Carlo noise. The key is the first argument of every function that takes one.
"""

from jaxgap.theory.evidence.first_order import (
    FirstOrderCheck,
    FirstOrderGap,
    first_order_check,
    first_order_gap,
)
from jaxgap.theory.evidence.fit import DeltaFit, default_fit_deltas, fit_delta
from jaxgap.theory.evidence.flow import FlowFields, flow_fields
from jaxgap.theory.evidence.sweeps import (
    DeltaSweep,
    TrainSizeSweep,
    delta_sweep,
    gap_vs_train_size,
)

__all__ = ["DeltaFit", "DeltaSweep", "FirstOrderCheck", "FirstOrderGap", "FlowFields",
           "TrainSizeSweep", "default_fit_deltas", "delta_sweep", "first_order_check",
           "first_order_gap", "fit_delta", "flow_fields", "gap_vs_train_size"]

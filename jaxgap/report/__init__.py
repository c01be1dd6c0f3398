"""Reports of jaxgap results: figures (:mod:`~jaxgap.report.plots`, toy-model figures in
:mod:`~jaxgap.report.theory_plots`) and the report writer of ``jaxgap reproduce``
(:mod:`~jaxgap.report.report`: Markdown, self-contained HTML, atomic writes)."""

from jaxgap.report.plots import (
    plot_domain_diagnostics,
    plot_gap_curve,
    plot_gap_curves,
    plot_gap_over_training,
    plot_sample_grid,
)
from jaxgap.report.theory_plots import (
    plot_delta_fit,
    plot_delta_sweep,
    plot_first_order,
    plot_flow_fields,
    plot_gap_vs_train_size,
)

__all__ = [
    "plot_delta_fit",
    "plot_delta_sweep",
    "plot_domain_diagnostics",
    "plot_first_order",
    "plot_flow_fields",
    "plot_gap_curve",
    "plot_gap_curves",
    "plot_gap_over_training",
    "plot_gap_vs_train_size",
    "plot_sample_grid",
]

"""Reports of jaxgap results: figures (and later report.md/html and results.json)."""

from jaxgap.report.plots import (
    plot_domain_diagnostics,
    plot_gap_curve,
    plot_gap_over_training,
    plot_sample_grid,
)

__all__ = [
    "plot_domain_diagnostics",
    "plot_gap_curve",
    "plot_gap_over_training",
    "plot_sample_grid",
]

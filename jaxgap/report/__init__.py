"""Reports of jaxgap results: figures (and later report.md/html and results.json)."""

from jaxgap.report.plots import plot_gap_curve, plot_gap_over_training

__all__ = ["plot_gap_curve", "plot_gap_over_training"]

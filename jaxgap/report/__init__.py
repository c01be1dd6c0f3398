"""Reports of jaxgap results: figures (and later report.md/html and results.json)."""

from jaxgap.report.plots import plot_gap_curve

__all__ = ["plot_gap_curve"]

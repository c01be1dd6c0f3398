"""Factor sweeps: many models in one program, written as tidy tables and analysed.

:mod:`~jaxgap.sweep.tables` reads and writes the tidy CSV tables (``losses.csv``,
``samples.csv``); :mod:`~jaxgap.sweep.analysis` turns them into gap peaks, means over seeds
with t-intervals, the memorization onset and the disjoint-halves distances.
"""

from jaxgap.sweep import analysis, tables

__all__ = ["analysis", "tables"]

"""Factor sweeps: many models in one program, written as tidy tables and analysed.

A sweep is a TOML specification (:mod:`~jaxgap.sweep.spec`: fixed settings, a grid of
factors, seeds, optional disjoint-halves partners); :func:`run_sweep`
(:mod:`~jaxgap.sweep.run`) trains the members that share a program as one ensemble
(:mod:`jaxgap.ensemble`), evaluates and samples them, and writes the tidy tables
``losses.csv`` and ``samples.csv`` (:mod:`~jaxgap.sweep.tables`) and ``sweep.json``, whose
``analyses`` (:mod:`~jaxgap.sweep.analysis`) hold the gap peaks with t-intervals over seeds,
the memorization onset against the training-set size and the disjoint-halves distances.
The command line is ``jaxgap sweep SPEC.toml --out DIR``; figures come from
:func:`jaxgap.report.sweep_plots.plot_sweep`.

Example::

    from jaxgap.sweep import load_spec, run_sweep
    summary = run_sweep(load_spec("docs/sweeps/digits_mlp.toml"), "runs/sweep_digits")
    summary["analyses"]["memorization_onset"]
"""

from jaxgap.sweep import analysis, tables
from jaxgap.sweep.run import run_sweep
from jaxgap.sweep.spec import Member, SweepSpec, load_spec, parse_spec

__all__ = ["Member", "SweepSpec", "analysis", "load_spec", "parse_spec", "run_sweep", "tables"]

"""The ``jaxgap`` command.

Subcommands, one module each (thin: they parse, call library functions and write files):

- ``jaxgap gap`` (:mod:`~jaxgap.cli.gap`): the generalization-gap curve
  ``L_val(sigma) - L_train(sigma)`` of a closed-form optimal denoiser fit on a dataset's
  training split; writes ``gap.json``, ``gap.csv`` and ``gap.png`` into ``--out`` and prints
  a short table.
- ``jaxgap train`` (:mod:`~jaxgap.cli.train`): train a score network, recording the
  per-sigma gap over training.
- ``jaxgap reproduce`` (:mod:`~jaxgap.cli.reproduce`): the whole study end to end
  (:mod:`jaxgap.study`): five resumable stages, then ``report.md``, a self-contained
  ``report.html``, PNGs and ``results.json`` with the claims table.
- ``jaxgap sample`` (:mod:`~jaxgap.cli.sample`): sample with a closed-form denoiser or a
  trained run's network (:func:`jaxgap.study.sample_and_measure`, as the study's sampling
  stage); writes ``samples.npz``, ``memorization.json`` (1/3-rule copy fraction with a
  bootstrap standard error, distances to train and val), ``samples.png`` (image data),
  ``domain.json`` and ``domain.png`` (sampling trajectories against noisy train and val
  states at the sampler's noise levels) into ``--out`` and prints a short summary.
- ``jaxgap sweep`` (:mod:`~jaxgap.cli.sweep`): a factor sweep from a TOML specification
  (:mod:`jaxgap.sweep`): members sharing a program trained as one ensemble, over every
  device and host; ``losses.csv``, ``samples.csv``, ``sweep.json`` and figures.

The arguments are declared in :mod:`~jaxgap.cli.parser`. Errors share one path: bad
arguments, unusable data and unwritable output folders are reported as ONE line
``jaxgap: error: ...`` on stderr with exit status 2 and no traceback. Outputs are written to
temporary names inside the output folder and renamed into place only after every file was
produced (:mod:`~jaxgap.cli.common`), so a failed run leaves no partial results.

Example (shell)::

    jaxgap gap --data digits --denoiser empirical --out runs/demo
    jaxgap sample --denoiser gaussian --data digits --num 256 --steps 18 --out runs/gauss
    jaxgap sample --denoiser runs/mlp --num 256 --out runs/mlp-samples
    python -m jaxgap gap --data npz:cifar10.npz --denoiser gaussian --out runs/cifar

Example:
    >>> main(["gap", "--num-sigmas", "1", "--out", "unused"])
    2
"""

from jaxgap.cli.common import CLIError
from jaxgap.cli.gap import DENOISERS
from jaxgap.cli.parser import EXIT_ERROR, PROG, SAMPLE_METHODS, build_parser, main

__all__ = ["DENOISERS", "EXIT_ERROR", "PROG", "SAMPLE_METHODS", "CLIError", "build_parser",
           "main"]

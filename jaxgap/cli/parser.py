"""The ``jaxgap`` argument parser and entry point: each subcommand's arguments, checked by
argparse (a usage error is one line, exit status 2), and :func:`main`, which runs the
subcommand's module (:mod:`~jaxgap.cli.gap`, :mod:`~jaxgap.cli.train`,
:mod:`~jaxgap.cli.sample`, :mod:`~jaxgap.cli.reproduce`) and turns every input error into
the one line ``jaxgap: error: ...``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from jaxgap import _progress
from jaxgap.cli import gap as gap_cmd
from jaxgap.cli import reproduce as reproduce_cmd
from jaxgap.cli import sample as sample_cmd
from jaxgap.cli import sweep as sweep_cmd
from jaxgap.cli import train as train_cmd
from jaxgap.cli.common import CLIError
from jaxgap.cli.sample import SAMPLE_METHODS

__all__ = ["EXIT_ERROR", "EXIT_INTERRUPTED", "PROG", "SAMPLE_METHODS", "build_parser", "main"]

PROG = "jaxgap"
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors raise :class:`CLIError` (one line) instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise CLIError(f"{message} (see '{self.prog} --help')")


COMMANDS = (gap_cmd, train_cmd, sample_cmd, reproduce_cmd, sweep_cmd)


def build_parser() -> argparse.ArgumentParser:
    """The ``jaxgap`` argument parser: one subparser per module of :data:`COMMANDS` (its
    ``NAME``, ``HELP``, ``DESCRIPTION`` and ``add_arguments``), whose ``run`` is ``func``."""
    parser = _Parser(prog=PROG, description="Memorization and generalization in diffusion "
                     "models, measured exactly in JAX.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for cmd in COMMANDS:
        p = sub.add_parser(cmd.NAME, help=cmd.HELP, description=cmd.DESCRIPTION)
        cmd.add_arguments(p)
        p.set_defaults(func=cmd.run)
    return parser


def _error(message: str) -> int:
    line = " ".join(str(message).split())  # one line, whatever the message holds
    print(f"{PROG}: error: {line}", file=sys.stderr)
    return EXIT_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``jaxgap`` command line; return the exit status.

    Args:
      argv: arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
      0 on success, 2 on a usage or input/output error (reported as one line on stderr),
      130 after Ctrl-C (the run stops at once; what it had finished is kept, so a
      resumable command continues with ``--resume``).
    """
    parser = build_parser()
    # orbax logs through absl; failures reach the user as our one error line instead.
    logging.getLogger("absl").setLevel(logging.CRITICAL)
    try:
        args = parser.parse_args(argv)
        with _progress.catch_interrupts():
            return int(args.func(args) or 0)
    except CLIError as err:
        return _error(str(err))
    except (ValueError, OSError) as err:  # input errors raised below the subcommand layer
        return _error(f"{type(err).__name__}: {err}" if isinstance(err, OSError) else str(err))
    except KeyboardInterrupt as err:
        note = f": {err}" if str(err) else ""
        print(f"{PROG}: interrupted{note}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except SystemExit as exit_:  # --help, --version
        return exit_.code if isinstance(exit_.code, int) else 0

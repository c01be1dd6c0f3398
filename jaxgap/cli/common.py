"""What the subcommands share: the one-line error, the output folder (created, checked,
removed again on failure, written atomically), timed stages on a progress bar, data loading
and the run metadata of every JSON result."""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import IO

from jaxgap import _io

__all__ = ["CLIError", "Stages", "add_data_options", "data_option", "data_options",
           "float_at_least", "int_at_least", "json_text", "load_data", "nonnegative_float",
           "output_folder", "positive_float", "run_info", "stage_bar", "write_outputs"]


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2, no traceback."""


# ------------------------------------------------------------------------------------------
# Argument types and shared arguments
# ------------------------------------------------------------------------------------------

def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer ``>= minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value

    parse.__name__ = "int"
    return parse


def float_at_least(minimum: float, *, strict: bool) -> Callable[[str], float]:
    """An argparse type: a finite number ``> minimum`` (``strict``) or ``>= minimum``."""
    bound = f"{'>' if strict else '>='} {minimum:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (math.isfinite(value) and (value > minimum if strict else value >= minimum)):
            raise argparse.ArgumentTypeError(f"expected a finite number {bound}, got {text!r}")
        return value

    parse.__name__ = "float"
    return parse


positive_float = float_at_least(0.0, strict=True)
nonnegative_float = float_at_least(0.0, strict=False)


def data_option(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` with VALUE read as a Python literal (int, float, bool) or else a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    return key, value


def add_data_options(p: argparse.ArgumentParser, note: str) -> None:
    """``-D KEY=VALUE``: dataset keywords for :func:`jaxgap.data.load` (``note`` ends the
    help text)."""
    p.add_argument("-D", "--data-opt", type=data_option, action="append", default=[],
                   metavar="KEY=VALUE", help=f"dataset keyword, e.g. -D num_train=500 "
                   f"(repeatable; {note})")


# ------------------------------------------------------------------------------------------
# Output folder, stages, data, metadata
# ------------------------------------------------------------------------------------------


def _prepare_out_dir(path: str) -> list[str]:
    """Create ``path`` (with parents) and check it is writable; return the folders created.

    Raises:
      CLIError: the path (or a parent) is a regular file, or the folder cannot be written.
    """
    path = os.path.abspath(path)
    missing = []
    probe = path
    while not os.path.exists(probe):
        missing.append(probe)
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if os.path.exists(probe) and not os.path.isdir(probe):
        raise CLIError(f"--out: expected a folder, but {probe!r} is a file")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:
        raise CLIError(f"--out: cannot create folder {path!r}: {err.strerror or err}") from None
    created = list(reversed(missing))
    try:
        with _io.temp_file(path, ".write-check") as (_, f):
            f.write(b"ok")
    except OSError as err:
        _remove_dirs(created)
        raise CLIError(f"--out: folder {path!r} is not writable: {err.strerror or err}") from None
    return created


def _remove_dirs(created: Sequence[str]) -> None:
    """Remove folders this run created (deepest first), if they are still empty."""
    for d in reversed(created):
        with contextlib.suppress(OSError):
            os.rmdir(d)


@contextlib.contextmanager
def output_folder() -> Iterator[Callable[[str], None]]:
    """Yields ``prepare(path)``, which creates the output folder and checks that it can be
    written (:class:`CLIError` otherwise); if the block fails, the folders ``prepare``
    created are removed again (when still empty), so a failed run leaves nothing."""
    created: list[str] = []
    try:
        yield lambda path: created.extend(_prepare_out_dir(path))
    except BaseException:
        _remove_dirs(created)
        raise


def write_outputs(folder: str, writers: dict[str, Callable[[IO[bytes]], None]]) -> list[str]:
    """Write every file atomically (:func:`jaxgap._io.write_files`): nothing named in
    ``writers`` is replaced unless all of them were written; an OS error is a
    :class:`CLIError` naming ``--out``."""
    try:
        return _io.write_files(os.path.abspath(folder), writers)
    except OSError as err:
        where = f" {err.filename!r}" if err.filename else ""
        raise CLIError(f"--out: cannot write{where}: {err.strerror or err}") from None


class Stages:
    """Named, timed stages shown on a progress bar: ``start(name, desc)``, ``done(name)``;
    ``seconds`` holds the finished stages' wall times."""

    def __init__(self, bar):
        self.bar = bar
        self.seconds: dict[str, float] = {}
        self._t0: dict[str, float] = {}

    def start(self, name: str, desc: str) -> None:
        self.bar.set_description_str(desc)
        self._t0[name] = time.perf_counter()

    def done(self, name: str) -> None:
        self.record(name, time.perf_counter() - self._t0.pop(name))

    def record(self, name: str, seconds: float) -> None:
        """A stage timed elsewhere (e.g. by the library function that ran it)."""
        self.seconds[name] = seconds
        self.bar.update(1)


@contextlib.contextmanager
def stage_bar(total: int) -> Iterator[Stages]:
    """A tqdm bar over named stages whose clock keeps ticking during a long stage.

    No bar when stderr is not a terminal (logs, pipes, tests). On failure the bar is erased,
    so the error line stands alone.
    """
    from tqdm.auto import tqdm

    bar = tqdm(total=total, unit="stage", disable=None, file=sys.stderr, dynamic_ncols=True,
               bar_format="{desc:<34} {bar} {n_fmt}/{total_fmt} [{elapsed}]")
    stop = threading.Event()

    def tick():  # JAX releases the GIL while it compiles and runs
        while not stop.wait(1.0):
            bar.refresh()

    ticker = threading.Thread(target=tick, daemon=True)
    if not bar.disable:
        ticker.start()
    ok = False
    try:
        yield Stages(bar)
        ok = True
    finally:
        stop.set()
        if ticker.is_alive():
            ticker.join()
        bar.leave = ok
        bar.close()


def data_options(args) -> dict:
    """``-D KEY=VALUE`` options as a dict (the seed has its own flag)."""
    options = dict(args.data_opt)
    if "seed" in options:
        raise CLIError("--data-opt: the seed is set with --seed, got seed=...")
    return options


def load_data(name: str, seed: int, options: dict):
    """:func:`jaxgap.data.load`, its ValueError turned into a one-line ``--data`` error."""
    from jaxgap import data

    try:
        return data.load(name, seed=seed, **options)
    except ValueError as err:
        msg = str(err)
        msg = msg[len("name: "):] if msg.startswith("name: ") else msg
        raise CLIError(f"--data: {msg}") from None


def run_info(start: float, stages: Stages) -> dict:
    """The closing metadata of every result: versions, device, stage times, elapsed time."""
    import jax

    from jaxgap import __version__

    device = jax.devices()[0]
    return {
        "jax_version": jax.__version__,
        "jaxgap_version": __version__,
        "device": f"{device.platform}: {device.device_kind}",
        "stage_seconds": {k: round(v, 4) for k, v in stages.seconds.items() if k != "write"},
        "elapsed_s": round(time.perf_counter() - start, 4),
    }


def json_text(doc) -> str:
    """Strict JSON text of ``doc`` (non-finite floats as null), newline-terminated."""
    from jaxgap.report.report import finite_or_none

    return json.dumps(finite_or_none(doc), indent=2, allow_nan=False) + "\n"

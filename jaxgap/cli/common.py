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
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import IO

from jaxgap import _io, _progress

__all__ = ["CLIError", "OutputFolder", "Stages", "add_data_options", "add_output_options",
           "condition_data", "data_option", "data_options", "finite_float", "float_at_least",
           "int_at_least", "json_text", "load_data", "nonnegative_float", "output_folder",
           "positive_float", "print_notes", "progress_mode", "run_info", "stage_bar",
           "write_outputs"]


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


def finite_float(text: str) -> float:
    """An argparse type: any finite number (negative too; not ``nan`` or ``inf``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


finite_float.__name__ = "float"


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


def add_output_options(p: argparse.ArgumentParser, *, resumable: bool,
                       default: str | None = None) -> None:
    """``--out``, ``--resume``, ``--overwrite`` and ``--quiet``: the one output-folder policy
    of every subcommand (see :class:`OutputFolder`)."""
    p.add_argument("--out", required=default is None, default=default, metavar="DIR",
                   help="output folder; it must be new or empty unless --resume or "
                   "--overwrite is given" + (f" (default: {default})" if default else ""))
    group = p.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true",
                       help="continue the run in --out (it must exist)" if resumable else
                       "not used: this command runs in one go (use --overwrite)")
    group.add_argument("--overwrite", action="store_true",
                       help="replace the contents of a non-empty --out; the old files stay "
                       "until the new results are complete, and stay if the run fails or is "
                       "interrupted")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bars or progress lines (errors and results still print)")


def progress_mode(args) -> bool | None:
    """The progress mode of :func:`jaxgap._progress.bar` for ``--quiet``."""
    return False if getattr(args, "quiet", False) else None


def _entries(path: str) -> list[str]:
    """The names in a folder, without the hidden temporary files of a killed write."""
    return sorted(n for n in os.listdir(path) if not (n.startswith(".") and n.endswith(".tmp")))


class OutputFolder:
    """The output folder of one command, under the one policy of every subcommand:

    - a new or empty folder is created (with its parents) and written into;
    - a non-empty folder is refused unless ``--resume`` (continue the run in it: resumable
      commands only) or ``--overwrite`` is given; ``--resume`` on a missing or empty folder
      is an error;
    - ``--overwrite`` writes into a hidden staging folder beside it that replaces the old
      folder only when the command succeeded (two renames); after a failure or an interrupt
      the staging folder is removed and the old contents are untouched.

    The checks that need no disk writes run in the constructor (before any data is loaded);
    :meth:`prepare` creates the folder and returns where to write.
    """

    def __init__(self, args, *, resumable: bool, what: str):
        self.given = args.out
        self.path = os.path.abspath(args.out)
        self.resume = bool(getattr(args, "resume", False))
        self.overwrite = bool(getattr(args, "overwrite", False))
        self.staging: str | None = None
        self.created: list[str] = []
        if self.resume and not resumable:
            raise CLIError(f"--resume: 'jaxgap {what}' runs in one go and has nothing to "
                           "continue; pass --overwrite to replace the results in --out")
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise CLIError(f"--out: expected a folder, but {self.given!r} is a file")
        entries = _entries(self.path) if os.path.isdir(self.path) else []
        if self.resume and not entries:
            state = "is empty" if os.path.isdir(self.path) else "does not exist"
            raise CLIError(f"--resume: {self.given!r} {state}, so there is no run to "
                           "continue; drop --resume to start a new run there")
        if entries and not (self.resume or self.overwrite):
            shown = ", ".join(entries[:4]) + (", ..." if len(entries) > 4 else "")
            hint = " or --resume to continue the run in it" if resumable else ""
            raise CLIError(f"--out: {self.given!r} is not empty (it holds {shown}); pass "
                           f"--overwrite to replace its contents{hint}, or choose another "
                           "--out")
        self.replacing = self.overwrite and bool(entries)

    def prepare(self) -> str:
        """Create the folder to write into (the staging folder when replacing a non-empty
        one), check that it can be written, and return its path.

        Raises:
          CLIError: the path (or a parent) is a file, or the folder cannot be written.
        """
        if self.replacing:
            parent, name = os.path.split(self.path)
            self.staging = os.path.join(parent, f".{name}.overwrite-{os.getpid()}")
            shutil.rmtree(self.staging, ignore_errors=True)
            self.created = _make_dirs(self.staging, self.given)
            return self.staging
        self.created = _make_dirs(self.path, self.given)
        return self.path

    def commit(self) -> None:
        """Replace the old folder by the staging folder (``--overwrite``)."""
        if self.staging is None:
            return
        trash = f"{self.staging}.old"
        os.rename(self.path, trash)
        os.rename(self.staging, self.path)
        self.staging = None
        shutil.rmtree(trash, ignore_errors=True)

    def abort(self) -> None:
        """After a failure: remove the staging folder, or the folders this run created when
        they are still empty."""
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging = None
        else:
            _remove_dirs(self.created)


def _make_dirs(path: str, given: str) -> list[str]:
    """Create ``path`` (with parents) and check it is writable; return the folders created."""
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
        raise CLIError(f"--out: cannot create folder {given!r}: {err.strerror or err}") from None
    created = list(reversed(missing))
    try:
        with _io.temp_file(path, ".write-check") as (_, f):
            f.write(b"ok")
    except OSError as err:
        _remove_dirs(created)
        raise CLIError(f"--out: folder {given!r} is not writable: {err.strerror or err}"
                       ) from None
    return created


def _remove_dirs(created: Sequence[str]) -> None:
    """Remove folders this run created (deepest first), if they are still empty."""
    for d in reversed(created):
        with contextlib.suppress(OSError):
            os.rmdir(d)


@contextlib.contextmanager
def output_folder(args, *, resumable: bool, what: str) -> Iterator[OutputFolder]:
    """An :class:`OutputFolder` for ``args.out``: committed when the block succeeds,
    aborted (staging removed, new empty folders removed) when it fails or is interrupted."""
    folder = OutputFolder(args, resumable=resumable, what=what)
    try:
        yield folder
    except BaseException:
        folder.abort()
        raise
    folder.commit()


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
def stage_bar(total: int, *, mode=None) -> Iterator[Stages]:
    """A progress display over named stages whose clock keeps ticking during a long stage:
    a tqdm bar on a terminal, a log line every few seconds otherwise, nothing for
    ``mode=False`` (``--quiet``). On failure the bar is erased, so the error line stands
    alone."""
    bar = _progress.bar(total, "", mode=mode, unit="stage",
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
        if not ok:
            bar.abandon()
        bar.close()


def data_options(args) -> dict:
    """``-D KEY=VALUE`` options as a dict (the seed has its own flag)."""
    options = dict(args.data_opt)
    if "seed" in options:
        raise CLIError("--data-opt: the seed is set with --seed, got seed=...")
    return options


def load_data(name: str, seed: int, options: dict):
    """:func:`jaxgap.data.load`, its ValueError turned into a one-line ``--data`` error;
    what loading did to the data (``Dataset.notes``: a layout or scale chosen for the user)
    is printed as ``note: ...`` lines on stderr."""
    from jaxgap import data

    try:
        ds = data.load(name, seed=seed, **options)
    except ValueError as err:
        msg = str(err)
        msg = msg[len("name: "):] if msg.startswith("name: ") else msg
        raise CLIError(f"--data: {msg}") from None
    print_notes(ds)
    return ds


def condition_data(ds, granularity: str, train_size: int | None = None):
    """The dataset with condition ids at ``granularity`` (:meth:`Dataset.with_conditions
    <jaxgap.data.Dataset.with_conditions>`, on the whole training split), then cut to its
    first ``train_size`` training points (None: all), then checked
    (:meth:`~jaxgap.data.Dataset.check_conditions`); ``"none"``: only the cut, no ids.

    Raises:
      CLIError: ``--condition: ...``: a granularity the data cannot give (no labels, too few
        points per class), or a validation condition no (kept) training point carries.
    """
    if granularity != "none":
        try:
            ds = ds.with_conditions(granularity)
        except ValueError as err:
            msg = str(err)
            msg = (msg.removeprefix("granularity: ") if msg.startswith("granularity: ") else
                   f"{granularity!r} on {ds.name!r}: {msg}")
            raise CLIError(f"--condition: {msg}") from None
    if train_size is not None and train_size < ds.num_train:
        ds = ds.with_train_size(train_size)
    try:
        ds.check_conditions()
    except ValueError as err:
        raise CLIError(f"--condition: {granularity!r} on {ds.num_train} training points of "
                       f"{ds.name!r}: {err}") from None
    return ds


def print_notes(ds) -> None:
    """``note: ...`` on stderr for each of a dataset's notes."""
    for note in ds.notes:
        print(f"note: {note}", file=sys.stderr)


def run_info(start: float, stages: Stages) -> dict:
    """The closing metadata of every result: versions, device, stage times, elapsed time."""
    import jax

    from jaxgap import __version__
    from jaxgap._mc import device_text

    return {
        "jax_version": jax.__version__,
        "jaxgap_version": __version__,
        "device": device_text(),
        "stage_seconds": {k: round(v, 4) for k, v in stages.seconds.items() if k != "write"},
        "elapsed_s": round(time.perf_counter() - start, 4),
    }


def json_text(doc) -> str:
    """Strict JSON text of ``doc`` (non-finite floats as null), newline-terminated."""
    from jaxgap.report.report import finite_or_none

    return json.dumps(finite_or_none(doc), indent=2, allow_nan=False) + "\n"

"""Progress of long work, and interrupts that always stop it.

Progress: :func:`bar` returns a tqdm-like object (``update``, ``set_postfix``,
``set_description_str``, ``close``, a context manager) that shows

- a tqdm bar when its stream is a terminal,
- otherwise one log line every :data:`LOG_INTERVAL_S` seconds (and one at the end), with
  the count, the rate and an estimate of the time left, e.g.
  ``jaxgap: train mlp: 1200/8000 steps (15%), 41.3 steps/s, 2 min 45 s left, loss=0.031``
  (logs, pipes, notebooks: tqdm's bars are hidden there or print hundreds of lines),
- nothing when ``mode`` is ``"off"`` (``--quiet``).

``mode=None`` picks ``"bar"`` or ``"log"`` from the stream; ``True``/``False`` are
``None``/``"off"``. The environment variable ``JAXGAP_PROGRESS_INTERVAL`` (seconds) sets the
log interval.

Interrupts: Python turns Ctrl-C into a ``KeyboardInterrupt`` raised wherever the main thread
is, and one raised inside a garbage-collector callback (JAX registers one) is printed as
"Exception ignored" and lost, so a run could carry on after Ctrl-C. :func:`catch_interrupts`
(used by the CLI around a command) installs a SIGINT handler that also sets a flag, and
:func:`check_interrupt` raises ``KeyboardInterrupt`` at safe points while the flag is set:
every progress update and every training step call it, so a lost interrupt is raised again
at the next one.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import IO, Any

__all__ = ["LOG_INTERVAL_S", "bar", "catch_interrupts", "check_interrupt", "format_seconds",
           "interrupted", "resolve_mode"]

LOG_INTERVAL_S = 10.0
MODES = ("bar", "log", "off")

_interrupted = threading.Event()


# ------------------------------------------------------------------------------------------
# Interrupts
# ------------------------------------------------------------------------------------------

def interrupted() -> bool:
    """Whether Ctrl-C (SIGINT) arrived inside :func:`catch_interrupts`."""
    return _interrupted.is_set()


def check_interrupt() -> None:
    """Raise ``KeyboardInterrupt`` if an interrupt arrived (a safe point of a long loop)."""
    if _interrupted.is_set():
        raise KeyboardInterrupt


def _on_sigint(signum, frame):
    _interrupted.set()
    raise KeyboardInterrupt


@contextlib.contextmanager
def catch_interrupts() -> Iterator[None]:
    """Within the block, SIGINT sets the interrupt flag and raises ``KeyboardInterrupt``
    (also at every later :func:`check_interrupt`). A no-op outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _interrupted.clear()
    previous = signal.signal(signal.SIGINT, _on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _interrupted.clear()


# ------------------------------------------------------------------------------------------
# Progress
# ------------------------------------------------------------------------------------------

def resolve_mode(mode: Any, stream: IO[str] | None = None) -> str:
    """``"bar"``, ``"log"`` or ``"off"`` for a ``mode`` of :func:`bar` (None and True: a bar
    on a terminal, log lines elsewhere; False: off)."""
    if mode is None or mode is True:
        stream = sys.stderr if stream is None else stream
        try:
            tty = stream.isatty()
        except (AttributeError, ValueError):
            tty = False
        return "bar" if tty else "log"
    if mode is False:
        return "off"
    if mode not in MODES:
        raise ValueError(f"progress: expected None, True, False or one of {list(MODES)}, "
                         f"got {mode!r}")
    return mode


def format_seconds(seconds: float) -> str:
    """``"42 s"``, ``"3 min 05 s"``, ``"2 h 07 min"``.

    Example:
      >>> format_seconds(42.4), format_seconds(185), format_seconds(7620)
      ('42 s', '3 min 05 s', '2 h 07 min')
    """
    if not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def _interval() -> float:
    try:
        return max(float(os.environ.get("JAXGAP_PROGRESS_INTERVAL", LOG_INTERVAL_S)), 0.0)
    except ValueError:
        return LOG_INTERVAL_S


class _LogBar:
    """The tqdm subset jaxgap uses, printing a line every ``interval`` seconds."""

    def __init__(self, total, desc, unit, initial, stream, interval):
        self.total, self.desc, self.unit = total, desc, unit
        self.n = self._n0 = initial
        self.stream, self.interval = stream, interval
        self.postfix = ""
        self.disable = False
        self._t0 = self._last = time.perf_counter()

    def set_description_str(self, desc: str, refresh: bool = True) -> None:
        self.desc = desc

    def set_postfix(self, **kw) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in kw.items())

    def update(self, n: int = 1) -> None:
        check_interrupt()
        self.n += n
        now = time.perf_counter()
        if now - self._last >= self.interval:
            self._last = now
            self._print(now)

    def refresh(self) -> None:
        now = time.perf_counter()
        if now - self._last >= self.interval:
            self._last = now
            self._print(now)

    def _line(self, now: float) -> str:
        elapsed = now - self._t0
        done = self.n - self._n0
        parts = [f"{self.n}/{self.total} {self.unit}s" if self.total else f"{self.n} "
                 f"{self.unit}s"]
        if self.total:
            parts[0] += f" ({100 * self.n / self.total:.0f}%)"
        if done > 0 and elapsed > 0:
            rate = done / elapsed
            parts.append(f"{rate:.3g} {self.unit}s/s" if rate >= 1 else
                         f"{1 / rate:.3g} s/{self.unit}")
            if self.total:
                parts.append(f"{format_seconds((self.total - self.n) / rate)} left")
        else:
            parts.append(f"{format_seconds(elapsed)} elapsed")
        if self.postfix:
            parts.append(self.postfix)
        return f"jaxgap: {self.desc}: " + ", ".join(parts)

    def _print(self, now: float) -> None:
        print(self._line(now), file=self.stream, flush=True)

    def abandon(self) -> None:
        """After an error: close without a closing line, so the error stands alone."""
        self.disable = True

    def close(self) -> None:
        if self.n > self._n0 and not self.disable:
            now = time.perf_counter()
            print(self._line(now) + f" [{format_seconds(now - self._t0)}]", file=self.stream,
                  flush=True)
        self.disable = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if exc[0] is not None:
            self.abandon()
        self.close()


class _Off(_LogBar):
    def __init__(self, total, desc, unit, initial):
        super().__init__(total, desc, unit, initial, None, math.inf)
        self.disable = True

    def update(self, n: int = 1) -> None:
        check_interrupt()
        self.n += n

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        pass


class _TqdmBar:
    """tqdm (from ``tqdm.std``: no notebook widget) whose ``update`` checks interrupts."""

    def __init__(self, **kw):
        from tqdm.std import tqdm

        self._bar = tqdm(**kw)

    def update(self, n: int = 1) -> None:
        check_interrupt()
        self._bar.update(n)

    def abandon(self) -> None:
        """After an error: the bar is erased when closed, so the error stands alone."""
        self._bar.leave = False

    def __getattr__(self, name):
        return getattr(self._bar, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if exc[0] is not None:
            self.abandon()
        self._bar.close()


def bar(total: int | None, desc: str, *, mode: Any = None, unit: str = "it",
        initial: int = 0, leave: bool = True, stream: IO[str] | None = None,
        bar_format: str | None = None):
    """A progress display for ``total`` units of work (see the module docstring).

    Args:
      total: units of work (None: unknown).
      desc: what is being done, e.g. ``"train mlp"``.
      mode: None/True (bar on a terminal, log lines elsewhere), False/"off", "bar", "log".
      unit: the unit's name (``"step"``).
      initial: units already done (a resumed run).
      leave: keep a terminal bar after it closes.
      stream: where to write (default: ``sys.stderr``).
      bar_format: tqdm's ``bar_format`` for the terminal bar.

    Example:
      >>> with bar(3, "demo", mode="off", unit="step") as b:
      ...     for _ in range(3):
      ...         b.update(1)
      >>> b.n
      3
    """
    stream = sys.stderr if stream is None else stream
    kind = resolve_mode(mode, stream)
    if kind == "off":
        return _Off(total, desc, unit, initial)
    if kind == "log":
        return _LogBar(total, desc, unit, initial, stream, _interval())
    kw = dict(total=total, desc=desc, unit=unit, initial=initial, leave=leave, file=stream,
              dynamic_ncols=True)
    if bar_format is not None:
        kw["bar_format"] = bar_format
    return _TqdmBar(**kw)

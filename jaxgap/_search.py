"""Golden-section search: the one implementation behind every 1-D refinement in jaxgap."""

from __future__ import annotations

import math
from collections.abc import Callable

__all__ = ["GOLDEN", "golden_section"]

GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0  # 0.618...


def golden_section(f: Callable[[float], float], a: float, b: float, *, maximize: bool = False,
                   xtol: float | None = None,
                   max_evals: int | None = None) -> tuple[tuple[float, float], ...]:
    """Shrink the bracket ``[a, b]`` of an extremum of a unimodal ``f`` by golden sections.

    The interior points start at ``b - G (b - a)`` and ``a + G (b - a)`` (``G = 0.618...``);
    each step keeps the better one (``>=`` when maximizing, ``<=`` when minimizing) and
    evaluates ``f`` once more. It stops when ``b - a <= xtol`` or after ``max_evals``
    evaluations in all (at least the first two), whichever comes first.

    Args:
      f: ``x -> float``.
      a, b: the bracket, ``a < b``.
      maximize: search a maximum instead of a minimum.
      xtol: stop once the bracket is this narrow.
      max_evals: stop after this many evaluations (>= 2).

    Returns:
      The two final interior points ``((x1, f(x1)), (x2, f(x2)))``.
    """
    if xtol is None and max_evals is None:
        raise ValueError("golden_section: expected xtol or max_evals, got neither")
    better = (lambda u, v: u >= v) if maximize else (lambda u, v: u <= v)
    x1, x2 = b - GOLDEN * (b - a), a + GOLDEN * (b - a)
    f1, f2 = f(x1), f(x2)
    evals = 2
    while ((xtol is None or b - a > xtol)
           and (max_evals is None or evals < max_evals)):
        if better(f1, f2):
            b, x2, f2 = x2, x1, f1
            x1 = b - GOLDEN * (b - a)
            f1 = f(x1)
        else:
            a, x1, f1 = x1, x2, f2
            x2 = a + GOLDEN * (b - a)
            f2 = f(x2)
        evals += 1
    return (x1, f1), (x2, f2)

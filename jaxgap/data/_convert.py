"""How the arrays of a file become points: their layout and their value scale.

Both rules are decided once per file, on the training and validation arrays together, so the
two always agree. What a rule decides on the user's behalf comes back as a note (a sentence
for :attr:`jaxgap.data.Dataset.notes`); a choice it cannot make safely is refused with a
message naming what was found and the option to pass, in the library spelling
(``channels_first=True``) and the command-line one (``-D channels_first=True``).
"""

from __future__ import annotations

import numpy as np

from jaxgap.data._dataset import CHANNEL_SIZES, looks_channels_first

__all__ = ["AUTO", "NONE", "check_channels_first", "check_scale", "decide_layout",
           "decide_scale", "rescale"]

AUTO, NONE = "auto", "none"


def check_channels_first(value) -> bool | None:
    """``channels_first``: True, False, or None (detect; ``"auto"`` is accepted too)."""
    if value is None or (isinstance(value, str) and value.lower() == AUTO):
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise ValueError(f"channels_first: expected True, False or None (detect from the shape; "
                     f"'auto' too), got {value!r}")


def check_scale(value) -> str | float:
    """``scale``: ``"auto"``, ``"none"`` or a finite number ``M > 0``."""
    if isinstance(value, str) and value.lower() in (AUTO, NONE):
        return value.lower()
    if (not isinstance(value, (bool, np.bool_))
            and isinstance(value, (int, float, np.integer, np.floating))
            and np.isfinite(value) and value > 0):
        return float(value)
    raise ValueError(f"scale: expected 'auto', 'none' or a positive number M (values in "
                     f"[0, M] mapped to [-1, 1]), got {value!r}")


def decide_layout(shape: tuple[int, ...], channels_first: bool | None,
                  subject: str) -> tuple[bool, str | None]:
    """Whether to move axis 1 of ``[n, ...]`` arrays of this ``shape`` last, and a note.

    ``subject`` names the arrays and their shapes, for messages.

    ``channels_first=None`` detects: ``[n, C, H, W]`` with ``C`` in (1, 3, 4) and ``W`` not
    is channels-first (moved, with a note); when both axis 1 and the last axis could be the
    channels the layout is kept as ``[n, H, W, C]`` (with a note naming the option); any
    other shape is kept silently. An explicit True/False is obeyed without a note.
    """
    shape = tuple(int(s) for s in shape)
    if channels_first is True:
        if len(shape) != 4:
            raise ValueError(f"channels_first: expected arrays of shape [n, C, H, W], got "
                             f"{subject}")
        return True, None
    if channels_first is False or len(shape) != 4:
        return False, None
    if looks_channels_first(shape):
        hwc = (shape[2], shape[3], shape[1])
        return True, (f"{subject} read as channels-first [n, C, H, W] "
                      f"and moved to channels-last, image_shape {hwc}; pass "
                      f"channels_first=False (command line: -D channels_first=False) to keep "
                      f"the layout")
    if shape[1] in CHANNEL_SIZES:  # the last axis could be the channels too
        return False, (f"{subject} read as channels-last [n, H, W, C], "
                       f"image_shape {shape[1:]}; if the channels come first, pass "
                       f"channels_first=True (command line: -D channels_first=True)")
    return False, None


def _value_range(points: list[np.ndarray]) -> tuple[float, float]:
    return (min(float(p.min()) for p in points), max(float(p.max()) for p in points))


def _suggested_scale(hi: float) -> str:
    for m in (255, 65535):
        if hi <= m:
            return str(m)
    return f"{hi:g}"


def decide_scale(points: list[np.ndarray], dtypes: list[np.dtype], images: bool,
                 scale: str | float, subject: str) -> tuple[float | None, str | None]:
    """The ``M`` mapping ``[0, M]`` to ``[-1, 1]`` for these arrays (None: keep), and a note.

    Args:
      points: the float32 points of every array of the file (train and val), finite.
      dtypes: their dtypes as stored in the file.
      images: whether the arrays are image-shaped (``[n, H, W]`` or ``[n, H, W, C]``).
      scale: a checked ``scale`` option (``"auto"``, ``"none"`` or ``M``).
      subject: the arrays, for messages (e.g. ``"array 'x' of 'npz:a.npz'"``).
    """
    if scale == NONE:
        return None, None
    if not isinstance(scale, str):  # an explicit M: the values must lie in [0, M]
        lo, hi = _value_range(points)
        if lo < 0 or hi > scale:
            raise ValueError(
                f"scale: expected values in [0, {scale:g}] for scale={scale:g}, got values in "
                f"[{lo:g}, {hi:g}] in {subject}; scale=M maps [0, M] to [-1, 1]: pass an M "
                f"that covers the values, or scale='none' to keep them (command line: "
                f"-D scale=M or -D scale=none)")
        return scale, None
    if all(dt == np.uint8 for dt in dtypes):
        return 255.0, None
    if not images:  # points, not pixels: kept as they are
        return None, None
    lo, hi = _value_range(points)
    if lo >= 0 and hi <= 1:
        return 1.0, (f"{subject} holds images with values in [{lo:g}, {hi:g}]: mapped from "
                     f"[0, 1] to [-1, 1] by 2 x - 1 (scale=1); pass scale='none' to keep the "
                     f"values (command line: -D scale=none)")
    if lo >= -1 and hi <= 1:
        return None, None
    if lo >= 0:
        m = _suggested_scale(hi)
        options = (f"pass scale={m} to map [0, {m}] to [-1, 1], or scale='none' to keep the "
                   f"values (command line: -D scale={m} or -D scale=none)")
    else:
        options = ("no scale=M fits negative values (it maps [0, M] to [-1, 1]): rescale them "
                   "to [-1, 1] before saving, or pass scale='none' to keep the values "
                   "(command line: -D scale=none)")
    raise ValueError(f"scale: expected images with values in [-1, 1] or [0, 1] under "
                     f"scale='auto', got values in [{lo:g}, {hi:g}] in {subject}; {options}")


def rescale(points: np.ndarray, m: float | None) -> np.ndarray:
    """Map ``[0, m]`` to ``[-1, 1]`` in place, ``x / (m / 2) - 1`` in float32 (None: keep)."""
    if m is not None:
        points /= np.float32(m / 2)
        points -= np.float32(1.0)
    return points

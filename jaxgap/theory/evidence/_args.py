"""Argument checks shared by the evidence functions (at their public boundary, outside jit)."""

from __future__ import annotations

import numpy as np

from jaxgap._checks import float_array
from jaxgap.losses import GapCurve

__all__ = ["amplitudes", "curve_np", "sigma_grid", "train_val"]


def train_val(train, val, val_name: str = "val"):
    """``train [N, d]`` and ``val [M, d]`` as float arrays of one dimension ``d``."""
    train = float_array(train, "train", ndim=2)
    val = float_array(val, val_name, ndim=2)
    if val.shape[1] != train.shape[1]:
        raise ValueError(f"{val_name}: expected last dimension d = {train.shape[1]} (the "
                         f"training points'), got shape [{val.shape[0]}, {val.shape[1]}]")
    return train, val


def sigma_grid(sigmas, name: str = "sigmas") -> np.ndarray:
    """``[K]`` noise levels ``> 0`` as float64."""
    s = np.asarray(float_array(sigmas, name, ndim=1), np.float64)
    if not np.all(s > 0):
        raise ValueError(f"{name}: expected values > 0, got min {float(s.min())!r}")
    return s


def amplitudes(deltas, name: str = "deltas") -> np.ndarray:
    """``[E]`` distinct amplitudes ``>= 0`` as float64 (exact values, not rounded through
    float32)."""
    float_array(deltas, name, ndim=1)  # rank, emptiness and finiteness
    d = np.asarray(deltas, np.float64)
    if not np.all(d >= 0):
        raise ValueError(f"{name}: expected values >= 0, got min {float(d.min())!r}")
    if np.unique(d).shape[0] != d.shape[0]:
        raise ValueError(f"{name}: expected distinct values, got {d.tolist()}")
    return d


def curve_np(curve: GapCurve) -> GapCurve:
    """``curve`` with float64 NumPy fields."""
    return GapCurve(*(np.asarray(getattr(curve, f), np.float64) for f in GapCurve._fields))

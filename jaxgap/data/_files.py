"""User arrays from ``.npz``/``.npy`` files (see :func:`jaxgap.data.load`, ``"npz:PATH"``)."""

from __future__ import annotations

import os
import warnings

import numpy as np

from jaxgap.data._dataset import Dataset, check_num_val, split_indices

__all__ = ["load_file"]

# Keys looked up in an npz archive, in order of preference.
_TRAIN_KEYS = ("train", "x_train", "train_images")
_VAL_KEYS = ("val", "x_val", "val_images", "test", "x_test", "test_images")
_SINGLE_KEYS = ("x", "data", "images")
_TRAIN_LABEL_KEYS = ("train_labels", "y_train")
_VAL_LABEL_KEYS = ("val_labels", "y_val", "test_labels", "y_test")
_SINGLE_LABEL_KEYS = ("labels", "y")
_LABEL_KEYS = _TRAIN_LABEL_KEYS + _VAL_LABEL_KEYS + _SINGLE_LABEL_KEYS


def as_points(x: np.ndarray, where: str, channels_first: bool):
    """Validate one image/point array; return (``[n, d]`` float32, image_shape or None)."""
    if x.dtype.kind not in "fiu":
        raise ValueError(f"name: expected a real numeric array in {where}, got dtype {x.dtype}")
    if not 2 <= x.ndim <= 4:
        raise ValueError(f"name: expected {where} of shape [n, d], [n, H, W] or [n, H, W, C], "
                         f"got shape {list(x.shape)}")
    if channels_first:
        if x.ndim != 4:
            raise ValueError(f"channels_first: expected {where} of shape [n, C, H, W], got "
                             f"shape {list(x.shape)}")
        x = np.moveaxis(x, 1, -1)
    elif x.ndim == 4 and x.shape[-1] > 4 and x.shape[1] in (1, 3, 4):
        warnings.warn(f"{where} has shape {list(x.shape)}: looks like [n, C, H, W]; pass "
                      "channels_first=True if the channels come first", stacklevel=5)
    if x.dtype == np.uint8:
        points = x.astype(np.float32) / np.float32(127.5) - np.float32(1.0)
    else:
        with np.errstate(over="ignore"):  # values beyond float32 become inf, refused below
            points = x.astype(np.float32)
    if x.ndim == 2:
        image_shape = None
    elif x.ndim == 3:
        image_shape = (*x.shape[1:], 1)  # grayscale [n, H, W] -> HWC with C = 1
    else:
        image_shape = tuple(x.shape[1:])
    points = points.reshape(x.shape[0], -1)
    if points.shape[1] == 0:
        raise ValueError(f"name: expected {where} with at least one value per point, got "
                         f"shape {list(x.shape)}")
    finite = np.isfinite(points)
    if not finite.all():
        raise ValueError(f"name: expected finite values in {where}, got "
                         f"{int(points.size - finite.sum())} NaN or inf entries "
                         "(after conversion to float32)")
    return points, tuple(int(s) for s in image_shape) if image_shape else None


def as_labels(y: np.ndarray | None, n: int, where: str) -> np.ndarray | None:
    if y is None:
        return None
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.dtype.kind not in "iu" or y.shape != (n,):
        raise ValueError(f"name: expected {where} to be integer labels of shape [{n}], got "
                         f"dtype {y.dtype} and shape {list(y.shape)}")
    return y.astype(np.int64)


def read_file(path: str, kind: str, arg: str):
    """np.load with pickles disabled; every failure becomes a ValueError naming ``name``."""
    full = os.path.expanduser(path)
    if not path:
        raise ValueError(f"name: expected '{kind}:PATH' with a file path, got {arg!r}")
    if not os.path.isfile(full):
        raise ValueError(f"name: expected an existing {kind} file, got {arg!r} (no such file: "
                         f"{full})")
    try:
        loaded = np.load(full, allow_pickle=False)
    except Exception as err:
        raise ValueError(f"name: expected a readable {kind} file, got {arg!r} "
                         f"({type(err).__name__}: {err})") from err
    is_npz = isinstance(loaded, np.lib.npyio.NpzFile)
    if is_npz != (kind == "npz"):
        if is_npz:
            loaded.close()
        other = "npz" if is_npz else "npy"
        raise ValueError(f"name: expected a {kind} file, got {arg!r} which holds {other} data; "
                         f"use '{other}:{path}'")
    return loaded


def load_npz_arrays(loaded, arg: str) -> dict[str, np.ndarray]:
    """Pick the image and label arrays out of an npz archive (see :func:`load`)."""
    files = list(loaded.files)

    def first(keys):
        return next((k for k in keys if k in files), None)

    picked = {"train": first(_TRAIN_KEYS), "val": first(_VAL_KEYS)}
    if picked["train"] is None:
        if picked["val"] is not None:
            raise ValueError(f"name: expected a training array (one of {list(_TRAIN_KEYS)}) "
                             f"next to {picked['val']!r} in {arg!r}, got keys {files}")
        single = first(_SINGLE_KEYS)
        if single is None:
            candidates = [k for k in files if k not in _LABEL_KEYS]
            if len(candidates) != 1:
                raise ValueError(
                    f"name: expected an npz with keys {list(_TRAIN_KEYS)} / {list(_VAL_KEYS)}, "
                    f"one of {list(_SINGLE_KEYS)}, or exactly one non-label array; got keys "
                    f"{files} in {arg!r}")
            single = candidates[0]
        picked = {"single": single, "labels": first(_SINGLE_LABEL_KEYS)}
    else:
        picked["train_labels"] = first(_TRAIN_LABEL_KEYS)
        picked["val_labels"] = first(_VAL_LABEL_KEYS) if picked["val"] is not None else None
    out = {}
    for role, key in picked.items():
        if key is None:
            continue
        try:
            out[role] = (key, np.asarray(loaded[key]))
        except Exception as err:
            raise ValueError(f"name: expected a readable array {key!r} in {arg!r}, got "
                             f"{type(err).__name__}: {err}") from err
    return out


def load_file(kind: str, path: str, *, seed: int, num_val: int | None = None,
               channels_first: bool = False) -> Dataset:
    arg = f"{kind}:{path}"
    if not isinstance(channels_first, (bool, np.bool_)):
        raise ValueError(f"channels_first: expected a bool, got {channels_first!r}")
    loaded = read_file(path, kind, arg)
    if kind == "npz":
        with loaded:
            arrays = load_npz_arrays(loaded, arg)
    else:
        arrays = {"single": ("array", loaded)}

    def where(key):
        return f"array {key!r} of {arg!r}"

    if "single" not in arrays and "val" in arrays:  # explicit train / val arrays
        if num_val is not None:
            raise ValueError(f"num_val: expected None because {arg!r} holds a separate "
                             f"validation array {arrays['val'][0]!r}, got {num_val!r}")
        (k_tr, a_tr), (k_va, a_va) = arrays["train"], arrays["val"]
        x_tr, shape_tr = as_points(a_tr, where(k_tr), channels_first)
        x_va, shape_va = as_points(a_va, where(k_va), channels_first)
        if x_tr.shape[1] != x_va.shape[1] or shape_tr != shape_va:
            raise ValueError(f"name: expected arrays {k_tr!r} and {k_va!r} of {arg!r} to share "
                             f"their point shape, got {list(a_tr.shape)} and {list(a_va.shape)}")
        y_tr = y_va = None
        if "train_labels" in arrays:
            k, y = arrays["train_labels"]
            y_tr = as_labels(y, x_tr.shape[0], where(k))
        if "val_labels" in arrays:
            k, y = arrays["val_labels"]
            y_va = as_labels(y, x_va.shape[0], where(k))
        return Dataset(train=x_tr, val=x_va, name=arg, image_shape=shape_tr,
                       train_labels=y_tr, val_labels=y_va)

    # One array: split it with a seeded permutation.
    key, raw = arrays["single"] if "single" in arrays else arrays["train"]
    label_role = "labels" if "single" in arrays else "train_labels"
    x, image_shape = as_points(raw, where(key), channels_first)
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"name: expected at least 2 points in {where(key)} (one to train, one "
                         f"to validate), got {n}")
    y = None
    if label_role in arrays:
        k, y_raw = arrays[label_role]
        y = as_labels(y_raw, n, where(k))
    num_val = max(1, n // 10) if num_val is None else num_val
    num_val = check_num_val(num_val, n, f"array {key!r}")
    tr, va = split_indices(n, num_val, seed)
    return Dataset(train=x[tr], val=x[va], name=arg, image_shape=image_shape,
                   train_labels=None if y is None else y[tr],
                   val_labels=None if y is None else y[va])

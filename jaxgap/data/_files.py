"""User arrays from ``.npz``/``.npy`` files (see :func:`jaxgap.data.load`, ``"npz:PATH"``)."""

from __future__ import annotations

import os

import numpy as np

from jaxgap.data._convert import (
    check_channels_first,
    check_scale,
    decide_layout,
    decide_scale,
    rescale,
)
from jaxgap.data._dataset import MIN_VAL, Dataset, check_num_val, split_indices

__all__ = ["load_file"]

# Keys looked up in an npz archive, in order of preference.
_TRAIN_KEYS = ("train", "x_train", "train_images")
_VAL_KEYS = ("val", "x_val", "val_images", "test", "x_test", "test_images")
_SINGLE_KEYS = ("x", "data", "images")
_TRAIN_LABEL_KEYS = ("train_labels", "y_train")
_VAL_LABEL_KEYS = ("val_labels", "y_val", "test_labels", "y_test")
_SINGLE_LABEL_KEYS = ("labels", "y", "label", "targets")
_LABEL_KEYS = _TRAIN_LABEL_KEYS + _VAL_LABEL_KEYS + _SINGLE_LABEL_KEYS


def check_array(x: np.ndarray, where: str) -> None:
    """A numeric ``[n, d]``, ``[n, H, W]`` or ``[n, H, W, C]`` array with values per point."""
    if x.dtype.kind not in "fiu":
        raise ValueError(f"name: expected a real numeric array in {where}, got dtype {x.dtype}")
    if not 2 <= x.ndim <= 4:
        raise ValueError(f"name: expected {where} of shape [n, d], [n, H, W] or [n, H, W, C], "
                         f"got shape {list(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"name: expected at least one point in {where}, got shape "
                         f"{list(x.shape)}")
    if any(s == 0 for s in x.shape[1:]):
        raise ValueError(f"name: expected {where} with at least one value per point, got "
                         f"shape {list(x.shape)}")


def as_points(x: np.ndarray, where: str, move: bool) -> np.ndarray:
    """``[n, d]`` float32 points of a checked array (channels moved last when ``move``)."""
    if move:
        x = np.moveaxis(x, 1, -1)
    with np.errstate(over="ignore"):  # values beyond float32 become inf, refused below
        points = np.ascontiguousarray(x, dtype=np.float32).reshape(x.shape[0], -1)
    finite = np.isfinite(points)
    if not finite.all():
        raise ValueError(f"name: expected finite values in {where}, got "
                         f"{int(points.size - finite.sum())} NaN or inf entries "
                         "(after conversion to float32)")
    return points


def image_shape_of(shape: tuple[int, ...], move: bool) -> tuple[int, ...] | None:
    """``(H, W, C)`` of ``[n, ...]`` arrays of this shape (after the move), None for vectors."""
    shape = tuple(int(s) for s in shape[1:])
    if len(shape) == 1:
        return None
    if len(shape) == 2:
        return (*shape, 1)  # grayscale [n, H, W] -> HWC with C = 1
    return (*shape[1:], shape[0]) if move else shape


def as_labels(y: np.ndarray | None, n: int, where: str) -> np.ndarray | None:
    if y is None:
        return None
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.dtype.kind not in "iu" or y.shape != (n,):
        raise ValueError(f"name: expected {where} to be integer labels of shape [{n}], got "
                         f"dtype {y.dtype} and shape {list(y.shape)}")
    return y.astype(np.int64)


_MAGIC = {"npz": (b"PK\x03\x04", b"PK\x05\x06"), "npy": (b"\x93NUMPY",)}
_WHAT = {"npz": "an npz file (a zip archive written by numpy.savez)",
         "npy": "an npy file (written by numpy.save)"}
_GUESSES = ((b"\x1f\x8b", "a gzip file?"), (b"\x89HDF", "an HDF5 file?"),
            (b"\x89PNG", "a PNG image?"), (b"\xff\xd8\xff", "a JPEG image?"))
_PICKLED = ("pickles are refused because loading one can run code: save numeric arrays "
            "instead")


def guess_format(head: bytes) -> str | None:
    """A guess at what a file is from its first bytes (None when nothing fits)."""
    for magic, what in _GUESSES:
        if head.startswith(magic):
            return what
    if head[:1] == b"\x80" and head[1:2] and 2 <= head[1] <= 5:
        return "a Python pickle? pickles are refused"
    if all(b >= 0x20 and b != 0x7F or b in b"\t\n\r\f" for b in head):
        return "a text file?"
    return None


def is_pickle_error(err: Exception) -> bool:
    """numpy's refusal of an object array under ``allow_pickle=False``."""
    return isinstance(err, ValueError) and "allow_pickle" in str(err)


def read_file(path: str, kind: str, arg: str):
    """Check the file's magic bytes, then np.load it with pickles disabled.

    Every failure becomes a ValueError naming ``name``, what was expected and what the file
    holds (the other format, an empty file, a text file, ...).
    """
    full = os.path.expanduser(path)
    if not path:
        raise ValueError(f"name: expected '{kind}:PATH' with a file path, got {arg!r}")
    if not os.path.isfile(full):
        raise ValueError(f"name: expected an existing {kind} file, got {arg!r} (no such file: "
                         f"{full})")
    try:
        with open(full, "rb") as f:
            head = f.read(64)
    except OSError as err:
        raise ValueError(f"name: expected a readable {kind} file, got {arg!r} "
                         f"({type(err).__name__}: {err})") from err
    other = "npy" if kind == "npz" else "npz"
    if head.startswith(_MAGIC[other]):
        raise ValueError(f"name: expected {_WHAT[kind]}, got {arg!r}, which holds {other} "
                         f"data; use '{other}:{path}'")
    if not head:
        raise ValueError(f"name: expected {_WHAT[kind]}, got {arg!r}, which is empty (0 bytes)")
    if not head.startswith(_MAGIC[kind]):
        guess = guess_format(head)
        raise ValueError(f"name: expected {_WHAT[kind]}, got {arg!r}, which starts with "
                         f"{head[:8]!r}" + (f" ({guess})" if guess else ""))
    try:
        return np.load(full, allow_pickle=False)
    except Exception as err:
        why = (f"it holds a pickled object array; {_PICKLED}" if is_pickle_error(err)
               else f"{type(err).__name__}: {err}")
        raise ValueError(f"name: expected a readable {kind} file, got {arg!r} ({why})") from err


def load_npz_arrays(loaded, arg: str) -> dict[str, np.ndarray]:
    """Pick the image and label arrays out of an npz archive (see :func:`load`)."""
    files = list(loaded.files)

    def first(keys):
        return next((k for k in keys if k in files), None)

    picked = {"train": first(_TRAIN_KEYS), "val": first(_VAL_KEYS)}
    # A plain array next to a validation array trains (CIFAR-style x, y, x_test, y_test).
    plain_train = picked["train"] is None and picked["val"] is not None
    if plain_train:
        picked["train"] = first(_SINGLE_KEYS)
        if picked["train"] is None:
            raise ValueError(f"name: expected a training array (one of "
                             f"{list(_TRAIN_KEYS + _SINGLE_KEYS)}) next to {picked['val']!r} "
                             f"in {arg!r}, got keys {files}")
    if picked["train"] is None:
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
        # Labels of a training array that is split, or of a plain one: also `labels`, `y`...
        picked["train_labels"] = first(_TRAIN_LABEL_KEYS + (
            _SINGLE_LABEL_KEYS if picked["val"] is None or plain_train else ()))
        picked["val_labels"] = first(_VAL_LABEL_KEYS) if picked["val"] is not None else None
    out = {}
    for role, key in picked.items():
        if key is None:
            continue
        try:
            out[role] = (key, np.asarray(loaded[key]))
        except Exception as err:
            why = (f"a pickled object array; {_PICKLED}" if is_pickle_error(err)
                   else f"{type(err).__name__}: {err}")
            raise ValueError(f"name: expected a readable array {key!r} in {arg!r}, got "
                             f"{why}") from err
    return out


def load_file(kind: str, path: str, *, seed: int, num_val: int | None = None,
              channels_first: bool | None = None, scale: str | float = "auto") -> Dataset:
    """A :class:`Dataset` from an npz/npy file (the rules: :func:`jaxgap.data.load`)."""
    arg = f"{kind}:{path}"
    channels_first = check_channels_first(channels_first)
    scale = check_scale(scale)
    loaded = read_file(path, kind, arg)
    if kind == "npz":
        with loaded:
            arrays = load_npz_arrays(loaded, arg)
    else:
        arrays = {"single": ("array", loaded)}

    def where(key):
        return f"array {key!r} of {arg!r}"

    split = "single" in arrays or "val" not in arrays
    if split:  # one array: split it with a seeded permutation
        parts = [arrays["single"] if "single" in arrays else arrays["train"]]
    else:  # explicit train / val arrays
        if num_val is not None:
            raise ValueError(f"num_val: expected None because {arg!r} holds a separate "
                             f"validation array {arrays['val'][0]!r}, got {num_val!r}")
        parts = [arrays["train"], arrays["val"]]
    for key, raw in parts:
        check_array(raw, where(key))
    (k_tr, a_tr), (k_va, a_va) = parts[0], parts[-1]
    if a_tr.shape[1:] != a_va.shape[1:]:
        raise ValueError(f"name: expected arrays {k_tr!r} and {k_va!r} of {arg!r} to share "
                         f"their point shape, got {list(a_tr.shape)} and {list(a_va.shape)}")
    n = a_tr.shape[0]
    if split and n < MIN_VAL + 1:
        raise ValueError(f"name: expected at least {MIN_VAL + 1} points in {where(k_tr)} (one "
                         f"to train, {MIN_VAL} to validate), got {n}")
    if not split and a_va.shape[0] < MIN_VAL:
        raise ValueError(f"name: expected at least {MIN_VAL} validation points in "
                         f"{where(k_va)} (a standard error needs {MIN_VAL}), got "
                         f"{a_va.shape[0]}")
    if split:
        num_val = check_num_val(max(MIN_VAL, n // 10) if num_val is None else num_val, n,
                                f"array {k_tr!r}")

    # Layout and scale: decided once, on every array of the file together.
    names = " and ".join(repr(k) for k, _ in parts)
    subject = f"array{'s' if len(parts) > 1 else ''} {names} of {arg!r}"
    shapes = " and ".join(str(list(a.shape)) for _, a in parts)
    move, layout_note = decide_layout(a_tr.shape, channels_first,
                                      f"{subject} (shape{'s' if len(parts) > 1 else ''} "
                                      f"{shapes})")
    points = [as_points(raw, where(key), move) for key, raw in parts]
    m, scale_note = decide_scale(points, [raw.dtype for _, raw in parts], a_tr.ndim >= 3, scale,
                                 subject)
    points = [rescale(p, m) for p in points]
    image_shape = image_shape_of(a_tr.shape, move)
    notes = tuple(s for s in (layout_note, scale_note) if s)

    if not split:
        y_tr = y_va = None
        if "train_labels" in arrays:
            k, y = arrays["train_labels"]
            y_tr = as_labels(y, n, where(k))
        if "val_labels" in arrays:
            k, y = arrays["val_labels"]
            y_va = as_labels(y, a_va.shape[0], where(k))
        return Dataset(train=points[0], val=points[1], name=arg, image_shape=image_shape,
                       train_labels=y_tr, val_labels=y_va, notes=notes)

    label_role = "labels" if "single" in arrays else "train_labels"
    y = None
    if label_role in arrays:
        k, y_raw = arrays[label_role]
        y = as_labels(y_raw, n, where(k))
    x = points[0]
    tr, va = split_indices(n, num_val, seed)
    return Dataset(train=x[tr], val=x[va], name=arg, image_shape=image_shape,
                   train_labels=None if y is None else y[tr],
                   val_labels=None if y is None else y[va], notes=notes)

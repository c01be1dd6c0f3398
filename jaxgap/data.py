"""Datasets: the embedded 8x8 digits, synthetic data with a known truth, and user arrays.

Every dataset is a :class:`Dataset` holding flattened host arrays ``train: [n_train, d]`` and
``val: [n_val, d]`` (numpy float32, read-only); JAX consumers convert with ``jnp.asarray``.
Images are flattened in row-major order from ``image_shape`` (height, width, channels: HWC),
so ``ds.train.reshape(-1, *ds.image_shape)`` gives the images back.

Synthetic datasets carry their generating distribution as a :class:`Truth` (a Gaussian
mixture; a single Gaussian is one component), so closed-form denoisers, population losses
and theory can be compared with the finite sample.

All randomness comes from ``numpy.random.default_rng(seed)``; the same ``name``, ``seed`` and
keywords give identical arrays, and no global random state is read or written.

Example:
  >>> from jaxgap import data
  >>> ds = data.load("digits", seed=0)
  >>> ds.train.shape, ds.val.shape, ds.image_shape
  ((1497, 64), (300, 64), (8, 8, 1))
  >>> g = data.load("gaussian", dim=16, alpha=1.0, num_train=100)
  >>> g.truth.covs.shape
  (1, 16, 16)
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from jaxtyping import Float, Int

from jaxgap._checks import positive_float, positive_int

__all__ = ["Dataset", "Truth", "load", "DATASET_NAMES"]

#: Names accepted by :func:`load` (file-backed ones take a path after the colon).
DATASET_NAMES = ("digits", "gaussian", "gmm", "manifold", "npz:PATH", "npy:PATH")

# Keys looked up in an npz archive, in order of preference.
_TRAIN_KEYS = ("train", "x_train", "train_images")
_VAL_KEYS = ("val", "x_val", "val_images", "test", "x_test", "test_images")
_SINGLE_KEYS = ("x", "data", "images")
_TRAIN_LABEL_KEYS = ("train_labels", "y_train")
_VAL_LABEL_KEYS = ("val_labels", "y_val", "test_labels", "y_test")
_SINGLE_LABEL_KEYS = ("labels", "y")
_LABEL_KEYS = _TRAIN_LABEL_KEYS + _VAL_LABEL_KEYS + _SINGLE_LABEL_KEYS


class Truth(NamedTuple):
    """A Gaussian mixture describing the distribution synthetic data is drawn from.

    .. math::
        p(x) = \\sum_k w_k \\, \\mathcal{N}(x; \\mu_k, \\Sigma_k)

    A single Gaussian is ``K = 1``. Covariances may be singular (data on a subspace).
    Arrays are numpy float64 (exact description, independent of the float32 samples).
    Being a NamedTuple, it is a JAX pytree.

    Attributes:
      weights: ``[K]`` mixture weights, non-negative, summing to 1.
      means: ``[K, d]`` component means.
      covs: ``[K, d, d]`` component covariances (symmetric positive semi-definite).
    """

    weights: Float[np.ndarray, " K"]
    means: Float[np.ndarray, "K d"]
    covs: Float[np.ndarray, "K d d"]

    @property
    def dim(self) -> int:
        """Data dimension ``d``."""
        return int(self.means.shape[-1])

    @property
    def num_components(self) -> int:
        """Number of mixture components ``K``."""
        return int(self.weights.shape[0])

    @property
    def mean(self) -> Float[np.ndarray, " d"]:
        """Mean of the mixture, ``sum_k w_k mu_k``: ``[d]``."""
        return self.weights @ self.means

    @property
    def cov(self) -> Float[np.ndarray, "d d"]:
        """Covariance of the mixture (law of total covariance): ``[d, d]``.

        .. math::
            \\Sigma = \\sum_k w_k \\left(\\Sigma_k + (\\mu_k - \\mu)(\\mu_k - \\mu)^T\\right)
        """
        centered = self.means - self.mean
        within = np.einsum("k,kij->ij", self.weights, self.covs)
        between = np.einsum("k,ki,kj->ij", self.weights, centered, centered)
        return within + between


def _readonly(x: np.ndarray | None, dtype) -> np.ndarray | None:
    """Return ``x`` as a contiguous read-only ``dtype`` array (a view; the input is untouched)."""
    if x is None:
        return None
    if (isinstance(x, np.ndarray) and x.dtype == dtype and x.flags.c_contiguous
            and not x.flags.writeable):
        return x
    out = np.ascontiguousarray(x, dtype=dtype).view()
    out.flags.writeable = False
    return out


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A train/validation split of flattened data points.

    Attributes:
      train: ``[n_train, d]`` float32 training points (read-only numpy array).
      val: ``[n_val, d]`` float32 held-out points from the same distribution.
      name: the name it was loaded under (e.g. ``"digits"``, ``"npz:/data/cifar.npz"``).
      image_shape: ``(H, W, C)`` (channels last) when the points are flattened images,
        with ``H * W * C == d``; None for vector data. Digits: ``(8, 8, 1)``;
        32x32 RGB: ``(32, 32, 3)``.
      train_labels: ``[n_train]`` integer class labels, or None.
      val_labels: ``[n_val]`` integer class labels, or None.
      truth: the generating distribution for synthetic data (a :class:`Truth`), else None.
    """

    train: Float[np.ndarray, "n_train d"]
    val: Float[np.ndarray, "n_val d"]
    name: str
    image_shape: tuple[int, ...] | None = None
    train_labels: Int[np.ndarray, " n_train"] | None = None
    val_labels: Int[np.ndarray, " n_val"] | None = None
    truth: Truth | None = None

    def __post_init__(self):
        for field in ("train", "val"):
            x = np.asarray(getattr(self, field))
            if x.dtype.kind not in "fiu":
                raise ValueError(f"{field}: expected a real numeric array, got dtype {x.dtype}")
            if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
                raise ValueError(f"{field}: expected a non-empty [n, d] array, got shape "
                                 f"{list(x.shape)}")
            x = _readonly(x, np.float32)
            if not np.isfinite(x).all():
                bad = int(x.size - np.isfinite(x).sum())
                raise ValueError(f"{field}: expected finite values, got {bad} NaN or inf entries")
            object.__setattr__(self, field, x)
        d = self.train.shape[1]
        if self.val.shape[1] != d:
            raise ValueError(f"val: expected last dimension d = {d} (as train), got shape "
                             f"{list(self.val.shape)}")
        if self.image_shape is not None:
            shape = tuple(int(s) for s in self.image_shape)
            if int(np.prod(shape)) != d:
                raise ValueError(f"image_shape: expected a shape with product d = {d}, got "
                                 f"{shape}")
            object.__setattr__(self, "image_shape", shape)
        for field, n in (("train_labels", self.train.shape[0]), ("val_labels", self.val.shape[0])):
            y = getattr(self, field)
            if y is None:
                continue
            y = np.asarray(y)
            if y.dtype.kind not in "iu" or y.shape != (n,):
                raise ValueError(f"{field}: expected an integer array of shape [{n}], got "
                                 f"dtype {y.dtype} and shape {list(y.shape)}")
            object.__setattr__(self, field, _readonly(y, y.dtype))
        if self.truth is not None and self.truth.dim != d:
            raise ValueError(f"truth: expected a distribution on d = {d} dimensions, got "
                             f"d = {self.truth.dim}")

    def __repr__(self) -> str:
        def labels(y):
            return None if y is None else f"[{y.shape[0]}] {y.dtype}"

        truth = None if self.truth is None else f"Truth(K={self.truth.num_components})"
        return (f"Dataset(name={self.name!r}, train=[{self.num_train}, {self.dim}] float32, "
                f"val=[{self.num_val}, {self.dim}] float32, image_shape={self.image_shape}, "
                f"train_labels={labels(self.train_labels)}, "
                f"val_labels={labels(self.val_labels)}, truth={truth})")

    @property
    def dim(self) -> int:
        """Data dimension ``d``."""
        return int(self.train.shape[1])

    @property
    def num_train(self) -> int:
        """Number of training points ``n_train``."""
        return int(self.train.shape[0])

    @property
    def num_val(self) -> int:
        """Number of validation points ``n_val``."""
        return int(self.val.shape[0])

    def with_train_size(self, n: int) -> Dataset:
        """Return the same dataset restricted to its first ``n`` training points.

        The training set is already shuffled (for split data) or i.i.d. (synthetic), so the
        first ``n`` points are a random subset; nested sizes give nested training sets.
        Validation data, labels of the kept points, and truth are unchanged.

        Args:
          n: number of training points to keep, ``1 <= n <= num_train``.

        Returns:
          A :class:`Dataset` with ``train: [n, d]``.
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
            raise ValueError(f"n: expected an integer in [1, {self.num_train}], got {n!r}")
        if not 1 <= n <= self.num_train:
            raise ValueError(f"n: expected an integer in [1, {self.num_train}] (the available "
                             f"training points), got {n}")
        labels = None if self.train_labels is None else self.train_labels[:n]
        return dataclasses.replace(self, train=self.train[:n], train_labels=labels)


# ---------------------------------------------------------------------------------------------
# Helpers


def _size(value, name: str) -> int:
    return positive_int(value, name, minimum=1)


def _random_orthonormal(rng: np.random.Generator, dim: int, k: int) -> np.ndarray:
    """``[dim, k]`` matrix with orthonormal columns, Haar distributed (sign-fixed QR)."""
    q, r = np.linalg.qr(rng.standard_normal((dim, k)))
    signs = np.sign(np.diag(r))
    signs[signs == 0] = 1.0
    return q * signs


def _split(n: int, num_val: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random partition of ``range(n)`` into (train indices, val indices)."""
    perm = np.random.default_rng(seed).permutation(n)
    return perm[num_val:], perm[:num_val]


def _check_num_val(num_val, n: int, what: str) -> int:
    num_val = _size(num_val, "num_val")
    if num_val >= n:
        raise ValueError(f"num_val: expected an integer < {n} (the {what} has {n} points and "
                         f"at least one must stay for training), got {num_val}")
    return num_val


def _mixture_samples(rng: np.random.Generator, truth: Truth, n: int,
                     factors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` points from ``truth``; ``factors[k]`` is ``[d, r]`` with ``F F^T = Sigma_k``."""
    labels = rng.choice(truth.num_components, size=n, p=truth.weights)
    z = rng.standard_normal((n, factors.shape[-1]))
    x = np.empty((n, truth.dim))
    for k in range(truth.num_components):
        rows = labels == k
        x[rows] = truth.means[k] + z[rows] @ factors[k].T
    return x, labels


# ---------------------------------------------------------------------------------------------
# Loaders


def _load_digits(*, seed: int, num_val: int = 300) -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.data / 8.0 - 1.0  # pixel values 0..16 -> [-1, 1]
    y = np.asarray(bunch.target, dtype=np.int64)
    num_val = _check_num_val(num_val, x.shape[0], "digits dataset")
    tr, va = _split(x.shape[0], num_val, seed)
    return Dataset(train=x[tr], val=x[va], name="digits", image_shape=(8, 8, 1),
                   train_labels=y[tr], val_labels=y[va])


def _synthetic(name: str, seed: int, num_train, num_val, truth_fn, sample_fn,
               keep_labels: bool) -> Dataset:
    num_train = _size(num_train, "num_train")
    num_val = _size(num_val, "num_val")
    rng_truth, rng_train, rng_val = np.random.default_rng(seed).spawn(3)
    truth, factors = truth_fn(rng_truth)
    x_tr, y_tr = sample_fn(rng_train, truth, num_train, factors)
    x_va, y_va = sample_fn(rng_val, truth, num_val, factors)
    if not keep_labels:
        y_tr = y_va = None
    return Dataset(train=x_tr, val=x_va, name=name, train_labels=y_tr, val_labels=y_va,
                   truth=truth)


def _load_gaussian(*, seed: int, num_train: int = 1000, num_val: int = 1000, dim: int = 64,
                   alpha: float = 1.0, scale: float = 1.0) -> Dataset:
    dim = _size(dim, "dim")
    alpha = positive_float(alpha, "alpha", allow_zero=True)
    scale = positive_float(scale, "scale")

    def truth_fn(rng):
        eig = scale * np.arange(1, dim + 1, dtype=np.float64) ** (-alpha)
        u = _random_orthonormal(rng, dim, dim)
        cov = (u * eig) @ u.T
        cov = 0.5 * (cov + cov.T)
        truth = Truth(np.ones(1), np.zeros((1, dim)), cov[None])
        return truth, (u * np.sqrt(eig))[None]

    return _synthetic("gaussian", seed, num_train, num_val, truth_fn, _mixture_samples, False)


def _load_gmm(*, seed: int, num_train: int = 1000, num_val: int = 1000, dim: int = 16,
              num_components: int = 8, component_std: float = 0.3) -> Dataset:
    dim = _size(dim, "dim")
    num_components = _size(num_components, "num_components")
    component_std = positive_float(component_std, "component_std")

    def truth_fn(rng):
        means = rng.standard_normal((num_components, dim))
        weights = np.full(num_components, 1.0 / num_components)
        covs = np.broadcast_to(component_std**2 * np.eye(dim), (num_components, dim, dim))
        factors = np.broadcast_to(component_std * np.eye(dim), (num_components, dim, dim))
        return Truth(weights, means, covs.copy()), factors

    return _synthetic("gmm", seed, num_train, num_val, truth_fn, _mixture_samples, True)


def _load_manifold(*, seed: int, num_train: int = 1000, num_val: int = 1000, dim: int = 64,
                   intrinsic_dim: int = 4, noise_std: float = 0.0) -> Dataset:
    dim = _size(dim, "dim")
    intrinsic_dim = _size(intrinsic_dim, "intrinsic_dim")
    if intrinsic_dim > dim:
        raise ValueError(f"intrinsic_dim: expected an integer in [1, dim = {dim}], got "
                         f"{intrinsic_dim}")
    noise_std = positive_float(noise_std, "noise_std", allow_zero=True)

    def truth_fn(rng):
        basis = _random_orthonormal(rng, dim, intrinsic_dim)  # [d, k], orthonormal columns
        cov = basis @ basis.T + noise_std**2 * np.eye(dim)
        factor = basis if noise_std == 0 else np.concatenate(
            [basis, noise_std * np.eye(dim)], axis=1)
        return Truth(np.ones(1), np.zeros((1, dim)), 0.5 * (cov + cov.T)[None]), factor[None]

    return _synthetic("manifold", seed, num_train, num_val, truth_fn, _mixture_samples, False)


# ---------------------------------------------------------------------------------------------
# User arrays (npz / npy)


def _as_points(x: np.ndarray, where: str, channels_first: bool):
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


def _as_labels(y: np.ndarray | None, n: int, where: str) -> np.ndarray | None:
    if y is None:
        return None
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.dtype.kind not in "iu" or y.shape != (n,):
        raise ValueError(f"name: expected {where} to be integer labels of shape [{n}], got "
                         f"dtype {y.dtype} and shape {list(y.shape)}")
    return y.astype(np.int64)


def _read_file(path: str, kind: str, arg: str):
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


def _load_npz_arrays(loaded, arg: str) -> dict[str, np.ndarray]:
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


def _load_file(kind: str, path: str, *, seed: int, num_val: int | None = None,
               channels_first: bool = False) -> Dataset:
    arg = f"{kind}:{path}"
    if not isinstance(channels_first, (bool, np.bool_)):
        raise ValueError(f"channels_first: expected a bool, got {channels_first!r}")
    loaded = _read_file(path, kind, arg)
    if kind == "npz":
        with loaded:
            arrays = _load_npz_arrays(loaded, arg)
    else:
        arrays = {"single": ("array", loaded)}

    def where(key):
        return f"array {key!r} of {arg!r}"

    if "single" not in arrays and "val" in arrays:  # explicit train / val arrays
        if num_val is not None:
            raise ValueError(f"num_val: expected None because {arg!r} holds a separate "
                             f"validation array {arrays['val'][0]!r}, got {num_val!r}")
        (k_tr, a_tr), (k_va, a_va) = arrays["train"], arrays["val"]
        x_tr, shape_tr = _as_points(a_tr, where(k_tr), channels_first)
        x_va, shape_va = _as_points(a_va, where(k_va), channels_first)
        if x_tr.shape[1] != x_va.shape[1] or shape_tr != shape_va:
            raise ValueError(f"name: expected arrays {k_tr!r} and {k_va!r} of {arg!r} to share "
                             f"their point shape, got {list(a_tr.shape)} and {list(a_va.shape)}")
        y_tr = y_va = None
        if "train_labels" in arrays:
            k, y = arrays["train_labels"]
            y_tr = _as_labels(y, x_tr.shape[0], where(k))
        if "val_labels" in arrays:
            k, y = arrays["val_labels"]
            y_va = _as_labels(y, x_va.shape[0], where(k))
        return Dataset(train=x_tr, val=x_va, name=arg, image_shape=shape_tr,
                       train_labels=y_tr, val_labels=y_va)

    # One array: split it with a seeded permutation.
    key, raw = arrays["single"] if "single" in arrays else arrays["train"]
    label_role = "labels" if "single" in arrays else "train_labels"
    x, image_shape = _as_points(raw, where(key), channels_first)
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"name: expected at least 2 points in {where(key)} (one to train, one "
                         f"to validate), got {n}")
    y = None
    if label_role in arrays:
        k, y_raw = arrays[label_role]
        y = _as_labels(y_raw, n, where(k))
    num_val = max(1, n // 10) if num_val is None else num_val
    num_val = _check_num_val(num_val, n, f"array {key!r}")
    tr, va = _split(n, num_val, seed)
    return Dataset(train=x[tr], val=x[va], name=arg, image_shape=image_shape,
                   train_labels=None if y is None else y[tr],
                   val_labels=None if y is None else y[va])


_BUILTIN: dict[str, Callable[..., Dataset]] = {
    "digits": _load_digits,
    "gaussian": _load_gaussian,
    "gmm": _load_gmm,
    "manifold": _load_manifold,
}


def load(name: str = "digits", *, seed: int = 0, **kwargs: Any) -> Dataset:
    """Load a dataset by name.

    Names and their keywords (defaults shown):

    - ``"digits"`` (``num_val=300``): the 1797 UCI 8x8 handwritten digits shipped with
      scikit-learn (no network). Pixels ``0..16`` are mapped to ``[-1, 1]`` by ``x / 8 - 1``;
      a seeded random split leaves ``1797 - num_val`` training images; labels ``0..9`` kept;
      ``image_shape = (8, 8, 1)``; ``d = 64``.
    - ``"gaussian"`` (``num_train=1000, num_val=1000, dim=64, alpha=1.0, scale=1.0``):
      ``x ~ N(0, U diag(lambda) U^T)`` with a power-law spectrum and a Haar-random rotation
      ``U`` (sign-fixed QR of a Gaussian matrix):

      .. math::
          \\lambda_k = \\text{scale} \\cdot k^{-\\alpha}, \\quad k = 1, \\dots, d

    - ``"gmm"`` (``num_train=1000, num_val=1000, dim=16, num_components=8,
      component_std=0.3``): equal-weight mixture of isotropic Gaussians
      ``N(mu_k, component_std^2 I)`` with means ``mu_k ~ N(0, I)``; the labels are the
      component indices of each point.
    - ``"manifold"`` (``num_train=1000, num_val=1000, dim=64, intrinsic_dim=4,
      noise_std=0.0``): ``x = A z + noise_std * eps`` with ``A: [dim, intrinsic_dim]``
      orthonormal columns (a random subspace), ``z ~ N(0, I_k)``, ``eps ~ N(0, I_d)``; truth
      covariance ``A A^T + noise_std^2 I`` (singular when ``noise_std = 0``).
    - ``"npz:PATH"`` (``num_val=None, channels_first=False``): arrays saved with
      ``np.savez``. Training/validation arrays are taken from the first present key of
      ``train, x_train, train_images`` and ``val, x_val, val_images, test, x_test,
      test_images``; labels from ``train_labels, y_train`` and ``val_labels, y_val,
      test_labels, y_test``. Without a validation key, the training array (or else one of
      ``x, data, images``, or else the archive's only non-label array, labels from
      ``labels, y``) is split with a seeded permutation, ``num_val`` defaulting to
      ``max(1, n // 10)``. Pickled (object) arrays are refused.
    - ``"npy:PATH"`` (``num_val=None, channels_first=False``): one array saved with
      ``np.save``, split as above.

    File arrays have shape ``[n, d]`` (vectors), ``[n, H, W]`` (grayscale; ``image_shape``
    becomes ``(H, W, 1)``) or ``[n, H, W, C]``; with ``channels_first=True`` a ``[n, C, H, W]``
    array (as some exporters write CIFAR) is transposed to channels-last first. Points are
    flattened row-major to ``[n, H * W * C]``. ``uint8`` arrays are mapped to ``[-1, 1]`` by
    ``x / 127.5 - 1``; other integer and float arrays are converted to float32 unscaled.

    Synthetic datasets draw the truth, the training and the validation points from three
    independent streams spawned from ``default_rng(seed)``: changing ``num_train`` changes
    neither the truth nor the validation set.

    Args:
      name: one of ``"digits"``, ``"gaussian"``, ``"gmm"``, ``"manifold"``, ``"npz:PATH"``,
        ``"npy:PATH"`` (``~`` in PATH is expanded).
      seed: non-negative integer seeding every random choice (split, rotation, samples).
      **kwargs: the dataset's keywords listed above; any other keyword is an error.

    Returns:
      A :class:`Dataset` with ``train: [n_train, d]`` and ``val: [n_val, d]`` float32.

    Raises:
      ValueError: unknown name or keyword; missing, unreadable or unusable file; fewer than
        2 points; NaN/inf or non-numeric data; ``num_val >= n``; non-positive sizes. The
        message names the offending argument, what was expected and what was received.
    """
    if not isinstance(name, str):
        raise ValueError(f"name: expected a str, one of {list(DATASET_NAMES)}, got "
                         f"{type(name).__name__} {name!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")
    seed = int(seed)
    kind, sep, path = name.partition(":")
    if sep and kind in ("npz", "npy"):
        fn: Callable[..., Dataset] = lambda **kw: _load_file(kind, path, **kw)
        params = inspect.signature(_load_file).parameters
    elif name in _BUILTIN:
        fn = _BUILTIN[name]
        params = inspect.signature(fn).parameters
    else:
        raise ValueError(f"name: expected one of {list(DATASET_NAMES)}, got {name!r}")
    allowed = sorted(p for p, v in params.items()
                     if v.kind is inspect.Parameter.KEYWORD_ONLY and p != "seed")
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        label = kind if sep else name
        raise ValueError(f"{', '.join(unknown)}: unknown keyword argument(s) for dataset "
                         f"{label!r}; expected some of {allowed}, got {unknown}")
    return fn(seed=seed, **kwargs)

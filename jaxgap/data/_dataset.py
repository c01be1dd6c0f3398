"""The :class:`Dataset` and :class:`Truth` containers, and the seeded train/val split.

Data values are checked here, where data enter jaxgap: a :class:`Dataset` refuses NaN/inf
and non-numeric arrays, so consumers downstream never check values again.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np
from jaxtyping import Float, Int

from jaxgap._checks import positive_int

__all__ = ["Dataset", "Truth", "check_num_val", "readonly", "size", "split_indices"]


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


def readonly(x: np.ndarray | None, dtype) -> np.ndarray | None:
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
            x = readonly(x, np.float32)
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
            object.__setattr__(self, field, readonly(y, y.dtype))
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


def size(value, name: str) -> int:
    """A positive integer size (``num_train``, ``dim``, ...)."""
    return positive_int(value, name, minimum=1)


def split_indices(n: int, num_val: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random partition of ``range(n)`` into (train indices, val indices)."""
    perm = np.random.default_rng(seed).permutation(n)
    return perm[num_val:], perm[:num_val]


def check_num_val(num_val, n: int, what: str) -> int:
    num_val = size(num_val, "num_val")
    if num_val >= n:
        raise ValueError(f"num_val: expected an integer < {n} (the {what} has {n} points and "
                         f"at least one must stay for training), got {num_val}")
    return num_val

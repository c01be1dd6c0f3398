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

__all__ = ["CHANNEL_SIZES", "MIN_VAL", "Dataset", "Truth", "check_num_val", "flat_points",
           "looks_channels_first", "readonly", "size", "split_indices", "val_size"]


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


#: Channel counts that make an axis look like the channel axis of an image.
CHANNEL_SIZES = (1, 3, 4)

#: Fewest validation points: a standard error over examples needs two.
MIN_VAL = 2


def looks_channels_first(shape: tuple[int, ...]) -> bool:
    """True when an ``[n, A, B, C]`` shape reads as ``[n, C, H, W]`` and not ``[n, H, W, C]``."""
    return len(shape) == 4 and shape[1] in CHANNEL_SIZES and shape[-1] not in CHANNEL_SIZES


def flat_points(x, field: str) -> tuple[np.ndarray, tuple[int, ...] | None]:
    """``x`` as a numeric ``[n, d]`` array, flattening channels-last images.

    Returns (``[n, d]`` array, ``(H, W, C)`` for image-shaped input else None).
    """
    x = np.asarray(x)
    if x.dtype.kind not in "fiu":
        raise ValueError(f"{field}: expected a real numeric array, got dtype {x.dtype}")
    shape = tuple(int(s) for s in x.shape)
    if not 2 <= x.ndim <= 4:
        raise ValueError(f"{field}: expected [n, d], [n, H, W] or [n, H, W, C], got shape "
                         f"{list(shape)}")
    if x.size == 0:
        raise ValueError(f"{field}: expected a non-empty array, got shape {list(shape)}")
    if x.ndim == 2:
        return x, None
    if looks_channels_first(shape):
        raise ValueError(
            f"{field}: expected channels-last images [n, H, W, C], got shape {list(shape)}, "
            f"which looks channels-first [n, C, H, W]: pass np.moveaxis({field}, 1, -1) (or, "
            f"if it is channels-last, {field}.reshape({shape[0]}, -1) with image_shape="
            f"{shape[1:]})")
    image_shape = shape[1:] + (1,) if x.ndim == 3 else shape[1:]
    return x.reshape(shape[0], -1), image_shape


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A train/validation split of flattened data points.

    The constructor takes ``train`` and ``val`` as ``[n, d]`` points or as channels-last
    images ``[n, H, W]`` (grayscale) / ``[n, H, W, C]``, which it flattens row-major and whose
    ``(H, W, C)`` becomes ``image_shape``. It converts to float32 without rescaling (the
    scaling rules of :func:`jaxgap.data.load` apply to files only) and refuses NaN/inf,
    non-numeric arrays, and fewer than 2 validation points (a standard error over examples
    needs two).

    Attributes:
      train: ``[n_train, d]`` float32 training points (read-only numpy array).
      val: ``[n_val, d]`` float32 held-out points from the same distribution,
        ``n_val >= 2``.
      name: the name it was loaded under (e.g. ``"digits"``, ``"npz:/data/cifar.npz"``).
      image_shape: ``(H, W, C)`` (channels last) when the points are flattened images,
        with ``H * W * C == d``; None for vector data. Digits: ``(8, 8, 1)``;
        32x32 RGB: ``(32, 32, 3)``.
      train_labels: ``[n_train]`` integer class labels, or None.
      val_labels: ``[n_val]`` integer class labels, or None.
      truth: the generating distribution for synthetic data (a :class:`Truth`), else None.
      notes: what loading decided on the user's behalf, one sentence each (e.g. a
        channels-first array moved to channels-last, float images in ``[0, 1]`` mapped to
        ``[-1, 1]``), for a program to show or record; ``()`` when nothing was decided.
      train_cond: ``[n_train]`` int32 condition id of each training point, in
        ``[0, num_conditions)``, or None (see :meth:`with_conditions`).
      val_cond: ``[n_val]`` int32 condition id of each validation point, or None.
      num_conditions: number of conditions (ids ``0..num_conditions-1``), or None.
      condition: the granularity the ids come from (e.g. ``"class"``), or None. The four
        condition fields are all set or all None.
    """

    train: Float[np.ndarray, "n_train d"]
    val: Float[np.ndarray, "n_val d"]
    name: str
    image_shape: tuple[int, ...] | None = None
    train_labels: Int[np.ndarray, " n_train"] | None = None
    val_labels: Int[np.ndarray, " n_val"] | None = None
    truth: Truth | None = None
    notes: tuple[str, ...] = ()
    train_cond: Int[np.ndarray, " n_train"] | None = None
    val_cond: Int[np.ndarray, " n_val"] | None = None
    num_conditions: int | None = None
    condition: str | None = None

    def __post_init__(self):
        shapes = {}
        for field in ("train", "val"):
            x, shapes[field] = flat_points(getattr(self, field), field)
            x = readonly(x, np.float32)
            if not np.isfinite(x).all():
                bad = int(x.size - np.isfinite(x).sum())
                raise ValueError(f"{field}: expected finite values, got {bad} NaN or inf entries")
            object.__setattr__(self, field, x)
        d = self.train.shape[1]
        if self.val.shape[1] != d:
            raise ValueError(f"val: expected last dimension d = {d} (as train), got shape "
                             f"{list(self.val.shape)}")
        if self.val.shape[0] < MIN_VAL:
            raise ValueError(f"val: expected at least {MIN_VAL} validation points (a standard "
                             f"error needs {MIN_VAL}), got shape {list(self.val.shape)}")
        found = [(f, s) for f, s in shapes.items() if s is not None]
        if len(found) == 2 and found[0][1] != found[1][1]:
            raise ValueError(f"val: expected images of shape {found[0][1]} (as train), got "
                             f"{found[1][1]}")
        image_shape = self.image_shape
        if image_shape is not None:
            image_shape = tuple(int(s) for s in image_shape)
            if int(np.prod(image_shape)) != d:
                raise ValueError(f"image_shape: expected a shape with product d = {d}, got "
                                 f"{image_shape}")
            if found and found[0][1] != image_shape:
                raise ValueError(f"image_shape: expected {found[0][1]} (the shape of "
                                 f"{found[0][0]}'s images), got {image_shape}")
        elif found:
            image_shape = found[0][1]
        object.__setattr__(self, "image_shape", image_shape)
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
        notes = self.notes
        if isinstance(notes, str) or not isinstance(notes, (tuple, list)) or not all(
                isinstance(s, str) for s in notes):
            raise ValueError(f"notes: expected a tuple of str, got {notes!r}")
        object.__setattr__(self, "notes", tuple(notes))
        self._check_condition_fields()

    def _check_condition_fields(self) -> None:
        fields = ("train_cond", "val_cond", "num_conditions", "condition")
        given = [f for f in fields if getattr(self, f) is not None]
        if not given:
            return
        if len(given) < len(fields):
            missing = [f for f in fields if f not in given]
            raise ValueError(f"{missing[0]}: expected the condition fields {list(fields)} all "
                             f"set or all None, got {given} set and {missing} None")
        num = self.num_conditions
        if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 1:
            raise ValueError(f"num_conditions: expected an integer >= 1, got {num!r}")
        if not isinstance(self.condition, str) or not self.condition:
            raise ValueError(f"condition: expected a granularity name (a non-empty str), got "
                             f"{self.condition!r}")
        for field, n in (("train_cond", self.num_train), ("val_cond", self.num_val)):
            c = np.asarray(getattr(self, field))
            if c.dtype.kind not in "iu" or c.shape != (n,):
                raise ValueError(f"{field}: expected an integer array of shape [{n}], got "
                                 f"dtype {c.dtype} and shape {list(c.shape)}")
            if c.min() < 0 or c.max() >= num:
                raise ValueError(f"{field}: expected condition ids in [0, {num}) "
                                 f"(num_conditions = {num}), got values in "
                                 f"[{c.min()}, {c.max()}]")
            object.__setattr__(self, field, readonly(c, np.int32))
        object.__setattr__(self, "num_conditions", int(num))

    def __repr__(self) -> str:
        def labels(y):
            return None if y is None else f"[{y.shape[0]}] {y.dtype}"

        truth = None if self.truth is None else f"Truth(K={self.truth.num_components})"
        return (f"Dataset(name={self.name!r}, train=[{self.num_train}, {self.dim}] float32, "
                f"val=[{self.num_val}, {self.dim}] float32, image_shape={self.image_shape}, "
                f"train_labels={labels(self.train_labels)}, "
                f"val_labels={labels(self.val_labels)}, truth={truth}"
                + (f", condition={self.condition!r}, num_conditions={self.num_conditions}"
                   if self.condition is not None else "")
                + (f", notes={self.notes}" if self.notes else "") + ")")

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

    def with_train_size(self, n: int, *, offset: int = 0) -> Dataset:
        """Return the same dataset restricted to its first ``n`` training points (or to
        ``n`` points from ``offset``: ``[offset, offset + n)``, e.g. a disjoint half).

        The training set is already shuffled (for split data) or i.i.d. (synthetic), so the
        first ``n`` points are a random subset; nested sizes give nested training sets.
        Validation data, truth, notes and the condition definition are unchanged; the
        labels and condition ids (``train_cond``) of the kept points are kept with them.

        Args:
          n: number of training points to keep, ``1 <= n <= num_train - offset``.
          offset: the first training point kept, ``>= 0``.

        Returns:
          A :class:`Dataset` with ``train: [n, d]``.
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
            raise ValueError(f"n: expected an integer in [1, {self.num_train}], got {n!r}")
        if isinstance(offset, bool) or not isinstance(offset, (int, np.integer)) or not (
                0 <= offset < self.num_train):
            raise ValueError(f"offset: expected an integer in [0, {self.num_train}), got "
                             f"{offset!r}")
        if not 1 <= n <= self.num_train - offset:
            raise ValueError(f"n: expected an integer in [1, {self.num_train - offset}] (the "
                             f"available training points from offset {offset}), got {n}")
        keep = slice(offset, offset + n)
        labels = None if self.train_labels is None else self.train_labels[keep]
        cond = None if self.train_cond is None else self.train_cond[keep]
        return dataclasses.replace(self, train=self.train[keep], train_labels=labels,
                                   train_cond=cond)

    def with_conditions(self, granularity: str, **kwargs) -> Dataset:
        """Return the same dataset carrying condition ids at ``granularity``.

        The ids come from :func:`jaxgap.data.conditions` (``k``, ``groups`` and ``seed``
        pass through), fit on this dataset's training points as they are. Compute them on
        the full training split and cut afterwards with :meth:`with_train_size`: the kept
        points keep their ids, so nested training sets share one definition (e.g. the same
        ``"fine"`` centroids).

        Args:
          granularity: one of :data:`jaxgap.data.GRANULARITIES`.
          **kwargs: ``k``, ``groups``, ``seed`` of :func:`jaxgap.data.conditions`.

        Returns:
          A :class:`Dataset` with ``train_cond``, ``val_cond``, ``num_conditions`` and
          ``condition`` set.

        Example:
          >>> from jaxgap import data
          >>> ds = data.load("digits").with_conditions("class").with_train_size(100)
          >>> ds.condition, ds.num_conditions, ds.train_cond.shape, ds.val_cond.dtype
          ('class', 10, (100,), dtype('int32'))
        """
        from jaxgap.data._conditions import conditions

        c = conditions(self, granularity, **kwargs)
        return dataclasses.replace(self, train_cond=c.train, val_cond=c.val,
                                   num_conditions=c.num, condition=c.granularity)

    def check_conditions(self) -> Dataset:
        """Refuse a condition carried by validation examples but by no training point.

        Consumers of conditional data call it at their public boundary: such a condition
        has no training points to average over. A dataset without conditions passes.

        Returns:
          This dataset (for chaining).

        Raises:
          ValueError: naming the condition ids and how many validation examples carry them
            (see :func:`jaxgap.data.check_conditions`).

        Example:
          >>> from jaxgap import data
          >>> ds = data.load("digits").with_conditions("fine").with_train_size(20)
          >>> ds.check_conditions()  # doctest: +ELLIPSIS
          Traceback (most recent call last):
          ...
          ValueError: val_cond: expected condition ids carried by some training point, got ids [...] (in ... of 300 validation examples) that no training point (of 20) carries; ...
        """  # noqa: E501
        if self.train_cond is not None:
            from jaxgap.data._conditions import check_conditions

            check_conditions(self.train_cond, self.val_cond)
        return self


def size(value, name: str) -> int:
    """A positive integer size (``num_train``, ``dim``, ...)."""
    return positive_int(value, name, minimum=1)


def val_size(value) -> int:
    """A validation-set size: an integer ``>= 2`` (a standard error needs two points)."""
    if not isinstance(value, bool) and isinstance(value, (int, np.integer)) and value < MIN_VAL:
        raise ValueError(f"num_val: expected an integer >= {MIN_VAL} (a standard error needs "
                         f"at least {MIN_VAL} validation points), got {value}")
    return positive_int(value, "num_val", minimum=MIN_VAL)


def split_indices(n: int, num_val: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random partition of ``range(n)`` into (train indices, val indices)."""
    perm = np.random.default_rng(seed).permutation(n)
    return perm[num_val:], perm[:num_val]


def check_num_val(num_val, n: int, what: str) -> int:
    """``num_val`` for a split of ``n`` points: ``2 <= num_val < n``."""
    num_val = val_size(num_val)
    if num_val >= n:
        raise ValueError(f"num_val: expected an integer < {n} (the {what} has {n} points and "
                         f"at least one must stay for training), got {num_val}")
    return num_val

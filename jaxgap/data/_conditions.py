"""Condition ids at a named granularity (see :func:`conditions`).

A condition is an integer id ``0..num-1`` given to every training and validation example;
a conditional denoiser ``D(x, sigma, cond)`` uses only the training points that carry
``cond``. The granularities run from one condition for all (``"none"``) through groups of
classes (``"coarse"``) and the classes (``"class"``) to sub-clusters within classes
(``"fine"``), with content-free random ids (``"random"``) as the control of Gu et al.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np
from jaxtyping import Float, Int

from jaxgap.data._dataset import readonly

if TYPE_CHECKING:
    from jaxgap.data._dataset import Dataset

__all__ = ["GRANULARITIES", "Conditions", "check_conditions", "conditions"]

#: Granularities accepted by :func:`conditions`, coarsest first (``"random"`` last: a control).
GRANULARITIES = ("none", "coarse", "class", "fine", "random")

#: Granularities that need the dataset's labels.
LABELLED = ("coarse", "class", "fine", "random")

#: k-means restarts: the class means are a handful of points, so many restarts are cheap and
#: find the best partition whatever the seed; a class's points get the usual ten.
_N_INIT_COARSE = 50
_N_INIT_FINE = 10


@dataclasses.dataclass(frozen=True, eq=False)
class Conditions:
    """Condition ids of a dataset's training and validation examples.

    Attributes:
      train: ``[n_train]`` int32 condition id of each training point, in ``[0, num)``
        (read-only numpy array).
      val: ``[n_val]`` int32 condition id of each validation point, in ``[0, num)``.
      num: number of conditions; ids are ``0..num-1``.
      granularity: one of :data:`GRANULARITIES`.
      classes: ``[C]`` the distinct labels in increasing order (class index ``c`` stands for
        label ``classes[c]``); None for ``"none"``.
      groups: ``[C]`` int32, the group (condition id) of each class for ``"coarse"``; else
        None.
      centroids: ``[num, d]`` float64 k-means centroid of each condition for ``"fine"``
        (row ``c * k + j``: sub-cluster ``j`` of class ``c``); else None.
    """

    train: Int[np.ndarray, " n_train"]
    val: Int[np.ndarray, " n_val"]
    num: int
    granularity: str
    classes: Int[np.ndarray, " C"] | None = None
    groups: Int[np.ndarray, " C"] | None = None
    centroids: Float[np.ndarray, "num d"] | None = None

    def __post_init__(self):
        check_ids(self.train, self.val, self.num)
        object.__setattr__(self, "train", readonly(self.train, np.int32))
        object.__setattr__(self, "val", readonly(self.val, np.int32))
        object.__setattr__(self, "num", int(self.num))
        for field, dtype in (("classes", None), ("groups", np.int32), ("centroids", np.float64)):
            value = getattr(self, field)
            if value is not None:
                value = np.asarray(value)
                object.__setattr__(self, field, readonly(value, dtype or value.dtype))

    @property
    def train_counts(self) -> Int[np.ndarray, " num"]:
        """``[num]`` number of training points carrying each condition (``N_c``)."""
        return np.bincount(self.train, minlength=self.num)

    def __repr__(self) -> str:
        return (f"Conditions(granularity={self.granularity!r}, num={self.num}, "
                f"train=[{self.train.shape[0]}] int32, val=[{self.val.shape[0]}] int32)")


def check_ids(train, val, num, names=("train", "val", "num")) -> None:
    """``train``/``val`` integer ``[n]`` arrays with ids in ``[0, num)``; ``num >= 1``."""
    if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 1:
        raise ValueError(f"{names[2]}: expected an integer >= 1, got {num!r}")
    for name, ids in zip(names[:2], (train, val), strict=True):
        ids = np.asarray(ids)
        if ids.dtype.kind not in "iu" or ids.ndim != 1:
            raise ValueError(f"{name}: expected a 1-D integer array, got dtype {ids.dtype} and "
                             f"shape {list(ids.shape)}")
        if ids.size and (ids.min() < 0 or ids.max() >= num):
            raise ValueError(f"{name}: expected condition ids in [0, {num}) ({names[2]} = "
                             f"{num}), got values in [{ids.min()}, {ids.max()}]")


def check_conditions(train_cond, val_cond) -> None:
    """Refuse validation examples whose condition no training point carries.

    A conditional denoiser has nothing to average over for such a condition (a softmax over
    no training points), so its loss would be NaN; this names the ids instead.

    Args:
      train_cond: ``[n_train]`` integer condition ids of the training points.
      val_cond: ``[n_val]`` integer condition ids of the validation points.

    Raises:
      ValueError: some validation ids occur in no training point; the message lists them
        and counts the validation examples that carry them.

    Example:
      >>> check_conditions(np.array([0, 1, 1]), np.array([1, 0]))
      >>> check_conditions(np.array([0, 0]), np.array([0, 2, 2, 3]))  # doctest: +ELLIPSIS
      Traceback (most recent call last):
      ...
      ValueError: val_cond: expected condition ids carried by some training point, got ids [2, 3] (in 3 of 4 validation examples) that no training point (of 2) carries; ...
    """  # noqa: E501
    train_cond, val_cond = np.asarray(train_cond), np.asarray(val_cond)
    missing = np.setdiff1d(val_cond, train_cond)
    if missing.size:
        count = int(np.isin(val_cond, missing).sum())
        raise ValueError(
            f"val_cond: expected condition ids carried by some training point, got ids "
            f"{missing.tolist()} (in {count} of {val_cond.size} validation examples) that no "
            f"training point (of {train_cond.size}) carries; use more training points, a "
            f"coarser granularity, or drop those validation examples")


def _count(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
    return int(value)


def _class_index(ds: Dataset, granularity: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distinct labels ``[C]``, class index of train ``[n_train]``, of val ``[n_val]``)."""
    if ds.train_labels is None or ds.val_labels is None:
        which = [f for f in ("train_labels", "val_labels") if getattr(ds, f) is None]
        raise ValueError(
            f"granularity: expected 'none' for dataset {ds.name!r}, which has no "
            f"{' or '.join(which)} (the granularities {list(LABELLED)} need labels for the "
            f"training and validation points), got {granularity!r}")
    classes = np.unique(np.concatenate([ds.train_labels, ds.val_labels]))
    return (classes, np.searchsorted(classes, ds.train_labels),
            np.searchsorted(classes, ds.val_labels))


def _no_training_points(classes, y_train, what: str, arg: str) -> None:
    """Refuse classes without training points (nothing to take a mean or cluster of)."""
    empty = np.flatnonzero(np.bincount(y_train, minlength=classes.size) == 0)
    if empty.size:
        raise ValueError(f"{arg}: expected every class to have training points ({what}), got "
                         f"none for label(s) {classes[empty].tolist()} (present only in "
                         f"validation)")


def _coarse(x, y, classes, groups: int, seed: int) -> np.ndarray:
    """``[C]`` group of each class (group ids ordered by each group's smallest class)."""
    from sklearn.cluster import KMeans

    num_classes = classes.size
    if groups > num_classes:
        raise ValueError(f"groups: expected an integer in [1, {num_classes}] (the number of "
                         f"classes), got {groups}")
    _no_training_points(classes, y, "to form its mean", "groups")
    means = np.stack([x[y == c].mean(axis=0) for c in range(num_classes)])
    if np.unique(means, axis=0).shape[0] < groups:
        raise ValueError(f"groups: expected at most the number of distinct class means "
                         f"({np.unique(means, axis=0).shape[0]}), got {groups}")
    km = KMeans(n_clusters=groups, random_state=seed, n_init=_N_INIT_COARSE).fit(means)
    raw = km.labels_
    # Relabel: group ids in the order of each group's smallest class (np.unique's first index).
    _, first = np.unique(raw, return_index=True)
    order = raw[np.sort(first)]
    relabel = np.empty(groups, np.int64)
    relabel[order] = np.arange(groups)
    return relabel[raw]


def _nearest(points, centroids) -> np.ndarray:
    """Index of the nearest centroid of each point (float64 squared distances)."""
    d2 = ((points[:, None, :] - centroids[None, :, :]) ** 2).sum(-1)
    return np.argmin(d2, axis=1)


def _fine(x_tr, y_tr, x_va, y_va, classes, k: int, seed: int):
    """Sub-cluster ids ``class * k + j`` of train and val, and the ``[C * k, d]`` centroids."""
    from sklearn.cluster import KMeans

    num_classes = classes.size
    counts = np.bincount(y_tr, minlength=num_classes)
    if counts.min() < k:
        c = int(np.argmin(counts))
        raise ValueError(f"k: expected at most the number of training points of every class "
                         f"(label {classes[c]} has {counts[c]}), got {k}")
    centroids = np.empty((num_classes, k, x_tr.shape[1]))
    ids_tr, ids_va = np.empty(y_tr.size, np.int64), np.empty(y_va.size, np.int64)
    for c in range(num_classes):
        rows_tr, rows_va = y_tr == c, y_va == c
        pts = x_tr[rows_tr]
        distinct = np.unique(pts, axis=0).shape[0]
        if distinct < k:
            raise ValueError(f"k: expected at most the number of distinct training points of "
                             f"every class (label {classes[c]} has {distinct}), got {k}")
        km = KMeans(n_clusters=k, random_state=seed, n_init=_N_INIT_FINE).fit(pts)
        # Sub-clusters in the order of their first training point: ids do not depend on
        # how k-means happened to number the clusters.
        _, first = np.unique(km.labels_, return_index=True)
        order = km.labels_[np.sort(first)].tolist()
        order += [j for j in range(k) if j not in order]  # an empty cluster (never seen) last
        cent = km.cluster_centers_[order]
        centroids[c] = cent
        ids_tr[rows_tr] = c * k + _nearest(pts, cent)
        ids_va[rows_va] = c * k + _nearest(x_va[rows_va], cent)
    return ids_tr, ids_va, centroids.reshape(num_classes * k, -1)


def conditions(ds: Dataset, granularity: str, *, k: int = 5, groups: int = 2,
               seed: int = 0) -> Conditions:
    """Condition ids of a dataset's training and validation examples at a granularity.

    Labels define classes: class index ``c`` is the rank of a label among the distinct
    labels of the training and validation points (for labels ``0..C-1``, the label itself;
    digits: the digit; ``"gmm"``: the mixture component; npz files: their label array).

    - ``"none"``: every example condition 0; ``num = 1``. Works without labels.
    - ``"coarse"``: ``groups`` groups of classes. The ``C`` class means of the training
      points are clustered by k-means (scikit-learn ``KMeans(groups, random_state=seed,
      n_init=50)``: on ``C`` points, enough restarts that the best partition is found for
      any seed); group ids follow each group's smallest class; ``num = groups``. Digits
      (``load("digits", seed=0)``, ``groups=2``): group 0 holds the digits 0, 4, 6, group 1
      the digits 1, 2, 3, 5, 7, 8, 9.
    - ``"class"``: the class index; ``num = C`` (digits: 10).
    - ``"fine"``: ``k`` sub-clusters within each class, k-means (``KMeans(k,
      random_state=seed, n_init=10)``) fit on the class's training points; id ``c * k + j``
      for sub-cluster ``j`` of class ``c`` (sub-clusters numbered in the order of their
      first training point); every example, training or validation, takes the sub-cluster
      of its nearest centroid within its own class; ``num = C * k`` (digits: 50).
    - ``"random"``: ids drawn uniformly in ``[0, C)`` by ``numpy.random.default_rng(seed)``,
      training points first, then validation points; independent of the content (the
      uninformative-label control of Gu et al., 2025).

    .. math::
        \\text{fine}(x, c) = c\\,k + \\arg\\min_j \\lVert x - \\mu_{c j} \\rVert^2

    Everything is fit on ``ds.train`` as it is: compute conditions on the full training
    split, then cut it (:meth:`Dataset.with_conditions` then
    :meth:`Dataset.with_train_size`), so nested training sets share one definition. A
    condition may then be carried by validation examples only: :func:`check_conditions`
    finds it.

    Args:
      ds: a :class:`Dataset`; every granularity but ``"none"`` needs ``train_labels`` and
        ``val_labels``.
      granularity: one of :data:`GRANULARITIES`.
      k: sub-clusters per class (``"fine"``), ``>= 1`` and at most the number of
        (distinct) training points of every class.
      groups: number of groups (``"coarse"``), in ``[1, C]``.
      seed: non-negative integer seeding k-means (``"coarse"``, ``"fine"``) or the random
        ids (``"random"``).

    Returns:
      A :class:`Conditions` with ``train: [n_train]``, ``val: [n_val]`` int32 ids in
      ``[0, num)``.

    Raises:
      ValueError: unknown granularity, a labelled granularity on a dataset without labels,
        ``k < 1`` or a class with fewer than ``k`` training points, ``groups`` outside
        ``[1, C]``, a class without training points (``"coarse"``, ``"fine"``), a bad seed.

    References:
      X. Gu, C. Du, T. Pang, C. Li, M. Lin, Y. Wang. On Memorization in Diffusion Models.
      TMLR 2025 (random labels as a condition).

    Example:
      >>> from jaxgap import data
      >>> ds = data.load("digits")
      >>> fine = data.conditions(ds, "fine")
      >>> fine.num, fine.train.shape, fine.val.dtype
      (50, (1497,), dtype('int32'))
      >>> bool((fine.train // 5 == ds.train_labels).all())  # sub-clusters of the digit
      True
      >>> data.conditions(ds, "coarse").groups.tolist()
      [0, 1, 1, 1, 0, 1, 0, 1, 1, 1]
    """
    from jaxgap.data._dataset import Dataset

    if not isinstance(ds, Dataset):
        raise ValueError(f"ds: expected a jaxgap.data.Dataset, got {type(ds).__name__}")
    if not isinstance(granularity, str) or granularity not in GRANULARITIES:
        raise ValueError(f"granularity: expected one of {list(GRANULARITIES)}, got "
                         f"{granularity!r}")
    k, groups = _count(k, "k"), _count(groups, "groups")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")
    seed = int(seed)
    if granularity == "none":
        return Conditions(np.zeros(ds.num_train, np.int32), np.zeros(ds.num_val, np.int32), 1,
                          granularity)
    classes, y_tr, y_va = _class_index(ds, granularity)
    num_classes = classes.size
    if granularity == "class":
        return Conditions(y_tr, y_va, num_classes, granularity, classes=classes)
    if granularity == "random":
        rng = np.random.default_rng(seed)
        ids_tr = rng.integers(0, num_classes, size=ds.num_train)
        ids_va = rng.integers(0, num_classes, size=ds.num_val)
        return Conditions(ids_tr, ids_va, num_classes, granularity, classes=classes)
    x_tr = ds.train.astype(np.float64)
    if granularity == "coarse":
        group = _coarse(x_tr, y_tr, classes, groups, seed)
        return Conditions(group[y_tr], group[y_va], groups, granularity, classes=classes,
                          groups=group)
    ids_tr, ids_va, centroids = _fine(x_tr, y_tr, ds.val.astype(np.float64), y_va, classes, k,
                                      seed)
    return Conditions(ids_tr, ids_va, num_classes * k, granularity, classes=classes,
                      centroids=centroids)

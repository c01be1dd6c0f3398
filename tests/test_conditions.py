"""Condition ids of jaxgap.data: every granularity against independent numpy references."""

import itertools
import re

import numpy as np
import pytest

from jaxgap import data

NUM = {"none": 1, "coarse": 2, "class": 10, "fine": 50, "random": 10}


@pytest.fixture(scope="module")
def digits():
    return data.load("digits")


@pytest.fixture(scope="module")
def conds(digits):
    """Digits conditions at every granularity with the defaults (each fit once)."""
    return {g: data.conditions(digits, g) for g in data.GRANULARITIES}


@pytest.fixture(scope="module")
def gmm():
    return data.load("gmm", num_train=120, num_val=40, dim=4, num_components=3, seed=1)


def _expect_error(match, fn, *args, **kwargs):
    with pytest.raises(ValueError, match=match):
        fn(*args, **kwargs)


# ---------------------------------------------------------------------------------------------
# Every granularity


@pytest.mark.parametrize("granularity", data.GRANULARITIES)
def test_shapes_dtypes_ranges(digits, conds, granularity):
    c = conds[granularity]
    assert isinstance(c, data.Conditions) and c.granularity == granularity
    assert c.num == NUM[granularity]
    assert c.train.shape == (digits.num_train,) and c.val.shape == (digits.num_val,)
    for ids in (c.train, c.val):
        assert ids.dtype == np.int32 and not ids.flags.writeable
        assert ids.min() >= 0 and ids.max() < c.num
    # On all of digits every condition has training points: N_c sums to n_train.
    assert c.train_counts.shape == (c.num,) and c.train_counts.min() >= 1
    assert c.train_counts.sum() == digits.num_train
    data.check_conditions(c.train, c.val)
    assert repr(c) == (f"Conditions(granularity={granularity!r}, num={c.num}, "
                       f"train=[1497] int32, val=[300] int32)")


def test_none_is_zero_and_needs_no_labels(conds):
    assert not conds["none"].train.any() and not conds["none"].val.any()
    g = data.load("gaussian", dim=3, num_train=10, num_val=4)
    c = data.conditions(g, "none")
    assert c.num == 1 and c.train.shape == (10,) and c.val.shape == (4,) and c.classes is None


def test_class_equals_labels(digits, conds):
    c = conds["class"]
    np.testing.assert_array_equal(c.train, digits.train_labels)
    np.testing.assert_array_equal(c.val, digits.val_labels)
    np.testing.assert_array_equal(c.classes, np.arange(10))


# ---------------------------------------------------------------------------------------------
# fine


def test_fine_within_class_and_nearest_centroid(digits, conds):
    c, k = conds["fine"], 5
    assert c.centroids.shape == (50, 64) and c.centroids.dtype == np.float64
    for ids, x, y in ((c.train, digits.train, digits.train_labels),
                      (c.val, digits.val, digits.val_labels)):
        np.testing.assert_array_equal(ids // k, y)  # the block of the example's class
        # Brute force: the nearest of the class's k centroids, one example at a time (f64).
        for i in range(x.shape[0]):
            block = c.centroids[y[i] * k:(y[i] + 1) * k]
            dist = [np.sum((x[i].astype(np.float64) - mu) ** 2) for mu in block]
            assert ids[i] == y[i] * k + int(np.argmin(dist))
    # k-means centroids: each is the mean of its training points (converged Lloyd).
    x = digits.train.astype(np.float64)
    for j in range(c.num):
        np.testing.assert_allclose(c.centroids[j], x[c.train == j].mean(0), atol=1e-9)
    # Sub-clusters numbered by their first training point within the class.
    for cls in range(10):
        ids = c.train[digits.train_labels == cls]
        _, first = np.unique(ids, return_index=True)
        assert np.all(np.diff(first) > 0)


def test_fine_gmm_reproducible_and_seeded(gmm):
    a = data.conditions(gmm, "fine", k=2, seed=3)
    b = data.conditions(gmm, "fine", k=2, seed=3)
    assert a.num == 6
    np.testing.assert_array_equal(a.train, b.train)
    np.testing.assert_array_equal(a.val, b.val)
    np.testing.assert_array_equal(a.centroids, b.centroids)
    np.testing.assert_array_equal(a.train // 2, gmm.train_labels)


# ---------------------------------------------------------------------------------------------
# coarse


def test_coarse_unions_of_classes_and_optimal(digits, conds):
    c = conds["coarse"]
    # The documented digits grouping: {0, 4, 6} and the rest; ids by smallest class.
    np.testing.assert_array_equal(c.groups, [0, 1, 1, 1, 0, 1, 0, 1, 1, 1])
    np.testing.assert_array_equal(c.train, c.groups[digits.train_labels])
    np.testing.assert_array_equal(c.val, c.groups[digits.val_labels])
    # Whole classes: every class's points share one id.
    for cls in range(10):
        assert np.unique(np.concatenate([c.train[digits.train_labels == cls],
                                         c.val[digits.val_labels == cls]])).size == 1
    # Independent reference: the best 2-partition of the 10 class means (within-group sum of
    # squares), by enumerating all of them.
    x = digits.train.astype(np.float64)
    means = np.stack([x[digits.train_labels == cls].mean(0) for cls in range(10)])

    def cost(part):
        return sum(((means[part == g] - means[part == g].mean(0)) ** 2).sum() for g in (0, 1))

    parts = [np.array((0,) + bits) for bits in itertools.product((0, 1), repeat=9)
             if any(bits)]
    best = min(parts, key=cost)
    np.testing.assert_array_equal(c.groups, best)


def test_coarse_reproducible_and_groups(digits, conds):
    again = data.conditions(digits, "coarse", seed=0)
    np.testing.assert_array_equal(again.train, conds["coarse"].train)
    np.testing.assert_array_equal(again.val, conds["coarse"].val)
    three = data.conditions(digits, "coarse", groups=3, seed=5)
    assert three.num == 3 and sorted(set(three.groups.tolist())) == [0, 1, 2]
    _, first = np.unique(three.groups, return_index=True)
    assert np.all(np.diff(first) > 0) and three.groups[0] == 0


# ---------------------------------------------------------------------------------------------
# random


def test_random_independent_of_content(digits, conds):
    c = conds["random"]
    ids = np.concatenate([c.train, c.val])
    labels = np.concatenate([digits.train_labels, digits.val_labels])
    n, p = ids.size, 0.1
    se = np.sqrt(p * (1 - p) / n)  # binomial standard error of the agreement: 0.0071
    assert abs(np.mean(ids == labels) - p) < 4 * se
    # Uniform: every id's frequency within 4 standard errors of 1/10.
    assert np.all(np.abs(np.bincount(ids, minlength=10) / n - p) < 4 * se)
    # A function of the seed and the sizes only: other points, the same ids.
    other = data.Dataset(train=-digits.train[:, ::-1], val=digits.val * 0.5, name="other",
                         train_labels=(digits.train_labels + 3) % 10,
                         val_labels=digits.val_labels)
    d = data.conditions(other, "random")
    np.testing.assert_array_equal(d.train, c.train)
    np.testing.assert_array_equal(d.val, c.val)
    # Reproducible with the seed, another seed other ids; train ids drawn first.
    np.testing.assert_array_equal(data.conditions(digits, "random", seed=0).val, c.val)
    assert np.mean(data.conditions(digits, "random", seed=1).train == c.train) < 0.2
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(c.train, rng.integers(0, 10, size=1497))
    np.testing.assert_array_equal(c.val, rng.integers(0, 10, size=300))


# ---------------------------------------------------------------------------------------------
# Labels of synthetic data and files


def test_gmm_components(gmm):
    c = data.conditions(gmm, "class")
    assert c.num == 3
    np.testing.assert_array_equal(c.train, gmm.train_labels)
    np.testing.assert_array_equal(c.val, gmm.val_labels)
    # The labels are the components: each point is nearest its own component's mean.
    for x, ids in ((gmm.train, c.train), (gmm.val, c.val)):
        d2 = ((x[:, None, :] - gmm.truth.means[None]) ** 2).sum(-1)
        assert np.mean(np.argmin(d2, 1) == ids) > 0.9


def test_npz_labels_define_classes(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((30, 4)).astype(np.float32)
    y = np.repeat([3, 7, 9], 10)  # arbitrary label values: classes by rank
    np.savez(tmp_path / "a.npz", x=x, labels=y)
    ds = data.load(f"npz:{tmp_path / 'a.npz'}", num_val=6)
    c = data.conditions(ds, "class")
    np.testing.assert_array_equal(c.classes, [3, 7, 9])
    np.testing.assert_array_equal(c.classes[c.train], ds.train_labels)
    np.testing.assert_array_equal(c.classes[c.val], ds.val_labels)
    # A training array split by the loader, labelled by a plain `labels` or `y` array.
    for key in ("labels", "y"):
        np.savez(tmp_path / "b.npz", train=x, **{key: y})
        ds = data.load(f"npz:{tmp_path / 'b.npz'}", num_val=6)
        assert ds.train_labels is not None and ds.val_labels is not None
        assert data.conditions(ds, "class").num == 3
        both = np.concatenate([ds.train, ds.val])
        lab = np.concatenate([ds.train_labels, ds.val_labels])
        for row, label in zip(both, lab, strict=True):
            assert y[np.flatnonzero((x == row).all(1))[0]] == label


# ---------------------------------------------------------------------------------------------
# Dataset fields


def test_with_conditions_and_train_size(digits, conds):
    ds = digits.with_conditions("class")
    assert (ds.condition, ds.num_conditions) == ("class", 10)
    assert ds.train_cond.dtype == np.int32 and not ds.train_cond.flags.writeable
    assert "condition='class', num_conditions=10" in repr(ds)
    assert digits.train_cond is None and "condition" not in repr(digits)
    fine = digits.with_conditions("fine", k=5, seed=0)
    np.testing.assert_array_equal(fine.train_cond, conds["fine"].train)
    cut = fine.with_train_size(100, offset=50)
    np.testing.assert_array_equal(cut.train_cond, conds["fine"].train[50:150])
    np.testing.assert_array_equal(cut.train_labels, digits.train_labels[50:150])
    np.testing.assert_array_equal(cut.val_cond, conds["fine"].val)
    assert (cut.condition, cut.num_conditions) == ("fine", 50)
    nested = fine.with_train_size(200).with_train_size(100)
    np.testing.assert_array_equal(nested.train_cond, fine.with_train_size(100).train_cond)


def test_check_conditions(digits, conds):
    assert digits.check_conditions() is digits  # no conditions: nothing to check
    full = digits.with_conditions("fine")
    assert full.check_conditions() is full
    cut = full.with_train_size(20)
    missing = sorted(set(conds["fine"].val.tolist()) - set(conds["fine"].train[:20].tolist()))
    count = int(np.isin(conds["fine"].val, missing).sum())
    assert missing and count
    msg = (f"val_cond: expected condition ids carried by some training point, got ids "
           f"{missing} (in {count} of 300 validation examples) that no training point (of 20) "
           f"carries")
    _expect_error("^" + re.escape(msg), cut.check_conditions)
    _expect_error(r"^val_cond: .* got ids \[2\] \(in 1 of 2", data.check_conditions,
                  np.array([0, 1]), np.array([2, 0]))


# ---------------------------------------------------------------------------------------------
# Errors


def test_argument_errors(digits, gmm):
    gauss = data.load("gaussian", dim=3, num_train=10, num_val=4)
    cases = [
        ((digits, "coarser"), {}, r"^granularity: expected one of \['none', .*got 'coarser'"),
        ((digits, 3), {}, r"^granularity: expected one of .*got 3"),
        ((digits.train, "class"), {}, r"^ds: expected a jaxgap.data.Dataset, got ndarray"),
        ((digits, "fine"), {"k": 0}, r"^k: expected an integer >= 1, got 0"),
        ((digits, "fine"), {"k": True}, r"^k: expected an integer >= 1, got True"),
        ((digits, "fine"), {"k": 2.0}, r"^k: expected an integer >= 1, got 2.0"),
        ((digits, "coarse"), {"groups": 0}, r"^groups: expected an integer >= 1, got 0"),
        ((digits, "coarse"), {"groups": 11},
         r"^groups: expected an integer in \[1, 10\] \(the number of classes\), got 11"),
        ((digits, "random"), {"seed": -1}, r"^seed: expected a non-negative integer, got -1"),
        ((digits, "fine"), {"k": 200},
         r"^k: expected at most the number of training points of every class \(label \d "
         r"has 1\d\d\), got 200"),
        ((gmm, "fine"), {"k": 100}, r"^k: expected at most .*label \d has \d+\), got 100"),
    ]
    for granularity in ("coarse", "class", "fine", "random"):
        cases.append(((gauss, granularity), {},
                      r"^granularity: expected 'none' for dataset 'gaussian', which has no "
                      r"train_labels or val_labels .* got '" + granularity + "'"))
    for args, kwargs, match in cases:
        _expect_error(match, data.conditions, *args, **kwargs)


def test_label_errors():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 2))
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    half = data.Dataset(train=x, val=x[:2], name="half", train_labels=y)
    _expect_error(r"^granularity: expected 'none' for dataset 'half', which has no val_labels",
                  data.conditions, half, "class")
    # Label 2 only in validation: no mean, nothing to cluster; "class" ids still made.
    odd = data.Dataset(train=x, val=x[:2], name="odd", train_labels=y,
                       val_labels=np.array([2, 0]))
    assert data.conditions(odd, "class").num == 3
    _expect_error(r"^val_cond: .*got ids \[2\]", data.check_conditions,
                  *(lambda c: (c.train, c.val))(data.conditions(odd, "class")))
    _expect_error(r"^groups: expected every class to have training points .*label\(s\) \[2\]",
                  data.conditions, odd, "coarse")
    _expect_error(r"^k: expected .*\(label 2 has 0\), got 1", data.conditions, odd, "fine",
                  k=1)
    # Fewer distinct points than k; identical class means for more groups than distinct.
    dup = data.Dataset(train=np.repeat(x[:2], 4, axis=0), val=x[:2], name="dup",
                       train_labels=y, val_labels=np.array([0, 1]))
    _expect_error(r"^k: expected at most the number of distinct training points of every "
                  r"class \(label 0 has 1\), got 2", data.conditions, dup, "fine", k=2)
    same = data.Dataset(train=np.zeros((8, 2)), val=x[:2], name="same", train_labels=y,
                        val_labels=np.array([0, 1]))
    _expect_error(r"^groups: expected at most the number of distinct class means \(1\), got 2",
                  data.conditions, same, "coarse")


def test_dataset_condition_field_errors():
    x = np.zeros((4, 2))
    ok = {"train_cond": np.array([0, 1, 1, 0]), "val_cond": np.array([1, 0, 0, 1]),
          "num_conditions": 2, "condition": "custom"}
    ds = data.Dataset(train=x, val=x, name="m", **ok)
    assert ds.train_cond.dtype == np.int32 and ds.num_conditions == 2
    cases = [
        ({"val_cond": None}, r"^val_cond: expected the condition fields .* all set or all None"),
        ({"condition": None}, r"^condition: expected the condition fields"),
        ({"num_conditions": 0}, r"^num_conditions: expected an integer >= 1, got 0"),
        ({"num_conditions": 2.0}, r"^num_conditions: expected an integer >= 1, got 2.0"),
        ({"condition": ""}, r"^condition: expected a granularity name \(a non-empty str\)"),
        ({"train_cond": np.arange(3)},
         r"^train_cond: expected an integer array of shape \[4\], got dtype int64 and shape"),
        ({"val_cond": np.zeros(4)}, r"^val_cond: expected an integer array of shape \[4\], got "
                                    r"dtype float64"),
        ({"train_cond": np.array([0, 1, 2, 0])},
         r"^train_cond: expected condition ids in \[0, 2\) \(num_conditions = 2\), got values "
         r"in \[0, 2\]"),
        ({"val_cond": np.array([0, -1, 0, 0])}, r"^val_cond: expected condition ids in \[0, 2\)"),
    ]
    for change, match in cases:
        _expect_error(match, data.Dataset, train=x, val=x, name="m", **{**ok, **change})
    _expect_error(r"^train: expected condition ids in \[0, 2\)", data.Conditions,
                  np.array([0, 5]), np.array([0]), 2, "custom")
    _expect_error(r"^num: expected an integer >= 1, got 0", data.Conditions,
                  np.array([0]), np.array([0]), 0, "custom")

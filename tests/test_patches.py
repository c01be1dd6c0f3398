"""Tests for the ``"patches"`` dataset and the CIFAR-10 npz layout (jaxgap.data.load).

The patches are checked against a reference cut written here independently: the photographs
decoded by scikit-learn's own loader (or Pillow), shrunk by a strided sum, cut by slicing
each grid cell. Tests of the scikit-image photographs skip when scikit-image is not
installed; the scikit-learn photographs (``photos="sklearn"``) are always there.
"""

import importlib.util
import os

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_sample_image

from jaxgap import data

HAS_SKIMAGE = importlib.util.find_spec("skimage") is not None
needs_skimage = pytest.mark.skipif(not HAS_SKIMAGE, reason="scikit-image is not installed")

# Documented in docs/patches.md and in jaxgap.data.load (default options, split="photo").
COUNTS_32 = {"china": 187, "flower": 246, "astronaut": 243, "chelsea": 126, "coffee": 211,
             "rocket": 162}
COUNTS_16 = {"china": 697, "flower": 783, "astronaut": 923, "chelsea": 496, "coffee": 847,
             "rocket": 471}
TRAIN_PHOTOS, VAL_PHOTOS = ("china", "astronaut", "coffee", "rocket"), ("flower", "chelsea")


def photo(name):
    """``[H, W, 3]`` uint8 pixels, decoded by a path other than the code under test's."""
    if name in ("china", "flower"):
        return load_sample_image(f"{name}.jpg")
    folder = importlib.util.find_spec("skimage").submodule_search_locations[0]
    ext = "jpg" if name == "rocket" else "png"
    with Image.open(os.path.join(folder, "data", f"{name}.{ext}")) as im:
        return np.asarray(im.convert("RGB"))


def reference_cells(name, size, downscale=1):
    """``[rows * cols, size * size * 3]`` float64 grid cells of a photograph, in [-1, 1]."""
    px = photo(name).astype(np.float64)
    f = downscale
    h, w = px.shape[0] // f, px.shape[1] // f
    # Exact for the f = 2 used here (a sum of integers over 4), as is the code's block mean.
    img = sum(px[a::f, b::f][:h, :w] for a in range(f) for b in range(f)) / f**2
    rows, cols = h // size, w // size
    top, left = (h - rows * size) // 2, (w - cols * size) // 2
    cells = [img[top + i * size: top + (i + 1) * size, left + j * size: left + (j + 1) * size]
             for i in range(rows) for j in range(cols)]
    return np.stack([c.reshape(-1) for c in cells]) / 127.5 - 1.0


def flat_std(cells, size):
    """Per-channel pixel std, root-mean-square over channels (float64, by definition)."""
    c = cells.reshape(-1, size * size, 3)
    return np.sqrt(((c - c.mean(axis=1, keepdims=True)) ** 2).mean(axis=1).mean(axis=1))


def assert_kept(x, ref, size, min_std=0.02):
    """``x`` holds exactly the cells of ``ref`` at least ``min_std`` from flat (a cell within
    1e-9 of the threshold may go either way: summation order is not part of the rule)."""
    std = flat_std(ref, size)
    surely, maybe = ref[std > min_std + 1e-9], ref[std >= min_std - 1e-9]
    assert rows_set(surely) <= rows_set(x) <= rows_set(maybe)
    assert x.shape[0] == len(rows_set(x))  # no patch twice


def rows_set(x):
    return {r.tobytes() for r in np.asarray(x, np.float32)}


def cell_index(x, cells):
    """Index of each row of ``x`` among ``cells`` (exact float32 match; -1: none)."""
    where = {r.tobytes(): k for k, r in enumerate(cells.astype(np.float32))}
    return np.array([where.get(r.tobytes(), -1) for r in np.asarray(x, np.float32)])


def counts(ds, labels):
    names = data.PATCH_PHOTOS
    return {names[i]: int(c) for i, c in enumerate(np.bincount(labels, minlength=len(names)))
            if c}


# ---------------------------------------------------------------------------------------------
# the scikit-learn photographs (always installed)


@pytest.mark.parametrize("size,downscale", [(32, 1), (16, 2)])
def test_patches_are_the_reference_grid_cells(size, downscale):
    ds = data.load("patches", photos="sklearn", size=size, downscale=downscale, min_std=0.0)
    assert ds.name == "patches" and ds.image_shape == (size, size, 3)
    assert ds.train.dtype == np.float32 and ds.dim == 3 * size * size
    for x, y, name, label in ((ds.train, ds.train_labels, "china", 0),
                              (ds.val, ds.val_labels, "flower", 1)):
        ref = reference_cells(name, size, downscale)
        idx = cell_index(x, ref)
        # Every patch is a grid cell of its own photograph, each cell exactly once.
        assert (idx >= 0).all() and sorted(idx.tolist()) == list(range(ref.shape[0]))
        np.testing.assert_array_equal(y, label)
    assert data.PATCH_PHOTOS[:2] == ("china", "flower")


def test_flat_patches_dropped_by_min_std():
    size = 16
    ds = data.load("patches", photos="sklearn", size=size)  # min_std = 0.02
    for x, name in ((ds.train, "china"), (ds.val, "flower")):
        ref = reference_cells(name, size)
        keep = flat_std(ref, size) >= 0.02
        assert 0 < keep.sum() < keep.size  # both kinds occur
        assert_kept(x, ref, size)
    assert (ds.num_train, ds.num_val) == (COUNTS_16["china"], COUNTS_16["flower"])


def test_range_and_pixel_scale():
    ds = data.load("patches", photos="sklearn", min_std=0.0)
    # x / 127.5 - 1 of uint8 pixels: both ends of [-1, 1] are reached in these photographs.
    assert ds.train.min() >= -1.0 and ds.train.max() <= 1.0
    steps = np.unique(np.round((ds.train[:50] + 1.0) * 127.5, 3))
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-3)  # whole grey levels


def test_determinism_per_seed_and_what_the_seed_changes():
    a = data.load("patches", photos="sklearn", seed=3)
    b = data.load("patches", photos="sklearn", seed=3)
    c = data.load("patches", photos="sklearn", seed=4)
    np.testing.assert_array_equal(a.train, b.train)
    np.testing.assert_array_equal(a.val, b.val)
    np.testing.assert_array_equal(a.train_labels, b.train_labels)
    # split="photo": the seed orders the patches, it does not choose them.
    assert not np.array_equal(a.train, c.train)
    assert rows_set(a.train) == rows_set(c.train) and rows_set(a.val) == rows_set(c.val)
    # The training order is shuffled: a training-size cut is a random subset of the grid.
    ref = reference_cells("china", 32)
    assert not np.all(np.diff(cell_index(a.train, ref)) > 0)
    # split="patch": the seed picks the partition.
    p, q = (data.load("patches", photos="sklearn", split="patch", seed=s) for s in (3, 4))
    assert rows_set(p.val) != rows_set(q.val)


def test_patch_split_partitions_every_photograph_and_conditions_work():
    ds = data.load("patches", photos="sklearn", split="patch", min_std=0.0, seed=1)
    n = 2 * 260  # 13 x 20 cells of 32 x 32 in each 427 x 640 photograph
    assert (ds.num_train, ds.num_val) == (n - n // 5, n // 5)
    for name, label in (("china", 0), ("flower", 1)):
        ref = reference_cells(name, 32)
        tr = cell_index(ds.train[ds.train_labels == label], ref)
        va = cell_index(ds.val[ds.val_labels == label], ref)
        assert (tr >= 0).all() and (va >= 0).all()
        assert va.size > 0 and not set(tr) & set(va)  # disjoint cells: no shared pixel
        assert sorted(tr.tolist() + va.tolist()) == list(range(ref.shape[0]))
    cond = ds.with_conditions("class").check_conditions()
    assert cond.num_conditions == 2
    np.testing.assert_array_equal(cond.train_cond, ds.train_labels)
    np.testing.assert_array_equal(cond.val_cond, ds.val_labels)
    assert data.load("patches", photos="sklearn", split="patch", num_val=7).num_val == 7


def test_photo_split_conditions_name_the_unseen_photographs():
    ds = data.load("patches", photos="sklearn").with_conditions("class")
    assert ds.num_conditions == 2 and set(ds.train_cond) == {0} and set(ds.val_cond) == {1}
    with pytest.raises(ValueError, match=r"^val_cond: .*got ids \[1\]"):
        ds.check_conditions()


def test_num_val_subset_of_validation_photographs():
    full = data.load("patches", photos="sklearn", seed=2)
    part = data.load("patches", photos="sklearn", seed=2, num_val=10)
    assert part.num_val == 10 and rows_set(part.val) <= rows_set(full.val)
    np.testing.assert_array_equal(part.train, full.train)
    small = part.with_train_size(5)
    assert small.num_train == 5 and small.image_shape == (32, 32, 3)


@pytest.mark.parametrize("kwargs,arg", [
    ({"size": 1}, "size"),
    ({"size": 428}, "size"),
    ({"size": 16.0}, "size"),
    ({"size": True}, "size"),
    ({"downscale": 0}, "downscale"),
    ({"downscale": 300}, "downscale"),
    ({"size": 32, "downscale": 14}, "size"),
    ({"min_std": -0.1}, "min_std"),
    ({"min_std": float("nan")}, "min_std"),
    ({"min_std": 5.0}, "min_std"),
    ({"min_std": True}, "min_std"),
    ({"split": "patch", "min_std": 0.7}, "min_std"),
    ({"split": "random"}, "split"),
    ({"photos": "mine"}, "photos"),
    ({"num_val": 1}, "num_val"),
    ({"num_val": 100_000}, "num_val"),
    ({"split": "patch", "num_val": 100_000}, "num_val"),
    ({"num_train": 100}, "num_train"),
])
def test_bad_options_name_the_argument(kwargs, arg):
    with pytest.raises(ValueError, match=rf"^{arg}: "):
        data.load("patches", **{"photos": "sklearn", **kwargs})


def test_missing_scikit_image_is_named(monkeypatch):
    from jaxgap.data import _patches

    real = _patches.package_folder
    monkeypatch.setattr(_patches, "package_folder",
                        lambda pkg: None if pkg == "skimage" else real(pkg))
    with pytest.raises(ValueError, match=r"^photos: .*scikit-image is not installed.*"
                                         r"photos='sklearn'"):
        data.load("patches")
    assert data.load("patches", photos="sklearn").num_train == COUNTS_32["china"]


# ---------------------------------------------------------------------------------------------
# all six photographs (scikit-image installed)


@needs_skimage
@pytest.mark.parametrize("size,expected", [(32, COUNTS_32), (16, COUNTS_16)])
def test_default_split_by_photograph_and_documented_counts(size, expected):
    ds = data.load("patches", size=size)
    assert ds.image_shape == (size, size, 3) and ds.dim == 3 * size * size
    assert counts(ds, ds.train_labels) == {k: expected[k] for k in TRAIN_PHOTOS}
    assert counts(ds, ds.val_labels) == {k: expected[k] for k in VAL_PHOTOS}
    assert ds.train.min() >= -1.0 and ds.train.max() <= 1.0
    # No photograph feeds both splits, so no validation patch overlaps a training patch...
    assert not set(ds.train_labels.tolist()) & set(ds.val_labels.tolist())
    assert not rows_set(ds.train) & rows_set(ds.val)
    # ... and every patch is a non-flat grid cell of the photograph its label names.
    for x, y in ((ds.train, ds.train_labels), (ds.val, ds.val_labels)):
        for label in np.unique(y):
            assert_kept(x[y == label], reference_cells(data.PATCH_PHOTOS[label], size), size)


@needs_skimage
def test_default_photo_conditions():
    ds = data.load("patches", split="patch").with_conditions("class").check_conditions()
    assert ds.num_conditions == len(data.PATCH_PHOTOS) == 6
    assert ds.num_train + ds.num_val == sum(COUNTS_32.values())


# ---------------------------------------------------------------------------------------------
# CIFAR-10 npz exports


def _cifar_like(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, size=n).astype(np.uint8)
    y[:10] = np.arange(10)  # every class present
    return x, y


def _check_images(points, images):
    ref = images.reshape(images.shape[0], -1).astype(np.float64) / 127.5 - 1.0
    np.testing.assert_allclose(points, ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("keys", [("x_train", "y_train", "x_test", "y_test"),
                                  ("x", "y", "x_test", "y_test"),
                                  ("train", "train_labels", "test", "test_labels")])
def test_cifar_npz_with_test_arrays(tmp_path, keys):
    x, y = _cifar_like(200, 0)
    xt, yt = _cifar_like(50, 1)
    path = tmp_path / "cifar.npz"
    # Keras stores the labels as [n, 1] uint8.
    np.savez(path, **{keys[0]: x, keys[1]: y[:, None], keys[2]: xt, keys[3]: yt[:, None]})
    ds = data.load(f"npz:{path}")
    assert ds.image_shape == (32, 32, 3) and ds.dim == 3072 and ds.notes == ()
    assert (ds.num_train, ds.num_val) == (200, 50)
    _check_images(ds.train, x)
    _check_images(ds.val, xt)
    np.testing.assert_array_equal(ds.train_labels, y)
    np.testing.assert_array_equal(ds.val_labels, yt)
    c = ds.with_conditions("class").check_conditions()
    assert c.num_conditions == 10
    np.testing.assert_array_equal(c.train_cond, y)


@pytest.mark.parametrize("keys", [("x", "y"), ("data", "targets"), ("images", "labels")])
def test_cifar_npz_single_array_split(tmp_path, keys):
    x, y = _cifar_like(200, 2)
    path = tmp_path / "cifar.npz"
    np.savez(path, **{keys[0]: x, keys[1]: y.astype(np.int64)})
    ds = data.load(f"npz:{path}", seed=5)
    assert ds.image_shape == (32, 32, 3) and (ds.num_train, ds.num_val) == (180, 20)
    where = {r.tobytes(): k for k, r in enumerate(x.reshape(200, -1))}
    seen = []
    for points, labels in ((ds.train, ds.train_labels), (ds.val, ds.val_labels)):
        # Back to pixel values (exact: x / 127.5 - 1 in float32 is ~1e-7 from a grey level).
        pixels = np.round((points.astype(np.float64) + 1.0) * 127.5).astype(np.uint8)
        idx = np.array([where[r.tobytes()] for r in pixels])
        np.testing.assert_array_equal(labels, y[idx])  # labels travel with their images
        seen += idx.tolist()
    assert sorted(seen) == list(range(200))  # a partition of the images
    assert ds.with_conditions("class").num_conditions == 10


def test_cifar_npz_channels_first_moved(tmp_path):
    x, y = _cifar_like(40, 3)
    xt, yt = _cifar_like(10, 4)
    path = tmp_path / "nchw.npz"
    np.savez(path, x_train=x.transpose(0, 3, 1, 2), y_train=y, x_test=xt.transpose(0, 3, 1, 2),
             y_test=yt)
    ds = data.load(f"npz:{path}")
    assert ds.image_shape == (32, 32, 3) and len(ds.notes) == 1
    _check_images(ds.train, x)
    _check_images(ds.val, xt)

"""Tests for jaxgap.data: shapes, determinism, splits, truths against samples, files, errors.

Monte Carlo checks are stated in units of their standard error with the sample size in the
test; every check is deterministic given its seed.
"""

import dataclasses
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits

from jaxgap import data


def _sorted_rows(x):
    x = np.asarray(x)
    return x[np.lexsort(x.T[::-1])]


@pytest.fixture(scope="module")
def digits_raw():
    bunch = load_digits()
    return bunch.data / 8.0 - 1.0, bunch.target


@pytest.fixture(scope="module")
def digits():
    return data.load("digits", seed=0)


# ---------------------------------------------------------------------------------------------
# digits


def test_digits_shapes_dtype_range(digits):
    ds = digits
    assert ds.name == "digits"
    assert ds.train.shape == (1497, 64) and ds.val.shape == (300, 64)
    assert (ds.num_train, ds.num_val, ds.dim) == (1497, 300, 64)
    assert ds.train.dtype == np.float32 and ds.val.dtype == np.float32
    assert ds.image_shape == (8, 8, 1)
    both = np.concatenate([ds.train, ds.val])
    assert both.min() == -1.0 and both.max() == 1.0
    assert ds.train_labels.shape == (1497,) and ds.val_labels.shape == (300,)
    assert ds.truth is None
    assert not ds.train.flags.writeable


def test_digits_default_name_and_num_val():
    ds = data.load(num_val=100)
    assert ds.name == "digits" and ds.num_val == 100 and ds.num_train == 1697


def test_digits_determinism_and_seed_dependence():
    a, b, c = data.load("digits", seed=3), data.load("digits", seed=3), data.load("digits", seed=4)
    np.testing.assert_array_equal(a.train, b.train)
    np.testing.assert_array_equal(a.val, b.val)
    np.testing.assert_array_equal(a.train_labels, b.train_labels)
    assert not np.array_equal(a.val, c.val)


def test_digits_split_is_a_partition(digits, digits_raw):
    # The 1797 digits rows are distinct, so a partition means: the union (as a multiset) of
    # train and val rows is exactly the original data, and no val row occurs in train.
    x, _ = digits_raw
    assert len(np.unique(x, axis=0)) == len(x)
    both = np.concatenate([digits.train, digits.val]).astype(np.float64)
    np.testing.assert_array_equal(_sorted_rows(both), _sorted_rows(x))
    train_rows = {r.tobytes() for r in digits.train}
    assert not any(r.tobytes() in train_rows for r in digits.val)


def test_digits_labels_aligned(digits, digits_raw):
    x, y = digits_raw
    index = {r.astype(np.float32).tobytes(): i for i, r in enumerate(x)}
    for split, labels in ((digits.train, digits.train_labels), (digits.val, digits.val_labels)):
        for j in (0, 1, 7, 100, len(split) - 1):
            assert labels[j] == y[index[split[j].tobytes()]]


def test_with_train_size(digits):
    small = digits.with_train_size(10)
    np.testing.assert_array_equal(small.train, digits.train[:10])
    np.testing.assert_array_equal(small.train_labels, digits.train_labels[:10])
    assert small.val is digits.val and small.image_shape == (8, 8, 1)
    assert digits.with_train_size(digits.num_train).num_train == digits.num_train
    assert "train=[10, 64] float32" in repr(small)
    for bad in (0, -1, digits.num_train + 1, 2.0, None):
        with pytest.raises(ValueError, match=r"^n: expected an integer in \[1, 1497\]"):
            digits.with_train_size(bad)


# ---------------------------------------------------------------------------------------------
# synthetic data with a known truth


def _cov_z_scores(x, cov):
    """Entry-wise (C_hat - C) / se for a zero-mean Gaussian sample.

    se^2 = (C_ij^2 + C_ii C_jj) / n is the variance of one entry of x^T x / n.
    """
    x = np.asarray(x, np.float64)
    n = x.shape[0]
    c_hat = x.T @ x / n
    se = np.sqrt((cov**2 + np.outer(np.diag(cov), np.diag(cov))) / n)
    return (c_hat - cov) / se


def test_gaussian_truth_spectrum_and_sample_covariance():
    n, d, alpha, scale = 20_000, 16, 1.5, 2.0
    ds = data.load("gaussian", seed=1, num_train=n, num_val=50, dim=d, alpha=alpha, scale=scale)
    assert ds.train.shape == (n, d) and ds.val.shape == (50, d) and ds.truth is not None
    t = ds.truth
    assert t.weights.shape == (1,) and t.means.shape == (1, d) and t.covs.shape == (1, d, d)
    np.testing.assert_array_equal(t.means, 0.0)
    np.testing.assert_allclose(t.weights, 1.0)
    # Exact power law: eigenvalues scale * k^-alpha (float64 eigensolver, 1e-12 relative).
    eig = np.sort(np.linalg.eigvalsh(t.covs[0]))[::-1]
    k = np.arange(1, d + 1)
    np.testing.assert_allclose(eig, scale * k ** (-alpha), rtol=1e-12, atol=1e-13)
    # The rotation is not trivial (not diagonal).
    assert np.abs(t.covs[0] - np.diag(np.diag(t.covs[0]))).max() > 1e-2
    # Sample covariance: every entry within 5 standard errors (n = 20000, 136 entries).
    z = _cov_z_scores(ds.train, t.covs[0])
    assert np.abs(z).max() < 5.0
    # Sample spectrum follows the power law: log-log slope within 0.05 of -alpha
    # (relative error of each eigenvalue ~ sqrt(2 / n) = 1%).
    x = ds.train.astype(np.float64)
    sample_eig = np.sort(np.linalg.eigvalsh(x.T @ x / n))[::-1]
    slope = np.polyfit(np.log(k), np.log(sample_eig), 1)[0]
    assert abs(slope + alpha) < 0.05


def test_gaussian_determinism_and_independent_streams():
    a = data.load("gaussian", seed=5, num_train=30, num_val=20, dim=8)
    b = data.load("gaussian", seed=5, num_train=30, num_val=20, dim=8)
    c = data.load("gaussian", seed=6, num_train=30, num_val=20, dim=8)
    np.testing.assert_array_equal(a.train, b.train)
    np.testing.assert_array_equal(a.truth.covs, b.truth.covs)
    assert not np.array_equal(a.train, c.train)
    assert not np.allclose(a.truth.covs, c.truth.covs)
    # Changing num_train changes neither the truth nor the validation set.
    e = data.load("gaussian", seed=5, num_train=60, num_val=20, dim=8)
    np.testing.assert_array_equal(a.truth.covs, e.truth.covs)
    np.testing.assert_array_equal(a.val, e.val)
    assert a.train_labels is None and a.image_shape is None and a.name == "gaussian"


def test_gmm_truth_consistent_with_samples():
    n, d, k, std = 16_000, 4, 5, 0.3
    ds = data.load("gmm", seed=2, num_train=n, num_val=10, dim=d, num_components=k,
                   component_std=std)
    t = ds.truth
    assert t.weights.shape == (k,) and t.means.shape == (k, d) and t.covs.shape == (k, d, d)
    np.testing.assert_allclose(t.weights.sum(), 1.0)
    np.testing.assert_allclose(t.covs, np.broadcast_to(std**2 * np.eye(d), (k, d, d)))
    x, y = ds.train.astype(np.float64), ds.train_labels
    assert y.shape == (n,) and set(np.unique(y)) == set(range(k))
    # Component frequencies: binomial, within 5 standard errors.
    freq = np.bincount(y, minlength=k) / n
    assert np.all(np.abs(freq - t.weights) < 5 * np.sqrt(t.weights * (1 - t.weights) / n))
    # Per component: mean within 5 se (se = std / sqrt(n_k)), and the label's residuals
    # are isotropic with the stated std (relative error of the variance ~ sqrt(2 / (n_k d))).
    for j in range(k):
        xj = x[y == j]
        nj = len(xj)
        assert np.abs(xj.mean(0) - t.means[j]).max() < 5 * std / np.sqrt(nj)
        var = ((xj - t.means[j]) ** 2).mean()
        assert abs(var / std**2 - 1) < 5 * np.sqrt(2 / (nj * d))
    # Overall mean and covariance (law of total covariance) against the sample.
    assert np.abs(x.mean(0) - t.mean).max() < 5 * np.sqrt(np.diag(t.cov).max() / n)
    np.testing.assert_allclose(np.cov(x.T), t.cov, atol=0.1)


def test_manifold_points_lie_in_subspace():
    n, d, k = 500, 32, 3
    ds = data.load("manifold", seed=0, num_train=n, num_val=200, dim=d, intrinsic_dim=k)
    cov = ds.truth.covs[0]
    w, v = np.linalg.eigh(cov)
    # Truth: an orthogonal projector of rank k (eigenvalues 1 x k, 0 x (d - k)).
    np.testing.assert_allclose(np.sort(w)[::-1], np.r_[np.ones(k), np.zeros(d - k)], atol=1e-12)
    basis = v[:, -k:]
    for x in (ds.train, ds.val):
        x = x.astype(np.float64)
        residual = x - (x @ basis) @ basis.T
        # float32 storage: residual at rounding level (points have norm ~ sqrt(k)).
        assert np.abs(residual).max() < 1e-5
    x = ds.train.astype(np.float64)
    assert np.linalg.matrix_rank(x.T @ x / n, tol=1e-6) == k
    z = _cov_z_scores(x @ basis, np.eye(k))  # coordinates in the subspace are N(0, I_k)
    assert np.abs(z).max() < 5.0


def test_manifold_with_noise_floor():
    n, d, k, s = 20_000, 8, 2, 0.1
    ds = data.load("manifold", seed=1, num_train=n, num_val=5, dim=d, intrinsic_dim=k,
                   noise_std=s)
    cov = ds.truth.covs[0]
    np.testing.assert_allclose(np.sort(np.linalg.eigvalsh(cov))[::-1],
                               np.r_[np.full(k, 1 + s**2), np.full(d - k, s**2)], rtol=1e-12)
    x = ds.train.astype(np.float64)
    assert np.linalg.matrix_rank(x.T @ x / n, tol=1e-6) == d
    assert np.abs(_cov_z_scores(x, cov)).max() < 5.0


def test_truth_mixture_moments():
    t = data.Truth(np.array([0.25, 0.75]), np.array([[0.0, 0.0], [2.0, 0.0]]),
                   np.stack([np.eye(2), 2 * np.eye(2)]))
    np.testing.assert_allclose(t.mean, [1.5, 0.0])
    # within: 0.25 I + 1.5 I; between: 0.25 * 1.5^2 + 0.75 * 0.5^2 = 0.75 on the first axis.
    np.testing.assert_allclose(t.cov, [[1.75 + 0.75, 0.0], [0.0, 1.75]])
    assert t.dim == 2 and t.num_components == 2


# ---------------------------------------------------------------------------------------------
# npz / npy files


def test_npz_single_uint8_image_array(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(40, 8, 8, 3), dtype=np.uint8)
    imgs[0, 0, 0, 0], imgs[0, 0, 0, 1] = 0, 255
    labels = rng.integers(0, 10, size=40)
    path = tmp_path / "imgs.npz"
    np.savez(path, images=imgs, labels=labels)
    ds = data.load(f"npz:{path}", seed=1)
    assert ds.name == f"npz:{path}"
    assert ds.image_shape == (8, 8, 3) and ds.dim == 192
    assert (ds.num_train, ds.num_val) == (36, 4)  # default num_val = n // 10
    expected = imgs.reshape(40, -1).astype(np.float64) / 127.5 - 1
    both = np.concatenate([ds.train, ds.val])
    assert both.min() == -1.0 and both.max() == 1.0
    np.testing.assert_allclose(_sorted_rows(both), _sorted_rows(expected), atol=1e-6)
    # Labels follow their images; reshaping gives back the HWC images.
    lab = np.concatenate([ds.train_labels, ds.val_labels])
    for row, y in zip(both, lab, strict=True):
        i = np.argmin(np.abs(expected - row).sum(1))
        assert labels[i] == y
        np.testing.assert_array_equal(np.round((row.reshape(8, 8, 3) + 1) * 127.5), imgs[i])
    # Same split as determined by the seed; another seed another split.
    again = data.load(f"npz:{path}", seed=1)
    np.testing.assert_array_equal(again.val, ds.val)
    assert not np.array_equal(data.load(f"npz:{path}", seed=2).val, ds.val)
    assert data.load(f"npz:{path}", num_val=10).num_val == 10


def test_npz_train_val_keys_float_kept(tmp_path):
    rng = np.random.default_rng(1)
    tr = rng.standard_normal((12, 5)).astype(np.float64)
    va = rng.standard_normal((3, 5)).astype(np.float32)
    path = tmp_path / "xy.npz"
    np.savez(path, train=tr, val=va, train_labels=np.arange(12), val_labels=np.arange(3))
    ds = data.load(f"npz:{path}")
    np.testing.assert_array_equal(ds.train, tr.astype(np.float32))  # order kept, not scaled
    np.testing.assert_array_equal(ds.val, va)
    assert ds.train.dtype == np.float32 and ds.image_shape is None
    np.testing.assert_array_equal(ds.train_labels, np.arange(12))
    np.testing.assert_array_equal(ds.val_labels, np.arange(3))


def test_npz_keras_style_keys_and_channels_first(tmp_path):
    rng = np.random.default_rng(2)
    x_train = rng.integers(0, 256, size=(6, 3, 4, 5), dtype=np.uint8)  # [n, C, H, W]
    x_test = rng.integers(0, 256, size=(2, 3, 4, 5), dtype=np.uint8)
    path = tmp_path / "cifar_like.npz"
    np.savez(path, x_train=x_train, y_train=np.arange(6)[:, None], x_test=x_test,
             y_test=np.array([7, 8]))
    ds = data.load(f"npz:{path}", channels_first=True)
    assert ds.image_shape == (4, 5, 3)
    hwc = np.moveaxis(x_train, 1, -1).astype(np.float32) / np.float32(127.5) - np.float32(1)
    np.testing.assert_allclose(ds.train.reshape(-1, 4, 5, 3), hwc, atol=1e-7)
    np.testing.assert_array_equal(ds.train_labels, np.arange(6))
    np.testing.assert_array_equal(ds.val_labels, [7, 8])


def test_npy_grayscale_and_vectors(tmp_path):
    rng = np.random.default_rng(3)
    gray = rng.integers(0, 256, size=(20, 6, 7), dtype=np.uint8)
    np.save(tmp_path / "g.npy", gray)
    ds = data.load(f"npy:{tmp_path / 'g.npy'}", num_val=5, seed=9)
    assert ds.image_shape == (6, 7, 1) and ds.dim == 42 and (ds.num_train, ds.num_val) == (15, 5)
    assert ds.train_labels is None
    vec = rng.standard_normal((10, 3)).astype(np.float32)
    np.save(tmp_path / "v.npy", vec)
    dv = data.load(f"npy:{tmp_path / 'v.npy'}")
    assert dv.image_shape is None and (dv.num_train, dv.num_val) == (8, 2)  # num_val >= 2
    np.testing.assert_array_equal(_sorted_rows(np.concatenate([dv.train, dv.val])),
                                  _sorted_rows(vec))


def test_npz_only_array_and_train_without_val(tmp_path):
    x = np.random.default_rng(4).standard_normal((10, 2)).astype(np.float32)
    np.savez(tmp_path / "a.npz", whatever=x)
    assert data.load(f"npz:{tmp_path / 'a.npz'}").num_train == 8  # max(2, n // 10) to val
    np.savez(tmp_path / "b.npz", train=x, y_train=np.arange(10))
    ds = data.load(f"npz:{tmp_path / 'b.npz'}", num_val=4)
    assert (ds.num_train, ds.num_val) == (6, 4)
    for rows, labels in ((ds.train, ds.train_labels), (ds.val, ds.val_labels)):
        for r, y in zip(rows, labels, strict=True):
            np.testing.assert_array_equal(r, x[y])


# ---------------------------------------------------------------------------------------------
# errors: each names the argument


def test_bad_name():
    with pytest.raises(ValueError, match=r"^name: expected one of .*'digits'.*got 'cifar'"):
        data.load("cifar")
    with pytest.raises(ValueError, match=r"^name: expected a str"):
        data.load(3)
    with pytest.raises(ValueError, match=r"^name: expected 'npz:PATH' with a file path"):
        data.load("npz:")


@pytest.mark.parametrize("seed", [-1, 1.5, "0", None, True])
def test_bad_seed(seed):
    with pytest.raises(ValueError, match=r"^seed: expected a non-negative integer"):
        data.load("gaussian", seed=seed, dim=2, num_train=2, num_val=2)


def test_unknown_keywords():
    with pytest.raises(ValueError, match=r"^bogus: unknown keyword .* 'digits'.*num_val"):
        data.load("digits", bogus=1)
    with pytest.raises(ValueError, match=r"^intrinsic_dim: unknown keyword .* 'gaussian'"):
        data.load("gaussian", intrinsic_dim=2)
    with pytest.raises(ValueError, match=r"^dim: unknown keyword .* 'npz'"):
        data.load("npz:/nowhere.npz", dim=3)


@pytest.mark.parametrize("name,kwargs,arg", [
    ("gaussian", {"num_train": 0}, "num_train"),
    ("gaussian", {"num_val": -3}, "num_val"),
    ("gaussian", {"dim": 0}, "dim"),
    ("gaussian", {"num_train": 2.5}, "num_train"),
    ("gaussian", {"alpha": float("nan")}, "alpha"),
    ("gaussian", {"alpha": -1.0}, "alpha"),
    ("gaussian", {"scale": 0.0}, "scale"),
    ("gmm", {"num_components": 0}, "num_components"),
    ("gmm", {"component_std": -0.1}, "component_std"),
    ("gmm", {"num_val": 0}, "num_val"),
    ("manifold", {"intrinsic_dim": 0}, "intrinsic_dim"),
    ("manifold", {"dim": 4, "intrinsic_dim": 5}, "intrinsic_dim"),
    ("manifold", {"noise_std": float("inf")}, "noise_std"),
    ("digits", {"num_val": 0}, "num_val"),
    ("digits", {"num_val": 1797}, "num_val"),
])
def test_bad_sizes_and_hyperparameters(name, kwargs, arg):
    with pytest.raises(ValueError, match=rf"^{arg}: expected .* got "):
        data.load(name, **kwargs)


def test_bad_files(tmp_path):
    def npz(fname, **arrays):
        np.savez(tmp_path / fname, **arrays)
        return f"npz:{tmp_path / fname}"

    def npy(fname, array):
        np.save(tmp_path / fname, array)
        return f"npy:{tmp_path / fname}"

    ok = np.zeros((5, 3), np.float32)
    cases = [
        (f"npz:{tmp_path / 'missing.npz'}", {}, r"^name: expected an existing npz file, got "),
        (f"npz:{tmp_path}", {}, r"^name: expected an existing npz file"),
        (npz("two.npz", a=ok, b=ok), {}, r"^name: expected an npz with keys .*got keys"),
        (npz("none.npz", labels=np.arange(5)), {}, r"^name: expected an npz with keys"),
        (npz("valonly.npz", val=ok), {}, r"^name: expected a training array"),
        (npz("one.npz", x=ok[:1]), {}, r"^name: expected at least 3 points .* got 1"),
        (npz("nan.npz", x=np.array([[0.0], [np.nan], [1.0]])), {},
         r"^name: expected finite values .* got 1 NaN or inf"),
        (npy("inf.npy", np.array([[0.0], [np.inf], [1.0]])), {}, r"^name: expected finite values"),
        (npy("big.npy", np.array([[1e39], [0.0], [1.0]])), {}, r"^name: expected finite values"),
        (npy("str.npy", np.array([["a", "b"], ["c", "d"]])), {},
         r"^name: expected a real numeric array .* got dtype <U1"),
        (npy("cplx.npy", np.ones((3, 2), np.complex64)), {}, r"^name: expected a real numeric"),
        (npy("rank1.npy", np.arange(5.0)), {}, r"^name: expected .* of shape \[n, d\].*got shape"),
        (npy("ok.npy", ok), {"num_val": 5}, r"^num_val: expected an integer < 5 .* got 5"),
        (npy("ok2.npy", ok), {"num_val": 0}, r"^num_val: expected an integer >= 2 .*got 0"),
        (npy("ok3.npy", ok), {"channels_first": True},
         r"^channels_first: expected .*\[n, C, H, W\]"),
        (npz("tv.npz", train=ok, val=ok), {"num_val": 2}, r"^num_val: expected None"),
        (npz("mism.npz", train=ok, val=np.zeros((2, 4))), {}, r"^name: expected arrays 'train'"),
        (npz("lab.npz", train=ok, val=ok, y_train=np.arange(4)), {},
         r"^name: expected array 'y_train' .* integer labels of shape \[5\]"),
        (npz("flab.npz", x=ok, labels=np.zeros(5)), {}, r"^name: expected .*integer labels"),
        (npz("fmt.npz", x=ok).replace("npz:", "npy:"), {}, r"^name: expected an npy file.*'npz:"),
        (npy("fmt.npy", ok).replace("npy:", "npz:"), {}, r"^name: expected an npz file.*'npy:"),
    ]
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04 this is not a zip archive")
    (tmp_path / "corrupt.npy").write_bytes(b"\x93NUMPY garbage")
    cases += [
        (f"npz:{tmp_path / 'corrupt.npz'}", {}, r"^name: expected a readable npz file, got "),
        (f"npy:{tmp_path / 'corrupt.npy'}", {}, r"^name: expected a readable npy file, got "),
    ]
    obj = np.empty(2, dtype=object)
    obj[:] = [np.zeros(2), "x"]
    np.save(tmp_path / "obj.npy", obj, allow_pickle=True)
    cases.append((f"npy:{tmp_path / 'obj.npy'}", {}, r"^name: expected a readable npy file"))
    for name, kwargs, pattern in cases:
        with pytest.raises(ValueError, match=pattern):
            data.load(name, **kwargs)


def test_dataset_constructor_validates():
    x = np.zeros((4, 6))
    ds = data.Dataset(train=x, val=x[:2], name="mine", image_shape=(2, 3, 1))
    assert ds.train.dtype == np.float32 and ds.dim == 6
    with pytest.raises(ValueError, match=r"^val: expected last dimension d = 6"):
        data.Dataset(train=x, val=np.zeros((2, 5)), name="m")
    with pytest.raises(ValueError, match=r"^image_shape: expected a shape with product d = 6"):
        data.Dataset(train=x, val=x, name="m", image_shape=(2, 2))
    with pytest.raises(ValueError, match=r"^train: expected finite values"):
        data.Dataset(train=np.full((2, 6), np.nan), val=x, name="m")
    with pytest.raises(ValueError, match=r"^train_labels: expected an integer array of shape"):
        data.Dataset(train=x, val=x, name="m", train_labels=np.arange(3))
    with pytest.raises(dataclasses.FrozenInstanceError):
        ds.name = "other"


# ---------------------------------------------------------------------------------------------
# own data as a user expects (issue 12): layout, scale, notes, unreadable files, small val sets


def test_channels_first_detected_and_noted(tmp_path):
    rng = np.random.default_rng(5)
    nchw = rng.integers(0, 256, size=(20, 3, 8, 6), dtype=np.uint8)
    np.save(tmp_path / "nchw.npy", nchw)
    name = f"npy:{tmp_path / 'nchw.npy'}"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = data.load(name, num_val=4)
    assert ds.image_shape == (8, 6, 3)
    hwc = np.moveaxis(nchw, 1, -1).reshape(20, -1).astype(np.float32) / np.float32(127.5) - 1
    np.testing.assert_array_equal(_sorted_rows(np.concatenate([ds.train, ds.val])),
                                  _sorted_rows(hwc))
    assert len(ds.notes) == 1
    assert "[20, 3, 8, 6]" in ds.notes[0] and "channels-first" in ds.notes[0]
    assert "(8, 6, 3)" in ds.notes[0]
    assert "channels_first=False (command line: -D channels_first=False)" in ds.notes[0]
    # An explicit choice always wins, without a note.
    kept = data.load(name, num_val=4, channels_first=False)
    assert kept.image_shape == (3, 8, 6) and kept.notes == ()
    forced = data.load(name, num_val=4, channels_first=True)
    np.testing.assert_array_equal(forced.train, ds.train)
    assert forced.notes == ()
    # Train and test arrays of an npz are moved alike; "auto" is the CLI spelling of None.
    np.savez(tmp_path / "tv.npz", x_train=nchw[:15], x_test=nchw[15:])
    tv = data.load(f"npz:{tmp_path / 'tv.npz'}", channels_first="auto")
    assert tv.image_shape == (8, 6, 3)
    np.testing.assert_array_equal(tv.val, hwc[15:])
    assert "'x_train' and 'x_test'" in tv.notes[0]


def test_channels_ambiguous_layout_kept_with_a_note(tmp_path):
    x = np.random.default_rng(6).integers(0, 256, size=(10, 3, 4, 4), dtype=np.uint8)
    np.save(tmp_path / "amb.npy", x)
    ds = data.load(f"npy:{tmp_path / 'amb.npy'}")
    assert ds.image_shape == (3, 4, 4)  # kept as [n, H, W, C]
    assert len(ds.notes) == 1
    assert "channels_first=True (command line: -D channels_first=True)" in ds.notes[0]
    assert data.load(f"npy:{tmp_path / 'amb.npy'}", channels_first=True).image_shape == (4, 4, 3)
    # Channels-last images (last axis 1, 3 or 4; axis 1 not) get no note.
    np.save(tmp_path / "hwc.npy", np.zeros((10, 8, 8, 3), np.uint8))
    assert data.load(f"npy:{tmp_path / 'hwc.npy'}").notes == ()


def test_float_images_in_unit_interval_scaled_like_uint8(tmp_path):
    rng = np.random.default_rng(7)
    u8 = rng.integers(0, 256, size=(20, 5, 5, 3), dtype=np.uint8)
    np.save(tmp_path / "u8.npy", u8)
    np.save(tmp_path / "f01.npy", u8 / 255.0)  # float64 in [0, 1]
    np.save(tmp_path / "f255.npy", u8.astype(np.float32))  # float 0..255
    ref = data.load(f"npy:{tmp_path / 'u8.npy'}", seed=2)
    assert ref.notes == ()
    auto = data.load(f"npy:{tmp_path / 'f01.npy'}", seed=2)
    np.testing.assert_allclose(auto.train, ref.train, atol=1e-6)  # not 4x smaller
    np.testing.assert_allclose(auto.val, ref.val, atol=1e-6)
    assert len(auto.notes) == 1 and "[0, 1]" in auto.notes[0] and "scale=1" in auto.notes[0]
    assert "-D scale=none" in auto.notes[0]
    kept = data.load(f"npy:{tmp_path / 'f01.npy'}", seed=2, scale="none")
    np.testing.assert_allclose(kept.train, (ref.train + 1) / 2, atol=1e-6)
    assert kept.notes == ()
    by255 = data.load(f"npy:{tmp_path / 'f255.npy'}", seed=2, scale=255)
    np.testing.assert_array_equal(by255.train, ref.train)
    one = data.load(f"npy:{tmp_path / 'f01.npy'}", seed=2, scale=1.0)
    np.testing.assert_array_equal(one.train, auto.train)
    assert one.notes == ()


def test_float_images_outside_unit_range_refused_with_the_options(tmp_path):
    x = np.random.default_rng(8).uniform(0, 255, size=(20, 4, 4)).astype(np.float32)
    x[0, 0, 0], x[1, 0, 0] = 0.0, 255.0
    np.save(tmp_path / "f.npy", x)
    name = f"npy:{tmp_path / 'f.npy'}"
    with pytest.raises(ValueError) as err:
        data.load(name)
    msg = str(err.value)
    assert msg.startswith("scale: expected images with values in [-1, 1] or [0, 1]")
    assert "got values in [0, 255]" in msg and "f.npy'" in msg
    assert "scale=255" in msg and "scale='none'" in msg
    assert "command line: -D scale=255 or -D scale=none" in msg
    assert data.load(name, scale="none").train.max() > 1  # kept as they are
    # Other integer images: the same rule (only uint8 says 0..255 by its dtype).
    np.save(tmp_path / "i.npy", x.astype(np.int64))
    with pytest.raises(ValueError, match=r"^scale: expected images .* got values in \[0, 255\]"):
        data.load(f"npy:{tmp_path / 'i.npy'}")
    binary = (x > 100).astype(np.int16)
    np.save(tmp_path / "b.npy", binary)
    assert set(np.unique(data.load(f"npy:{tmp_path / 'b.npy'}").train)) == {-1.0, 1.0}
    # An explicit scale must cover the values.
    with pytest.raises(ValueError, match=r"^scale: expected values in \[0, 100\] for "
                                         r"scale=100, got values in \[0, 255\]"):
        data.load(name, scale=100)


def test_images_in_minus_one_one_and_flat_points_kept(tmp_path):
    rng = np.random.default_rng(9)
    # Train in [0, 1] and val with negatives: one rule on both, so both are kept as they are.
    tr = rng.uniform(0, 1, size=(12, 4, 4)).astype(np.float32)
    va = rng.uniform(-0.5, 0.5, size=(3, 4, 4)).astype(np.float32)
    np.savez(tmp_path / "pm.npz", train=tr, val=va)
    ds = data.load(f"npz:{tmp_path / 'pm.npz'}")
    np.testing.assert_array_equal(ds.train, tr.reshape(12, -1))
    np.testing.assert_array_equal(ds.val, va.reshape(3, -1))
    assert ds.notes == ()
    # Flat [n, d] float points are not pixels: kept under "auto" whatever their range.
    pts = 100 * rng.standard_normal((10, 3))
    np.save(tmp_path / "pts.npy", pts)
    np.testing.assert_array_equal(
        _sorted_rows(np.concatenate([(d := data.load(f"npy:{tmp_path / 'pts.npy'}")).train,
                                     d.val])), _sorted_rows(pts.astype(np.float32)))


@pytest.mark.parametrize("scale", [0, -1.0, float("nan"), float("inf"), True, None, "big", "1"])
def test_bad_scale(tmp_path, scale):
    np.save(tmp_path / "u.npy", np.zeros((5, 2, 2), np.uint8))
    with pytest.raises(ValueError, match=r"^scale: expected 'auto', 'none' or a positive number"):
        data.load(f"npy:{tmp_path / 'u.npy'}", scale=scale)


def test_bad_channels_first(tmp_path):
    np.save(tmp_path / "u.npy", np.zeros((5, 2, 2), np.uint8))
    with pytest.raises(ValueError, match=r"^channels_first: expected True, False or None"):
        data.load(f"npy:{tmp_path / 'u.npy'}", channels_first="yes")


def test_notes_field_defaults_and_survives_with_train_size(digits):
    assert digits.notes == ()
    x = np.zeros((4, 6))
    ds = data.Dataset(train=x, val=x[:2], name="m", notes=["first", "second"])
    assert ds.notes == ("first", "second")
    assert ds.with_train_size(2).notes == ("first", "second")
    with pytest.raises(ValueError, match=r"^notes: expected a tuple of str"):
        data.Dataset(train=x, val=x, name="m", notes="one")
    with pytest.raises(ValueError, match=r"^notes: expected a tuple of str"):
        data.Dataset(train=x, val=x, name="m", notes=(1,))


def test_unreadable_files_say_what_they_are(tmp_path):
    (tmp_path / "x.npz").write_text("hello world\n")
    with pytest.raises(ValueError) as err:
        data.load(f"npz:{tmp_path / 'x.npz'}")
    assert str(err.value) == (
        f"name: expected an npz file (a zip archive written by numpy.savez), got "
        f"'npz:{tmp_path / 'x.npz'}', which starts with b'hello wo' (a text file?)")
    assert "pickle" not in str(err.value)
    (tmp_path / "x.npy").write_text("1,2,3\n4,5,6\n")
    with pytest.raises(ValueError, match=r"^name: expected an npy file \(written by numpy.save\)"
                                         r", got .*x.npy', which starts with b'1,2,3\\n4,' "
                                         r"\(a text file\?\)"):
        data.load(f"npy:{tmp_path / 'x.npy'}")
    (tmp_path / "empty.npz").write_bytes(b"")
    with pytest.raises(ValueError, match=r"^name: expected an npz file .* which is empty"):
        data.load(f"npz:{tmp_path / 'empty.npz'}")
    (tmp_path / "g.npz").write_bytes(b"\x1f\x8b\x08\x00" + bytes(20))
    with pytest.raises(ValueError, match=r"which starts with .* \(a gzip file\?\)"):
        data.load(f"npz:{tmp_path / 'g.npz'}")
    # Real pickles are still refused, and say so.
    obj = np.empty(2, dtype=object)
    obj[:] = [np.zeros(2), "x"]
    np.save(tmp_path / "obj.npy", obj, allow_pickle=True)
    with pytest.raises(ValueError, match=r"^name: expected a readable npy file, got .*obj.npy' "
                                         r"\(it holds a pickled object array; pickles are "
                                         r"refused"):
        data.load(f"npy:{tmp_path / 'obj.npy'}")
    np.savez(tmp_path / "obj.npz", x=obj)
    with pytest.raises(ValueError, match=r"^name: expected a readable array 'x' in .*obj.npz', "
                                         r"got a pickled object array; pickles are refused"):
        data.load(f"npz:{tmp_path / 'obj.npz'}")
    import pickle
    (tmp_path / "p.npy").write_bytes(pickle.dumps([1, 2], protocol=4))
    with pytest.raises(ValueError, match=r"\(a Python pickle\? pickles are refused\)"):
        data.load(f"npy:{tmp_path / 'p.npy'}")


def test_validation_sets_of_one_refused(tmp_path):
    x = np.random.default_rng(10).standard_normal((10, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    with pytest.raises(ValueError, match=r"^num_val: expected an integer >= 2 \(a standard "
                                         r"error needs at least 2 validation points\), got 1"):
        data.load(f"npy:{tmp_path / 'x.npy'}", num_val=1)
    assert data.load(f"npy:{tmp_path / 'x.npy'}").num_val == 2  # default max(2, n // 10)
    np.save(tmp_path / "two.npy", x[:2])
    with pytest.raises(ValueError, match=r"^name: expected at least 3 points .*two.npy' \(one to "
                                         r"train, 2 to validate\), got 2"):
        data.load(f"npy:{tmp_path / 'two.npy'}")
    np.savez(tmp_path / "tv.npz", train=x, val=x[:1])
    with pytest.raises(ValueError, match=r"^name: expected at least 2 validation points in array "
                                         r"'val' of .*tv.npz' \(a standard error needs 2\), "
                                         r"got 1"):
        data.load(f"npz:{tmp_path / 'tv.npz'}")
    for name in ("digits", "gaussian", "gmm", "manifold"):
        with pytest.raises(ValueError, match=r"^num_val: expected an integer >= 2 .*got 1"):
            data.load(name, num_val=1)
    with pytest.raises(ValueError, match=r"^val: expected at least 2 validation points \(a "
                                         r"standard error needs 2\), got shape \[1, 3\]"):
        data.Dataset(train=x, val=x[:1], name="m")


def test_dataset_accepts_image_shaped_arrays():
    rng = np.random.default_rng(11)
    gray = rng.standard_normal((5, 2, 3))
    ds = data.Dataset(train=gray, val=gray[:2], name="m")
    assert ds.train.shape == (5, 6) and ds.val.shape == (2, 6) and ds.image_shape == (2, 3, 1)
    np.testing.assert_array_equal(ds.train.reshape(-1, *ds.image_shape)[..., 0],
                                  gray.astype(np.float32))
    rgb = rng.standard_normal((4, 5, 6, 3))
    ds = data.Dataset(train=rgb, val=rgb.reshape(4, -1)[:2], name="m", image_shape=(5, 6, 3))
    assert ds.train.shape == (4, 90) and ds.image_shape == (5, 6, 3)
    with pytest.raises(ValueError, match=r"^image_shape: expected \(5, 6, 3\) \(the shape of "
                                         r"train's images\), got \(6, 5, 3\)"):
        data.Dataset(train=rgb, val=rgb, name="m", image_shape=(6, 5, 3))
    nchw = rng.standard_normal((4, 3, 8, 8))
    with pytest.raises(ValueError, match=r"^train: expected channels-last images "
                                         r"\[n, H, W, C\], got shape \[4, 3, 8, 8\], "
                                         r".*np.moveaxis\(train, 1, -1\)"):
        data.Dataset(train=nchw, val=nchw, name="m")
    with pytest.raises(ValueError, match=r"^train: expected \[n, d\], \[n, H, W\] or "
                                         r"\[n, H, W, C\], got shape \[4\]"):
        data.Dataset(train=np.zeros(4), val=np.zeros((2, 1)), name="m")

"""The datasets shipped with jaxgap: the UCI 8x8 digits and synthetic data with a known
truth (see :func:`jaxgap.data.load` for their definitions and keywords)."""

from __future__ import annotations

import numpy as np

from jaxgap._checks import positive_float
from jaxgap.data._dataset import Dataset, Truth, check_num_val, size, split_indices, val_size

__all__ = ["load_digits", "load_gaussian", "load_gmm", "load_manifold"]


def random_orthonormal(rng: np.random.Generator, dim: int, k: int) -> np.ndarray:
    """``[dim, k]`` matrix with orthonormal columns, Haar distributed (sign-fixed QR)."""
    q, r = np.linalg.qr(rng.standard_normal((dim, k)))
    signs = np.sign(np.diag(r))
    signs[signs == 0] = 1.0
    return q * signs


def mixture_samples(rng: np.random.Generator, truth: Truth, n: int,
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


def load_digits(*, seed: int, num_val: int = 300) -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.data / 8.0 - 1.0  # pixel values 0..16 -> [-1, 1]
    y = np.asarray(bunch.target, dtype=np.int64)
    num_val = check_num_val(num_val, x.shape[0], "digits dataset")
    tr, va = split_indices(x.shape[0], num_val, seed)
    return Dataset(train=x[tr], val=x[va], name="digits", image_shape=(8, 8, 1),
                   train_labels=y[tr], val_labels=y[va])


def synthetic(name: str, seed: int, num_train, num_val, truth_fn, sample_fn,
               keep_labels: bool) -> Dataset:
    num_train = size(num_train, "num_train")
    num_val = val_size(num_val)
    rng_truth, rng_train, rng_val = np.random.default_rng(seed).spawn(3)
    truth, factors = truth_fn(rng_truth)
    x_tr, y_tr = sample_fn(rng_train, truth, num_train, factors)
    x_va, y_va = sample_fn(rng_val, truth, num_val, factors)
    if not keep_labels:
        y_tr = y_va = None
    return Dataset(train=x_tr, val=x_va, name=name, train_labels=y_tr, val_labels=y_va,
                   truth=truth)


def load_gaussian(*, seed: int, num_train: int = 1000, num_val: int = 1000, dim: int = 64,
                   alpha: float = 1.0, scale: float = 1.0) -> Dataset:
    dim = size(dim, "dim")
    alpha = positive_float(alpha, "alpha", allow_zero=True)
    scale = positive_float(scale, "scale")

    def truth_fn(rng):
        eig = scale * np.arange(1, dim + 1, dtype=np.float64) ** (-alpha)
        u = random_orthonormal(rng, dim, dim)
        cov = (u * eig) @ u.T
        cov = 0.5 * (cov + cov.T)
        truth = Truth(np.ones(1), np.zeros((1, dim)), cov[None])
        return truth, (u * np.sqrt(eig))[None]

    return synthetic("gaussian", seed, num_train, num_val, truth_fn, mixture_samples, False)


def load_gmm(*, seed: int, num_train: int = 1000, num_val: int = 1000, dim: int = 16,
              num_components: int = 8, component_std: float = 0.3) -> Dataset:
    dim = size(dim, "dim")
    num_components = size(num_components, "num_components")
    component_std = positive_float(component_std, "component_std")

    def truth_fn(rng):
        means = rng.standard_normal((num_components, dim))
        weights = np.full(num_components, 1.0 / num_components)
        covs = np.broadcast_to(component_std**2 * np.eye(dim), (num_components, dim, dim))
        factors = np.broadcast_to(component_std * np.eye(dim), (num_components, dim, dim))
        return Truth(weights, means, covs.copy()), factors

    return synthetic("gmm", seed, num_train, num_val, truth_fn, mixture_samples, True)


def load_manifold(*, seed: int, num_train: int = 1000, num_val: int = 1000, dim: int = 64,
                   intrinsic_dim: int = 4, noise_std: float = 0.0) -> Dataset:
    dim = size(dim, "dim")
    intrinsic_dim = size(intrinsic_dim, "intrinsic_dim")
    if intrinsic_dim > dim:
        raise ValueError(f"intrinsic_dim: expected an integer in [1, dim = {dim}], got "
                         f"{intrinsic_dim}")
    noise_std = positive_float(noise_std, "noise_std", allow_zero=True)

    def truth_fn(rng):
        basis = random_orthonormal(rng, dim, intrinsic_dim)  # [d, k], orthonormal columns
        cov = basis @ basis.T + noise_std**2 * np.eye(dim)
        factor = basis if noise_std == 0 else np.concatenate(
            [basis, noise_std * np.eye(dim)], axis=1)
        return Truth(np.ones(1), np.zeros((1, dim)), 0.5 * (cov + cov.T)[None]), factor[None]

    return synthetic("manifold", seed, num_train, num_val, truth_fn, mixture_samples, False)

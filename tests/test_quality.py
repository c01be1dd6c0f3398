"""Sample-quality metrics (jaxgap.metrics: sample_quality, frechet_distance,
gaussian_frechet_distance, train_feature_classifier) against float64 NumPy brute force and
closed forms."""

import jax
import numpy as np
import pytest

from jaxgap import data
from jaxgap.metrics import (
    FeatureClassifier,
    SampleQuality,
    frechet_distance,
    gaussian_frechet_distance,
    sample_quality,
    train_feature_classifier,
)


def brute_force(y, x, k):
    """Precision, recall, density, coverage of samples ``y`` against reference ``x`` from the
    full float64 distance matrix, and the smallest relative gap between a distance and the
    radius it is compared with (the margin that makes float32 rounding irrelevant)."""
    y = np.asarray(y, np.float64)
    x = np.asarray(x, np.float64)
    dist = lambda a, b: np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))  # noqa: E731
    d_xx, d_yy, d_yx = dist(x, x), dist(y, y), dist(y, x)
    r_x = np.sort(d_xx, axis=1)[:, k]  # column 0 is the point itself
    r_y = np.sort(d_yy, axis=1)[:, k]
    in_x = d_yx <= r_x[None, :]  # [M, N]: sample j in ball of reference i
    in_y = d_yx.T <= r_y[None, :]  # [N, M]: reference i in ball of sample j
    stats = dict(precision=in_x.any(1).mean(), recall=in_y.any(1).mean(),
                 density=in_x.sum() / (k * len(y)), coverage=in_x.any(0).mean())
    margin = min(np.min(np.abs(d_yx / r_x[None, :] - 1)), np.min(np.abs(d_yx.T / r_y[None, :] - 1)))
    return stats, margin


@pytest.mark.parametrize("k, opts", [(3, dict(block=7, chunk_size=16)), (5, {})])
def test_knn_metrics_match_brute_force(k, opts):
    rng = np.random.default_rng(7)  # a draw with no near-ties (margin below)
    x = rng.normal(size=(50, 6)).astype(np.float32)  # reference
    # samples: half near the data, half from a wider, shifted distribution (all four metrics
    # strictly between 0 and 1, unlike the limits below)
    y = np.concatenate([0.9 * rng.normal(size=(20, 6)),
                        1.8 * rng.normal(size=(30, 6)) + 0.7]).astype(np.float32)
    want, margin = brute_force(y, x, k)
    assert margin > 1e-4  # no distance within float32 rounding of its radius
    q = sample_quality(y, x, k=k, **opts)
    assert isinstance(q, SampleQuality)
    for name, value in want.items():
        assert 0.0 < value < 1.0 or name == "density"
        np.testing.assert_allclose(getattr(q, name), value, rtol=1e-6, err_msg=name)
    assert (q.num_samples, q.num_reference, q.k) == (50, 50, k)
    d = q.to_dict()
    assert all(type(v) in (float, int) for v in d.values())
    assert d["precision"] == pytest.approx(want["precision"])


def test_limits_identical_and_far_apart():
    x = np.random.default_rng(0).normal(size=(50, 6)).astype(np.float32)  # shapes as above
    same = sample_quality(x, x, k=5)
    assert same.precision == same.recall == same.coverage == 1.0
    assert same.frechet == pytest.approx(0.0, abs=1e-9)
    far = sample_quality(x + 1000.0, x, k=5)
    assert far.precision == far.recall == 0.0
    assert far.density == far.coverage == 0.0
    # a shift leaves the covariance: the Fréchet distance is |shift|^2 = 6 * 1000^2
    assert far.frechet == pytest.approx(6e6, rel=1e-6)


def random_spd(rng, f, rank=None):
    a = rng.normal(size=(f, rank or f))
    return a @ a.T / f


def brute_sqrtm_trace(s1, s2):
    """tr (S1 S2)^(1/2) from the (non-symmetric) eigenvalues of S1 S2: real, >= 0."""
    w = np.linalg.eigvals(s1 @ s2)
    return np.sum(np.sqrt(np.clip(w.real, 0, None)))


def test_gaussian_frechet_closed_forms():
    rng = np.random.default_rng(0)
    f = 7
    mu1, mu2 = rng.normal(size=f), rng.normal(size=f)
    s = random_spd(rng, f)
    # equal covariances: |mu1 - mu2|^2
    np.testing.assert_allclose(gaussian_frechet_distance(mu1, s, mu2, s),
                               np.sum((mu1 - mu2) ** 2), rtol=1e-10)
    # diagonal covariances: |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2
    a, b = rng.uniform(0.1, 3, f), rng.uniform(0.1, 3, f)
    np.testing.assert_allclose(
        gaussian_frechet_distance(mu1, np.diag(a), mu2, np.diag(b)),
        np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2), rtol=1e-10)
    # general and singular (rank 3) covariances against the brute-force trace
    for s1, s2 in ((random_spd(rng, f), random_spd(rng, f)),
                   (random_spd(rng, f, rank=3), random_spd(rng, f))):
        want = (np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2)
                - 2 * brute_sqrtm_trace(s1, s2))
        got = gaussian_frechet_distance(mu1, s1, mu2, s2)
        np.testing.assert_allclose(got, want, rtol=1e-7)
        # symmetric in its two Gaussians
        np.testing.assert_allclose(gaussian_frechet_distance(mu2, s2, mu1, s1), got, rtol=1e-7)


def test_frechet_distance_of_feature_sets():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 5)) @ rng.normal(size=(5, 5))
    y = 0.5 * rng.normal(size=(30, 5)) + 1.0
    m1, m2 = x.mean(0), y.mean(0)
    c1, c2 = np.cov(x.T), np.cov(y.T)
    want = np.sum((m1 - m2) ** 2) + np.trace(c1 + c2) - 2 * brute_sqrtm_trace(c1, c2)
    # float32 features (the array is converted like every metric input): ~1e-6 relative
    np.testing.assert_allclose(frechet_distance(x.astype(np.float32), y.astype(np.float32)),
                               want, rtol=1e-5)
    # fewer points than features: singular covariances are fine
    z = rng.normal(size=(4, 10))
    assert frechet_distance(z, z) == pytest.approx(0.0, abs=1e-6)


@pytest.fixture(scope="module")
def digits():
    return data.load("digits", seed=0)


@pytest.fixture(scope="module")
def classifier(digits):
    return train_feature_classifier(jax.random.PRNGKey(0), digits, steps=300)


def test_classifier_on_digits(digits, classifier):
    assert isinstance(classifier, FeatureClassifier)
    assert classifier.accuracy > 0.85
    feats = classifier.features(digits.val[:17])
    assert feats.shape == (17, 128)
    preds = classifier.predict(digits.val)
    assert float(np.mean(np.asarray(preds) == digits.val_labels)) == classifier.accuracy
    # deterministic given the key (a short run: the step count is traced, no new compile)
    short = [train_feature_classifier(jax.random.PRNGKey(1), digits, steps=20).features(
        digits.val[:17]) for _ in range(2)]
    np.testing.assert_array_equal(short[0], short[1])
    assert not np.array_equal(short[0], feats)


def test_sample_quality_in_feature_space(digits, classifier):
    real = sample_quality(digits.train[:300], digits.val, features=classifier.features)
    noise = np.random.default_rng(0).uniform(-1, 1, size=(300, 64)).astype(np.float32)
    junk = sample_quality(noise, digits.val, features=classifier.features)
    assert real.precision > 0.8 and real.recall > 0.8
    assert junk.precision < 0.2 and junk.frechet > 3 * real.frechet


@pytest.mark.parametrize("call, match", [
    (lambda x: sample_quality(x[0], x), r"samples: expected rank 2, got shape \[3\]"),
    (lambda x: sample_quality(x[:, :2], x), r"samples: expected last dimension d = 3"),
    (lambda x: sample_quality(x[:5], x, k=5), r"samples: expected more than k = 5 points"),
    (lambda x: sample_quality(x, x[:3], k=3), r"reference: expected more than k = 3 points"),
    (lambda x: sample_quality(np.where(x > 1, np.nan, x), x), r"samples: expected finite"),
    (lambda x: sample_quality(x, x, k=0), r"k: expected an integer >= 1, got 0"),
    (lambda x: sample_quality(x, x, features="pixels"), r"features: expected a callable"),
    (lambda x: sample_quality(x, x, features=lambda a: a[0]),
     r"features: expected features\(samples\) of shape \[20, f\], got \[3\]"),
    (lambda x: sample_quality(x, x, features=lambda a: a * np.nan),
     r"features\(samples\): expected finite values"),
    (lambda x: frechet_distance(x[:1], x), r"features1: expected at least 2 points"),
    (lambda x: gaussian_frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(3)),
     r"mean2: expected shape \[3\] \(as mean1\), got \[2\]"),
    (lambda x: gaussian_frechet_distance(np.zeros(3), np.eye(2), np.zeros(3), np.eye(3)),
     r"cov1: expected shape \[3, 3\]"),
])
def test_bad_inputs(call, match):
    x = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
    with pytest.raises(ValueError, match=match):
        call(x)


def test_classifier_needs_labels(digits):
    import dataclasses
    unlabelled = dataclasses.replace(digits, train_labels=None)
    with pytest.raises(ValueError, match=r"dataset: expected dataset.train_labels"):
        train_feature_classifier(jax.random.PRNGKey(0), unlabelled)
    with pytest.raises(ValueError, match=r"key: expected a PRNG key"):
        train_feature_classifier(0, digits)

r"""A small classifier trained on a labelled dataset, whose penultimate layer is the feature
space of the sample-quality metrics (:func:`train_feature_classifier`)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray

from jaxgap._checks import float_array, positive_float, positive_int, prng_key, shape_str
from jaxgap._jit import jit

__all__ = ["Classifier", "FeatureClassifier", "train_feature_classifier"]


class Classifier(nnx.Module):
    r"""An MLP classifier ``d -> hidden[0] -> ... -> hidden[-1] -> num_classes`` (ReLU).

    Its features are the activations of the last hidden layer (``f = hidden[-1]``).

    Args:
      dim: input dimension ``d``.
      num_classes: number of classes.
      hidden: hidden widths.
      rngs: ``nnx.Rngs`` for the initial weights.
    """

    def __init__(self, dim: int, num_classes: int, *, hidden: tuple[int, ...] = (256, 128),
                 rngs: nnx.Rngs):
        widths = (dim, *hidden)
        self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs)
                                for a, b in zip(widths[:-1], widths[1:], strict=True)])
        self.head = nnx.Linear(widths[-1], num_classes, rngs=rngs)

    def features(self, x: Float[Array, "n d"]) -> Float[Array, "n f"]:
        """Penultimate activations ``[n, hidden[-1]]``."""
        for layer in self.layers:
            x = nnx.relu(layer(x))
        return x

    def __call__(self, x: Float[Array, "n d"]) -> Float[Array, "n c"]:
        """Logits ``[n, num_classes]``."""
        return self.head(self.features(x))


@jit
def _features(model: Classifier, x):
    return model.features(x)


@jit
def _predict(model: Classifier, x):
    return jnp.argmax(model(x), axis=-1).astype(jnp.int32)


class FeatureClassifier(NamedTuple):
    """A trained :class:`Classifier` and its accuracies.

    Attributes:
      model: the trained network (an ``nnx.Module``).
      accuracy: held-out accuracy (on the validation split), a Python float.
      train_accuracy: accuracy on the training split, a Python float.
      dim: input dimension ``d``.
    """

    model: Classifier
    accuracy: float
    train_accuracy: float
    dim: int

    def features(self, x: Float[ArrayLike, "n d"]) -> Float[Array, "n f"]:
        """Penultimate-layer features ``[n, f]`` of ``x [n, d]`` (compiled once per shape)."""
        return _features(self.model, float_array(x, "x", ndim=2, dim=self.dim))

    def predict(self, x: Float[ArrayLike, "n d"]) -> Int[Array, " n"]:
        """Predicted class ``[n]`` (int32) of ``x [n, d]``."""
        return _predict(self.model, float_array(x, "x", ndim=2, dim=self.dim))


def _cross_entropy(model, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()


@jit
def _train(key, graphdef, params, x, y, steps, *, batch: int, lr, weight_decay):
    """``steps`` (an int array: one program for any number) AdamW steps on minibatches of
    epoch-wise permutations."""
    tx = optax.adamw(lr, weight_decay=weight_decay)
    n = x.shape[0]
    per_epoch = n // batch

    def loss(p, xb, yb):
        return _cross_entropy(nnx.merge(graphdef, p), xb, yb)

    def step(t, carry):
        p, opt = carry
        perm = jax.random.permutation(jax.random.fold_in(key, t // per_epoch), n)
        idx = jax.lax.dynamic_slice_in_dim(perm, (t % per_epoch) * batch, batch)
        grads = jax.grad(loss)(p, x[idx], y[idx])
        updates, opt = tx.update(grads, opt, p)
        return optax.apply_updates(p, updates), opt

    params, _ = jax.lax.fori_loop(0, steps, step, (params, tx.init(params)))
    return params


def _labels(y, name: str, n: int) -> np.ndarray:
    if y is None:
        raise ValueError(f"dataset: expected {name} (class labels), got None; the feature "
                         "classifier needs a labelled dataset")
    y = np.asarray(y)
    if y.shape != (n,) or y.dtype.kind not in "iu" or (y.size and y.min() < 0):
        raise ValueError(f"{name}: expected non-negative integer labels of shape [{n}], got "
                         f"dtype {y.dtype} and shape {shape_str(y.shape)}")
    return y.astype(np.int32)


def train_feature_classifier(key: PRNGKeyArray, dataset, *, hidden: tuple[int, ...] = (256, 128),
                             steps: int = 500, batch_size: int = 128, lr: float = 1e-3,
                             weight_decay: float = 1e-4) -> FeatureClassifier:
    r"""Train a small MLP classifier on a labelled dataset; its penultimate layer is a feature
    space for :func:`sample_quality` (a stand-in for the Inception features of the FID).

    The :class:`Classifier` ``d -> 256 -> 128 -> num_classes`` (ReLU; ``f = 128`` features)
    is trained with AdamW on the cross-entropy of ``dataset.train`` and
    ``dataset.train_labels`` (minibatches of epoch-wise permutations) and evaluated on
    ``dataset.val`` and ``dataset.val_labels``. The whole training is one compiled program;
    on the 8x8 digits (1497 training images, ``d = 64``) it takes a few seconds on two CPU
    cores (mostly compilation) and reaches a held-out accuracy of about 0.99. Deterministic
    given ``key``.

    Args:
      key: PRNG key (initial weights and data order).
      dataset: a :class:`jaxgap.data.Dataset` with ``train_labels`` and ``val_labels``.
      hidden: hidden widths; the features are the last one's activations.
      steps: optimizer steps.
      batch_size: examples per step (capped at the training-set size).
      lr: AdamW learning rate.
      weight_decay: AdamW weight decay.

    Returns:
      :class:`FeatureClassifier` with ``features(x [n, d]) -> [n, hidden[-1]]``, ``predict``
      and the held-out ``accuracy``.

    Raises:
      ValueError: naming the argument, for a dataset without labels or bad options.

    Example:
      >>> import jax
      >>> from jaxgap import data
      >>> ds = data.load("digits", seed=0)
      >>> clf = train_feature_classifier(jax.random.PRNGKey(0), ds, steps=300)
      >>> clf.features(ds.val[:5]).shape, clf.accuracy > 0.85
      ((5, 128), True)
    """
    key = prng_key(key)
    steps = positive_int(steps, "steps")
    batch_size = positive_int(batch_size, "batch_size")
    lr = positive_float(lr, "lr")
    weight_decay = positive_float(weight_decay, "weight_decay", allow_zero=True)
    if not isinstance(hidden, (tuple, list)) or not hidden:
        raise ValueError(f"hidden: expected a non-empty tuple of widths, got {hidden!r}")
    hidden = tuple(positive_int(h, "hidden") for h in hidden)
    for field in ("train", "val"):
        if not hasattr(dataset, field):
            raise ValueError(f"dataset: expected a jaxgap.data.Dataset, got "
                             f"{type(dataset).__name__}")
    train = float_array(dataset.train, "dataset.train", ndim=2)
    val = float_array(dataset.val, "dataset.val", ndim=2, dim=train.shape[1])
    y_train = _labels(getattr(dataset, "train_labels", None), "dataset.train_labels",
                      train.shape[0])
    y_val = _labels(getattr(dataset, "val_labels", None), "dataset.val_labels", val.shape[0])
    num_classes = int(max(y_train.max(), y_val.max())) + 1
    k_init, k_data = jax.random.split(key)
    model = Classifier(train.shape[1], num_classes, hidden=hidden, rngs=nnx.Rngs(params=k_init))
    graphdef, params = nnx.split(model)
    batch = min(batch_size, train.shape[0])
    params = _train(k_data, graphdef, params, train, jnp.asarray(y_train),
                    jnp.asarray(steps, jnp.int32), batch=batch, lr=jnp.asarray(lr, jnp.float32),
                    weight_decay=jnp.asarray(weight_decay, jnp.float32))
    model = nnx.merge(graphdef, params)

    def accuracy(x, y):
        return float(np.mean(np.asarray(_predict(model, x)) == y))

    return FeatureClassifier(model, accuracy(val, y_val), accuracy(train, y_train),
                             int(train.shape[1]))

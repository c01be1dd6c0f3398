"""Named PRNG streams: every ``fold_in(key, n)`` that splits a run's key by purpose.

A run (training, the study) derives its keys from one seed; each purpose folds in its own
constant, named here once, so two modules that must agree on a stream (the training loop's
evaluation noise and the study's) import the same name instead of repeating a number.
The values are the ones jaxgap has always used: changing one changes every result.
"""

from __future__ import annotations

import jax

__all__ = ["CONDITIONS", "DATA_ORDER", "EVAL_NOISE", "MEMORIZATION", "NOISY_TRAIN",
           "NOISY_VAL", "QUALITY", "SAMPLING", "TRAIN_NOISE", "stream"]

# Training (jaxgap.train): from PRNGKey(seed)
DATA_ORDER = 1    # minibatch order
TRAIN_NOISE = 2   # noise levels and noise of the training objective
EVAL_NOISE = 3    # the per-sigma train/validation losses tracked during training

# The study (jaxgap.study): from PRNGKey(seed)
SAMPLING = 20     # the sampling key of the study's sampling and domain stages

# Sampling and diagnostics (jaxgap.study, jaxgap sample): from the sampling key
MEMORIZATION = 1  # bootstrap of the memorized fraction
NOISY_TRAIN = 2   # forward-noised training states of the domain diagnostics
NOISY_VAL = 3     # forward-noised validation states of the domain diagnostics
QUALITY = 4       # sample quality: the baseline's training subset and the feature classifier
CONDITIONS = 5    # the conditions of a conditional model's samples (those of training points)


def stream(key: jax.Array, name: int) -> jax.Array:
    """``jax.random.fold_in(key, name)``: the key of one named stream."""
    return jax.random.fold_in(key, name)

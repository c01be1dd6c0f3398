r"""Field sharpness: how abruptly a denoiser's output changes between training points."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float

from jaxgap import _protocol
from jaxgap.metrics._neighbors import nearest_neighbors

__all__ = ["SEGMENT_STEPS", "field_sharpness"]

SEGMENT_STEPS = 33  # steps of a segment between training neighbours (odd: a jump at the
#                     midpoint falls inside one step and shows as a slope of 33)


def field_sharpness(denoiser, train: Float[ArrayLike, "n d"], sigmas: Float[ArrayLike, " k"],
                    *, cond=None, num_pairs: int = 64,
                    num_steps: int = SEGMENT_STEPS) -> np.ndarray:
    r"""How sharply a denoiser's output changes between neighbouring training points.

    For the first ``P = min(num_pairs, N)`` training points ``y_i`` and each one's nearest
    other training point ``y_j``, the segment ``x_t = y_i + t (y_j - y_i)``,
    ``t = 0, 1/S, ..., 1`` (``S = num_steps``) is evaluated at every noise level, and

    .. math:: s_i(\sigma) = \max_t \frac{|D(x_{t+1/S}, \sigma) - D(x_t, \sigma)|}
        {|x_{t+1/S} - x_t|}

    is the largest secant slope. The optimal denoiser at small sigma jumps from ``y_i`` to
    ``y_j`` within one step (``s = S`` for odd ``S``); a smooth field, e.g. the identity, has
    ``s = 1``; a linear ``D = a x`` has ``s = |a|``.

    Args:
      denoiser: any ``D(x, sigma)`` (or ``D(x, sigma, cond)`` with ``cond``).
      train: ``[N, d]`` training points, ``N >= 2``.
      sigmas: ``[K]`` noise levels.
      cond: None, or integer condition ids broadcastable to ``[K, P, S + 1]`` (a scalar:
        one condition for every segment), passed to the denoiser.
      num_pairs: at most this many segments.
      num_steps: steps per segment ``S >= 1``.

    Returns:
      ``[K, P]`` float64 slopes ``s_i(sigma_k)``.

    Example:
      >>> train = np.array([[0.0, 0.0], [3.0, 4.0], [10.0, 0.0]], np.float32)
      >>> np.round(field_sharpness(lambda x, s: 0.5 * x, train, [0.1]), 3)
      array([[0.5, 0.5, 0.5]])
    """
    train = np.asarray(train, np.float32)
    if train.ndim != 2 or train.shape[0] < 2:
        raise ValueError(f"train: expected shape [N, d] with N >= 2, got {list(train.shape)}")
    sig = np.asarray(sigmas, np.float32)
    if sig.ndim != 1 or sig.size == 0 or not np.all(sig > 0):
        raise ValueError("sigmas: expected a non-empty [K] array of values > 0")
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps: expected a positive integer, got {num_steps!r}")
    p = min(int(num_pairs), train.shape[0])
    cond = _protocol.check_denoiser(denoiser, cond, (sig.size, p, num_steps + 1))
    nb = nearest_neighbors(train[:p], train, k=2)
    index = np.asarray(nb.index)
    # The nearest other point: column 1, unless a duplicate put the point itself there.
    other = np.where(index[:, 0] == np.arange(p), index[:, 1], index[:, 0])
    a, b = train[:p], train[other]
    t = np.linspace(0.0, 1.0, num_steps + 1, dtype=np.float32)
    x = a[:, None, :] + t[None, :, None] * (b - a)[:, None, :]  # [P, T, d]
    xs = jnp.broadcast_to(jnp.asarray(x)[None], (sig.size, *x.shape))
    sig_b = jnp.broadcast_to(jnp.asarray(sig)[:, None, None], xs.shape[:-1])
    out = np.asarray(_protocol.call(denoiser, xs, sig_b, cond), np.float64)
    step = np.linalg.norm((b - a).astype(np.float64), axis=1) / num_steps  # [P]
    slope = np.linalg.norm(np.diff(out, axis=2), axis=-1) / step[None, :, None]
    return slope.max(axis=2)

r"""Inference-domain diagnostics: where states lie relative to the noisy training samples.

Claim C3 of Kaiser and Kollmann (2026): intermediate states of sampling trajectories lie far
from the noisy training samples the model was trained on. :func:`normalized_nn_distance`,
:func:`posterior_concentration` and :func:`domain_diagnostics` summarize noisy-train,
noisy-val (:func:`noisy_states`) and sampler states side by side, per noise level;
:func:`trajectory_domain` does so for sampler trajectories, and :func:`domain_exits` /
:func:`exit_ranges` say where a set leaves the noisy-train band.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from jaxgap import _streams
from jaxgap._checks import float_array, positive_int, prng_key, shape_str, sigma_array
from jaxgap._exact import exact_sq_dist_diff
from jaxgap._jit import jit
from jaxgap._mc import example_noise
from jaxgap.denoisers import EmpiricalDenoiser
from jaxgap.metrics._neighbors import _common_dtype, _floats, _neighbors_in

__all__ = ["Concentration", "DomainDiagnostics", "SetDiagnostics", "domain_diagnostics",
           "domain_exits", "exit_ranges", "noisy_states", "normalized_nn_distance",
           "posterior_concentration", "trajectory_domain"]

QUANTILES = (0.1, 0.5, 0.9)  # the default bands of the diagnostics


def _check_states(x, sigma, train, name: str = "x"):
    """``x [..., d]`` against ``train [N, d]``; ``sigma`` broadcast to ``x.shape[:-1]``."""
    x = float_array(x, name, min_ndim=1, dim=train.shape[1])
    dtype = _common_dtype(x, train)
    sigma = sigma_array(sigma, "sigma", x.shape[:-1], dtype=dtype)
    return x.astype(dtype), sigma, train.astype(dtype)


def _train_array(train):
    if isinstance(train, EmpiricalDenoiser):
        return train.train
    return float_array(train, "train", ndim=2)


def normalized_nn_distance(x: Float[ArrayLike, "*batch d"], sigma: Float[ArrayLike, "*#batch"],
                           train: Float[ArrayLike, "n d"], *,
                           chunk_size: int = 4096) -> Float[Array, "*batch"]:
    r"""Distance to the nearest training point in units of the noise radius.

    .. math:: \rho(x, \sigma) = \frac{\min_i |x - y_i|}{\sigma \sqrt d}

    For a noisy training sample ``x = y_j + sigma eps`` (``eps ~ N(0, I_d)``),
    ``|x - y_j| ~ sigma sqrt(d)``, so ``rho ~ 1`` while ``y_j`` is the nearest point (small
    sigma) and ``rho < 1`` once other points come closer (large sigma). States with ``rho``
    far from the noisy-train values lie outside the domain the denoiser was trained on.

    Args:
      x: ``[..., d]`` states.
      sigma: scalar or array broadcastable to ``x.shape[:-1]``, values > 0.
      train: ``[N, d]`` training points (or an :class:`EmpiricalDenoiser` of them).
      chunk_size: as in :func:`nearest_neighbors`.

    Returns:
      ``[...]`` normalized distances.
    """
    train = _train_array(train)
    x, sigma, train = _check_states(x, sigma, train)
    flat = x.reshape(-1, x.shape[-1])
    nb = _neighbors_in(flat, train, 1, chunk_size, "train")
    return nb.dist[:, 0].reshape(x.shape[:-1]) / (sigma * math.sqrt(x.shape[-1]))


class Concentration(NamedTuple):
    """How concentrated the empirical posterior over training points is.

    Attributes:
      max_weight: ``[...]`` ``max_i w_i`` (1: one training point explains ``x``).
      effective_count: ``[...]`` ``1 / sum_i w_i^2``, from 1 (one point) to ``N`` (all).
    """

    max_weight: Array
    effective_count: Array


def _denoiser(train) -> EmpiricalDenoiser:
    if isinstance(train, EmpiricalDenoiser):
        return train
    return EmpiricalDenoiser(float_array(train, "train", ndim=2))


def posterior_concentration(x: Float[ArrayLike, "*batch d"], sigma: Float[ArrayLike, "*#batch"],
                            train) -> Concentration:
    r"""Concentration of the empirical posterior ``p(y_i | x_sigma = x)``.

    .. math::
        w_i = \operatorname{softmax}_i\Big(-\frac{|x - y_i|^2}{2\sigma^2}\Big), \qquad
        w_{\max} = \max_i w_i, \qquad N_{\mathrm{eff}} = \Big(\sum_i w_i^2\Big)^{-1}

    Computed by :meth:`EmpiricalDenoiser.posterior_stats` (streamed, exact at small sigma,
    without materialising the ``[..., N]`` weights). Noisy training samples at small sigma
    give ``w_max ~ 1``, ``N_eff ~ 1``: the optimal denoiser returns their source point.

    Args:
      x: ``[..., d]`` states.
      sigma: scalar or array broadcastable to ``x.shape[:-1]``, values > 0.
      train: ``[N, d]`` training points, or an :class:`EmpiricalDenoiser` (reused as is).

    Returns:
      :class:`Concentration` with ``[...]`` fields.
    """
    den = _denoiser(train)
    post = den.posterior_stats(x, sigma)
    return Concentration(post.max_weight, 1.0 / post.sum_sq_weights)


class SetDiagnostics(NamedTuple):
    """Quantile bands of one set of states, per noise level.

    Attributes:
      normalized_nn_distance: ``[K, Q]`` quantiles of :func:`normalized_nn_distance`.
      max_weight: ``[K, Q]`` quantiles of the largest posterior weight.
      effective_count: ``[K, Q]`` quantiles of ``1 / sum_i w_i^2``.
      num_states: number of states per noise level (``M``).
    """

    normalized_nn_distance: Array
    max_weight: Array
    effective_count: Array
    num_states: int

    def to_dict(self) -> dict:
        out = {f: _floats(getattr(self, f)) for f in self._fields[:3]}
        out["num_states"] = int(self.num_states)
        return out


class DomainDiagnostics(NamedTuple):
    """Inference-domain statistics of named sets of states over a noise grid.

    Attributes:
      sigmas: ``[K]`` noise levels.
      quantiles: ``[Q]`` quantile levels in ``[0, 1]``.
      sets: ``{name: SetDiagnostics}`` in the order given.
    """

    sigmas: Array
    quantiles: Array
    sets: dict

    def to_dict(self) -> dict:
        """Plain lists, ready for ``json.dump``."""
        return {"sigmas": _floats(self.sigmas), "quantiles": _floats(self.quantiles),
                "sets": {name: s.to_dict() for name, s in self.sets.items()}}

    def to_json(self, **extra) -> str:
        """JSON text of :meth:`to_dict` plus any extra metadata keys."""
        return json.dumps({**extra, **self.to_dict()}, indent=2)


@jit
def _distance_to_rows(x, train, index):
    """``|x - train[index]|`` for ``x [..., d]``, ``index [...]``, accurate to a few ulps."""
    rows = jnp.take(train, index.reshape(-1), axis=0, mode="clip").reshape(x.shape)
    return jnp.sqrt(jnp.maximum(exact_sq_dist_diff(x, rows, x), 0.0))


def _check_sigmas(sigmas):
    sigmas = float_array(sigmas, "sigmas", ndim=1)
    values = np.asarray(sigmas)
    if not np.all(values > 0):
        raise ValueError(f"sigmas: expected values > 0, got min {float(values.min())!r}")
    return sigmas


def domain_diagnostics(train, sigmas: Float[ArrayLike, " k"],
                       states: Float[ArrayLike, "k m d"] | Mapping[str, Any], *,
                       quantiles: Sequence[float] = (0.1, 0.5, 0.9)) -> DomainDiagnostics:
    r"""Quantile bands of three inference-domain statistics, per set and noise level.

    For states ``x`` at noise level ``sigma_k`` and the training set ``{y_i}``:

    .. math::
        \rho = \frac{\min_i |x - y_i|}{\sigma_k \sqrt d}, \qquad
        w_{\max} = \max_i w_i, \qquad N_{\mathrm{eff}} = \Big(\sum_i w_i^2\Big)^{-1},

    with ``w`` the empirical posterior (:func:`posterior_concentration`). Noisy training
    samples (:func:`noisy_states` of ``train``) define the domain the model was trained on;
    noisy validation samples and the states of sampling trajectories at the same sigmas
    (a trajectory's ``x[:-1]`` with its ``sigma[:-1]``) are compared with it. Claim C3:
    trajectory states sit far from that domain (``rho`` unlike noisy-train, posterior
    spread over many points) at intermediate sigma.

    Args:
      train: ``[N, d]`` training points, or an :class:`EmpiricalDenoiser` of them.
      sigmas: ``[K]`` noise levels, > 0.
      states: ``[K, M, d]`` states (``states[k]`` at ``sigmas[k]``), named ``"states"``, or a
        mapping ``{name: [K, M_name, d]}``.
      quantiles: levels in ``[0, 1]`` of the reported bands.

    Returns:
      :class:`DomainDiagnostics`; ``.sets[name].max_weight[k]`` etc. are ``[Q]`` quantiles,
      ``.to_dict()`` is JSON-serializable.

    Example:
      >>> k_train, k_val, k_far = jax.random.split(jax.random.PRNGKey(0), 3)
      >>> train = jax.random.normal(k_train, (64, 4))
      >>> val = jax.random.normal(k_val, (64, 4))
      >>> sig = jnp.array([0.01, 0.3])
      >>> diag = domain_diagnostics(train, sig, {
      ...     "train": noisy_states(k_train, train, sig),
      ...     "val": noisy_states(k_val, val, sig),
      ...     "far": 5.0 + jax.random.normal(k_far, (2, 16, 4))})
      >>> diag.sets["far"].normalized_nn_distance.shape  # [K, Q]: 10%, 50%, 90% quantiles
      (2, 3)
      >>> [round(float(m)) for m in diag.sets["train"].normalized_nn_distance[:, 1]]
      [1, 1]
    """
    den = _denoiser(train)
    train = den.train
    sigmas = _check_sigmas(sigmas)
    q = np.asarray(quantiles, np.float64)
    if q.ndim != 1 or q.size == 0 or not np.all(np.isfinite(q)) or np.any((q < 0) | (q > 1)):
        raise ValueError(f"quantiles: expected a non-empty sequence of levels in [0, 1], "
                         f"got {quantiles!r}")
    if isinstance(states, Mapping):
        if not states:
            raise ValueError("states: expected an array or a non-empty mapping, got {}")
        named = dict(states)
    else:
        named = {"states": states}
    k_len, dim = sigmas.shape[0], train.shape[1]
    checked = {}
    for name, s in named.items():
        if not isinstance(name, str):
            raise ValueError(f"states: expected string names, got {name!r}")
        label = "states" if name == "states" and len(named) == 1 else f"states[{name!r}]"
        s = float_array(s, label, ndim=3)
        if s.shape[0] != k_len or s.shape[2] != dim:
            raise ValueError(f"{label}: expected shape [{k_len}, M, {dim}] (one row of states "
                             f"per sigma, d of train), got {shape_str(s.shape)}")
        checked[name] = s
    dtype = _common_dtype(train, *checked.values())
    qj = jnp.asarray(q, dtype)
    train = train.astype(dtype)
    # All sets in one batch of queries [K, sum M, d]: one compiled program per call.
    sizes = [int(s.shape[1]) for s in checked.values()]
    allx = jnp.concatenate([s.astype(dtype) for s in checked.values()], axis=1)
    sig = jnp.broadcast_to(sigmas.astype(dtype)[:, None], allx.shape[:2])
    post = den.posterior_stats(allx, sig)
    if den.num_exact > 0:  # the posterior's nearest point is the exact nearest neighbour
        dist = _distance_to_rows(allx, train, post.nearest)
    else:
        dist = _neighbors_in(allx.reshape(-1, dim), train, 1, 4096,
                             "train").dist[:, 0].reshape(allx.shape[:2])
    stats = [np.asarray(v, np.float64) for v in
             (dist / (sig * math.sqrt(dim)), post.max_weight, 1.0 / post.sum_sq_weights)]
    sets, start = {}, 0
    for name, size in zip(checked, sizes, strict=True):
        # Linear interpolation between order statistics (monotone in q), on the host.
        bands = [jnp.asarray(np.quantile(v[:, start:start + size], q, axis=1).T, dtype)
                 for v in stats]  # [K, Q]
        sets[name] = SetDiagnostics(*bands, size)
        start += size
    return DomainDiagnostics(sigmas, qj, sets)


@jit
def _noisy_states(key, data, sigmas, draw):
    n, dim = data.shape
    index = jnp.arange(n, dtype=jnp.uint32)
    grid = jnp.arange(sigmas.shape[0], dtype=jnp.uint32)
    eps = jax.vmap(lambda k: jax.vmap(
        lambda i: example_noise(key, i, k, draw, dim, data.dtype))(index))(grid)
    return data[None, :, :] + sigmas[:, None, None] * eps


def noisy_states(key: jax.Array, data: Float[ArrayLike, "n d"],
                 sigmas: Float[ArrayLike, " k"], *, draw: int = 0) -> Float[Array, "k n d"]:
    r"""Forward-noised copies of ``data`` at every noise level: the training-time inputs.

    .. math:: x_{k,i} = y_i + \sigma_k\, \epsilon_{k,i}, \qquad
              \epsilon_{k,i} = \texttt{example\_noise}(key, i, k, r, d)

    The noise follows :func:`jaxgap.losses.example_noise` (common random numbers: a
    function of ``(key, i, k, r)`` only, with ``r = draw``), so these are exactly the noisy
    queries the denoising loss of :mod:`jaxgap.losses` evaluates with the same key.

    Args:
      key: PRNG key.
      data: ``[n, d]`` clean points (training or validation set).
      sigmas: ``[K]`` noise levels, > 0.
      draw: noise draw index ``r >= 0``.

    Returns:
      ``[K, n, d]`` noisy states; ``out[k]`` is at ``sigmas[k]``.
    """
    key = prng_key(key)
    data = float_array(data, "data", ndim=2)
    data = data.astype(_common_dtype(data))
    sigmas = _check_sigmas(sigmas).astype(data.dtype)
    draw = positive_int(draw, "draw", minimum=0)
    return _noisy_states(key, data, sigmas, jnp.uint32(draw))


def trajectory_domain(key: jax.Array, train, val: Float[ArrayLike, "v d"],
                      sigmas: Float[ArrayLike, " k"],
                      trajectories: Mapping[str, Any], *, num: int,
                      quantiles: Sequence[float] = QUANTILES) -> DomainDiagnostics:
    """Inference-domain diagnostics of trajectories against noisy train and val states.

    Noisy training states (the first ``num`` training points, noised with the key's
    ``NOISY_TRAIN`` stream) and noisy validation states (``NOISY_VAL`` stream) at
    ``sigmas`` are compared with every set of trajectory states
    (:func:`domain_diagnostics`).

    Args:
      key: PRNG key of the noisy states (a sampling key; its named streams are used).
      train: ``[N, d]`` training points or an :class:`~jaxgap.denoisers.EmpiricalDenoiser`
        of them (reused for the posterior statistics).
      val: ``[V, d]`` validation points.
      sigmas: ``[K]`` noise levels of the trajectory states.
      trajectories: ``{name: [K, M, d]}`` states at ``sigmas``.
      num: at most this many noisy train / val states per level.
      quantiles: band levels.

    Returns:
      :class:`DomainDiagnostics` with sets ``noisy_train``, ``noisy_val`` and the
      trajectory sets, in that order.

    Example:
      >>> k_train, k_val = jax.random.split(jax.random.PRNGKey(1))
      >>> train = jax.random.normal(k_train, (32, 3))
      >>> val = jax.random.normal(k_val, (32, 3))
      >>> sig = jnp.array([2.0, 0.5])
      >>> diag = trajectory_domain(jax.random.PRNGKey(0), train, val, sig,
      ...                          {"far": jnp.full((2, 8, 3), 10.0)}, num=16)
      >>> list(diag.sets), domain_exits(diag, "far")
      (['noisy_train', 'noisy_val', 'far'], ['farther', 'farther'])
    """
    den = _denoiser(train)
    positive_int(num, "num")
    states = {
        "noisy_train": noisy_states(_streams.stream(key, _streams.NOISY_TRAIN),
                                    den.train[:num], sigmas),
        "noisy_val": noisy_states(_streams.stream(key, _streams.NOISY_VAL), val[:num], sigmas),
        **trajectories,
    }
    return domain_diagnostics(den, sigmas, states, quantiles=quantiles)


def domain_exits(diag: DomainDiagnostics, name: str = "trajectories") -> list[str | None]:
    """Per sigma: ``"farther"`` / ``"closer"`` where the set ``name``'s median normalized
    nearest-neighbour distance lies above / below the noisy-train band (its lowest to highest
    quantile), else None.

    Args:
      diag: diagnostics holding a ``noisy_train`` set and the set ``name``.
      name: the set to judge.

    Returns:
      ``[K]`` directions, in the order of ``diag.sigmas``.
    """
    q = np.asarray(diag.quantiles, np.float64)
    lo, hi, mid = int(np.argmin(q)), int(np.argmax(q)), int(np.argmin(np.abs(q - 0.5)))
    ref = np.asarray(diag.sets["noisy_train"].normalized_nn_distance, np.float64)
    med = np.asarray(diag.sets[name].normalized_nn_distance, np.float64)[:, mid]
    return ["farther" if m > ref[k, hi] else "closer" if m < ref[k, lo] else None
            for k, m in enumerate(med)]


def exit_ranges(sigmas: Sequence[float],
                exits: Sequence[str | None]) -> list[tuple[float, float, str]]:
    """Runs of neighbouring sigmas (ascending) with the same exit direction.

    Args:
      sigmas: ``[K]`` noise levels.
      exits: ``[K]`` directions of :func:`domain_exits`.

    Returns:
      ``(first sigma, last sigma, direction)`` per run, ascending.

    Example:
      >>> exit_ranges([3.0, 1.0, 0.3, 0.1], ["farther", "farther", None, "closer"])
      [(0.1, 0.1, 'closer'), (1.0, 3.0, 'farther')]
    """
    s = np.asarray(sigmas, np.float64)
    order = np.argsort(s)
    runs: list[list] = []
    for k in order:
        e = exits[k]
        if e is None:
            if runs and runs[-1][2] is not None:
                runs.append([s[k], s[k], None])
            continue
        if runs and runs[-1][2] == e:
            runs[-1][1] = s[k]
        else:
            runs.append([s[k], s[k], e])
    return [(float(a), float(b), e) for a, b, e in runs if e is not None]

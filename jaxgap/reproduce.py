r"""``jaxgap reproduce``: the whole study end to end, in five resumable stages.

Stages (run in this order; each writes its files into the output folder and, last, its
``<stage>.json``; a stage whose JSON exists is skipped on ``--resume``):

1. ``closed_form``: gap curves of the empirical (optimal) and Gaussian denoisers of the
   training set on the study's log grid (``closed_form.json``, ``gap_closed_form.png``).
2. ``train``: the default network (EDM-preconditioned MLP) trained on the same training set
   with the per-sigma gap recorded over training (:func:`jaxgap.train.train_and_evaluate`
   in ``train/``: orbax checkpoints, so a killed run continues from its last checkpoint;
   ``train.json``, ``gap_over_training.png``).
3. ``sample``: first the position-error toy model :class:`~jaxgap.theory.PositionError`
   is fitted to the network's final EMA gap curve (:func:`~jaxgap.theory.fit_delta`; the
   fit is needed to sample from the toy model), then the empirical denoiser, the network
   and the fitted toy model each draw samples from the same initial noise; memorized
   fractions by the 1/3 rule with bootstrap standard errors (``samples.npz``,
   ``samples_<sampler>.png`` for image data, ``sample.json``).
4. ``domain``: inference-domain diagnostics (normalized nearest-training-point distance,
   posterior concentration) of noisy training states, noisy validation states and every
   sampler's trajectory states at the sampler's noise levels (``domain.json``,
   ``domain.png``).
5. ``toy``: the toy-model fit figure (network, fitted toy model and optimal denoiser gap
   curves) and the toy model's field diagnostics: the effective number of training points
   its posterior spreads over on noisy validation states, against the optimal denoiser's
   (``toy.json``, ``toy_fit.png``).

Then ``results.json`` (settings, per-stage timings, the key numbers and the ``claims``
table), ``report.md`` and a self-contained ``report.html`` are written from the stages'
results. Every file is written atomically (temporary name, then rename), so a run killed at
any moment leaves no partial result under a final name; on ``--resume`` a killed stage is
redone from its start (the training stage from its last checkpoint).

Example::

    from jaxgap.reproduce import default_config, run
    results = run(default_config("digits", quick=True), "runs/quick")
    [(c["claim"], c["supported"]) for c in results["claims"]]
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxgap import __version__, metrics, noise, sampling
from jaxgap import train as train_mod
from jaxgap._checks import positive_float, positive_int
from jaxgap.denoisers import EmpiricalDenoiser, GaussianDenoiser
from jaxgap.losses import gap_curve
from jaxgap.report import report as rep
from jaxgap.report.plots import (
    plot_domain_diagnostics,
    plot_gap_curves,
    plot_gap_over_training,
    plot_sample_grid,
)
from jaxgap.theory import PositionError, fit_delta

__all__ = [
    "CLAIM_CRITERIA",
    "STAGES",
    "Memorization",
    "ReproduceConfig",
    "default_config",
    "domain_exits",
    "evaluate_claims",
    "exit_ranges",
    "field_sharpness",
    "measure_memorization",
    "run",
    "trajectory_domain",
]

STAGES = ("closed_form", "train", "sample", "domain", "toy")
STAGE_TITLES = {
    "closed_form": "closed-form gap curves",
    "train": "train the network",
    "sample": "fit toy model, sample, memorization",
    "domain": "inference-domain diagnostics",
    "toy": "toy-model fit and field",
}
SAMPLERS = ("empirical", "network", "toy_model")
SETTINGS = "settings.json"
RESULTS = "results.json"
THRESHOLD = 1.0 / 3.0  # the 1/3 rule of the copy ratio
QUANTILES = (0.1, 0.5, 0.9)  # bands of the inference-domain diagnostics
SIGMA_MIN, SIGMA_MAX = 0.002, 80.0

# Claim thresholds (stated in the report next to the numbers they judge).
INTERMEDIATE = (0.1, 5.0)  # "intermediate sigma" for the domain claim
PEAK_FACTOR = 10.0  # the net's gap peak must lie at >= PEAK_FACTOR * smallest grid sigma
NET_SMALL_FRACTION = 0.5  # ... and its gap at the smallest sigma <= this fraction of its max
EMP_SMALL_FRACTION = 0.9  # the optimal denoiser's gap at the smallest sigma >= this * its max
COPY_HIGH, COPY_LOW = 0.9, 0.1  # memorized fractions: optimal >= high, network <= low
SHARP_RATIO = 0.5  # toy field's sharpness (max secant slope) <= this * D*'s
SEGMENT_STEPS = 33  # steps of the segments between training neighbours (odd: a jump at the
#                     midpoint falls inside one step and shows as a slope of 33)
GAP_SMALL_RATIO = 0.5  # toy gap at the smallest sigma <= this * the optimal denoiser's

CLAIM_CRITERIA = {
    "gap_grows": "the network's largest EMA gap (over sigma) at the final evaluation exceeds "
                 "the one at the first evaluation after step 0 by more than 2 standard errors "
                 "(se of the difference, the two taken as independent)",
    "gap_peak": f"the network's final EMA gap peaks at sigma >= {PEAK_FACTOR:g} x the grid's "
                f"smallest sigma and its gap there is <= {NET_SMALL_FRACTION:g} x its maximum; "
                f"the optimal denoiser's gap at the smallest sigma is >= "
                f"{EMP_SMALL_FRACTION:g} x its maximum",
    "copying": f"memorized fraction (copy ratio < 1/3) of the optimal denoiser's samples >= "
               f"{COPY_HIGH:g} and of the network's <= {COPY_LOW:g}",
    "domain": f"at some sampler noise level sigma in [{INTERMEDIATE[0]:g}, "
              f"{INTERMEDIATE[1]:g}] the median normalized nearest-training-point distance "
              f"of the network's trajectory states lies above the 90% quantile of noisy "
              f"training states",
    "smoothing": f"the fitted toy model has delta > 0 and, against the optimal denoiser: a "
                 f"lower memorized fraction (by > 2 se), a gap at the smallest sigma <= "
                 f"{GAP_SMALL_RATIO:g} x the optimal denoiser's, and a field sharpness <= "
                 f"{SHARP_RATIO:g} x the optimal denoiser's at the smallest sampler sigma "
                 f"(sharpness: the largest secant slope |D(x_t+1) - D(x_t)| / |x_t+1 - x_t| "
                 f"along the segment from a training point to its nearest training neighbour "
                 f"in {SEGMENT_STEPS} steps, median over pairs; a jump from one point to the "
                 f"other shows as {SEGMENT_STEPS}, the identity as 1)",
}
CLAIM_TEXT = {
    "gap_grows": "C1: the network's generalization gap grows with training",
    "gap_peak": "C1: the network's gap peaks at intermediate sigma, the optimal "
                "denoiser's at small sigma",
    "copying": "C1: the optimal denoiser copies training images, the network does not",
    "domain": "C3: sampling trajectories leave the domain of noisy training samples at "
              "intermediate sigma",
    "smoothing": "C2: model error smooths the field (fitted position-error toy model vs "
                 "the optimal denoiser)",
}


# ------------------------------------------------------------------------------------------
# Settings
# ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ReproduceConfig:
    """Everything that defines a ``jaxgap reproduce`` run (read only at the entry point).

    Attributes:
      data: a :func:`jaxgap.data.load` name.
      quick: the small settings of :func:`default_config` (recorded for the report).
      seed: the one seed (data split, network, noise, sampling).
      train_size: training examples (the closed forms and the network share them).
      val_size: validation examples evaluated (``None``: all).
      steps, batch_size, lr, width, depth, eval_every, ckpt_every: the MLP and its training
        (:class:`jaxgap.train.TrainConfig`).
      num_sigmas: the log grid ``[0.002, 80]`` of every gap curve (closed forms, training
        evaluations, toy-model fit).
      num_noise: noise draws per example for the closed-form curves and the fit.
      eval_num_noise: noise draws per example in the training evaluations.
      num_samples: samples per sampler.
      sample_steps: Heun steps (EDM schedule); also the diagnostics' noise levels.
      num_bootstrap: bootstrap resamples of the memorized fractions.
      fit_grid: coarse grid size of the toy-model fit (0 and ``fit_grid - 1`` geometric
        values in ``[0.01, 3]``; None: :func:`~jaxgap.theory.fit_delta`'s default grid).
      fit_refine: golden-section refinements of the fit.
    """

    data: str = "digits"
    quick: bool = False
    seed: int = 0
    train_size: int | None = 512
    val_size: int | None = 300
    steps: int = 8000
    batch_size: int = 128
    lr: float = 1e-3
    width: int = 256
    depth: int = 4
    eval_every: int = 1000
    ckpt_every: int = 1000
    num_sigmas: int = 24
    num_noise: int = 2
    eval_num_noise: int = 1
    num_samples: int = 256
    sample_steps: int = 18
    num_bootstrap: int = 1000
    fit_grid: int | None = None
    fit_refine: int = 6

    def validate(self) -> ReproduceConfig:
        """Check every field; raise ``ValueError`` naming the first bad one."""
        if not isinstance(self.data, str) or not self.data:
            raise ValueError(f"data: expected a dataset name, got {self.data!r}")
        minimum = dict(num_sigmas=3, sample_steps=2, num_bootstrap=2, seed=0, fit_refine=0)
        for name in ("steps", "batch_size", "width", "depth", "eval_every", "ckpt_every",
                     "num_noise", "eval_num_noise", "num_samples", "num_bootstrap",
                     "num_sigmas", "sample_steps", "seed", "fit_refine"):
            positive_int(getattr(self, name), name, minimum=minimum.get(name, 1))
        for name, low in (("train_size", 2), ("val_size", 2), ("fit_grid", 2)):
            if getattr(self, name) is not None:
                positive_int(getattr(self, name), name, minimum=low)
        positive_float(self.lr, "lr")
        return self

    def train_config(self) -> train_mod.TrainConfig:
        """The :class:`~jaxgap.train.TrainConfig` of the training stage."""
        return train_mod.TrainConfig(
            data=self.data, model="mlp", train_size=self.train_size, steps=self.steps,
            batch_size=self.batch_size, lr=self.lr, eval_every=self.eval_every,
            ckpt_every=self.ckpt_every, eval_sigmas=self.num_sigmas, sigma_min=SIGMA_MIN,
            sigma_max=SIGMA_MAX, eval_num_noise=self.eval_num_noise,
            eval_val_size=self.val_size, width=self.width, depth=self.depth,
            seed=self.seed).validate()


def default_config(data: str = "digits", *, quick: bool = False, seed: int = 0,
                   **overrides: Any) -> ReproduceConfig:
    """The study's settings: the default run (<= 15 min on 2 CPU cores) or ``quick``.

    The quick run is a smoke test of the whole pipeline (about a minute on 2 cores): a
    small network trained briefly, few samples; its claims table is computed the same way,
    so it shows what so little training does, not the paper's claims.

    Args:
      data: a :func:`jaxgap.data.load` name.
      quick: the small settings.
      seed: the run's seed.
      **overrides: any :class:`ReproduceConfig` field.
    """
    base: dict[str, Any] = dict(data=data, quick=bool(quick), seed=seed)
    if quick:
        base.update(train_size=64, val_size=128, steps=400, batch_size=64, width=64, depth=2,
                    eval_every=100, ckpt_every=100, num_sigmas=10, num_noise=1,
                    num_samples=48, sample_steps=8, num_bootstrap=200, fit_grid=6,
                    fit_refine=2)
    base.update(overrides)
    return ReproduceConfig(**base).validate()


# ------------------------------------------------------------------------------------------
# Shared with ``jaxgap sample``: memorization and inference-domain measurements
# ------------------------------------------------------------------------------------------

class Memorization(NamedTuple):
    """Copying measurements of a set of samples.

    Attributes:
      memorized: :class:`~jaxgap.metrics.MemorizedFraction` (fraction, bootstrap se).
      copy_ratio: ``[M]`` ``|x - NN_1| / |x - NN_2|`` over the training set.
      nearest: ``[M]`` index of each sample's nearest training point.
      to_train: ``[M]`` distance to the nearest training point.
      to_val: ``[M]`` distance to the nearest validation point.
      threshold: the copy-ratio threshold (1/3).
      num_bootstrap: bootstrap resamples behind ``memorized.se``.
    """

    memorized: Any
    copy_ratio: np.ndarray
    nearest: np.ndarray
    to_train: np.ndarray
    to_val: np.ndarray
    threshold: float
    num_bootstrap: int

    def summary(self) -> dict:
        """Plain floats, ready for ``json.dump``."""
        return {
            "threshold": self.threshold,
            "memorized_fraction": float(self.memorized.fraction),
            "memorized_fraction_se": float(self.memorized.se),
            "num_bootstrap": self.num_bootstrap,
            "copy_ratio_mean": float(np.mean(self.copy_ratio)),
            "copy_ratio_median": float(np.median(self.copy_ratio)),
            "mean_distance_to_train": float(np.mean(self.to_train)),
            "mean_distance_to_val": float(np.mean(self.to_val)),
            "closer_to_train": float(np.mean(self.to_train < self.to_val)),
        }


def measure_memorization(samples, train, val, key, *, threshold: float = THRESHOLD,
                         num_bootstrap: int = 1000) -> Memorization:
    """Memorized fraction (1/3 rule, bootstrap se), copy ratios and nearest distances.

    Args:
      samples: ``[M, d]`` generated samples.
      train: ``[N, d]`` training points, ``N >= 2``.
      val: ``[V, d]`` validation points.
      key: PRNG key of the bootstrap.
      threshold: copy-ratio threshold.
      num_bootstrap: bootstrap resamples.

    Returns:
      :class:`Memorization`.
    """
    train = jnp.asarray(train)
    mem = metrics.memorized_fraction(samples, train, threshold=threshold, key=key,
                                     num_bootstrap=num_bootstrap)
    ratio = np.asarray(metrics.copy_ratio(samples, train), np.float64)
    # The program of copy_ratio's two nearest neighbours is re-used (one compile less than
    # metrics.distance_to_sets, same distances).
    nb_train = metrics.nearest_neighbors(samples, train, k=2)
    nearest = np.asarray(nb_train.index[:, 0])
    to_train = np.asarray(nb_train.dist[:, 0], np.float64)
    to_val = np.asarray(metrics.nearest_neighbors(samples, val, k=1).dist[:, 0], np.float64)
    return Memorization(mem, ratio, nearest, to_train, to_val, float(threshold),
                        int(num_bootstrap))


def trajectory_domain(train, key, sigmas, train_points, val_points,
                      trajectories: Mapping[str, Any], *, num: int,
                      quantiles: Sequence[float] = QUANTILES):
    """Inference-domain diagnostics of trajectories against noisy train and val states.

    Noisy training states (the first ``num`` training points noised with
    ``fold_in(key, 2)``) and noisy validation states (``fold_in(key, 3)``) at ``sigmas``
    are compared with every trajectory set (:func:`jaxgap.metrics.domain_diagnostics`).

    Args:
      train: ``[N, d]`` training points or an :class:`~jaxgap.denoisers.EmpiricalDenoiser`
        of them (its posterior defines the concentration statistics).
      key: PRNG key of the noisy states.
      sigmas: ``[K]`` noise levels of the trajectory states.
      train_points: ``[N, d]`` training points.
      val_points: ``[V, d]`` validation points.
      trajectories: ``{name: [K, M, d]}`` states at ``sigmas``.
      num: at most this many noisy train / val states per level.
      quantiles: band levels.

    Returns:
      :class:`~jaxgap.metrics.DomainDiagnostics` with sets ``noisy_train``, ``noisy_val``
      and the trajectory sets, in that order.
    """
    states = {
        "noisy_train": metrics.noisy_states(jax.random.fold_in(key, 2), train_points[:num],
                                            sigmas),
        "noisy_val": metrics.noisy_states(jax.random.fold_in(key, 3), val_points[:num],
                                          sigmas),
        **trajectories,
    }
    return metrics.domain_diagnostics(train, sigmas, states, quantiles=quantiles)


def domain_exits(diag, name: str = "trajectories") -> list[str | None]:
    """Per sigma: ``"farther"``/``"closer"`` where the set ``name``'s median normalized NN
    distance lies above/below the noisy-train band (lowest to highest quantile), else None."""
    q = np.asarray(diag.quantiles, np.float64)
    lo, hi, mid = int(np.argmin(q)), int(np.argmax(q)), int(np.argmin(np.abs(q - 0.5)))
    ref = np.asarray(diag.sets["noisy_train"].normalized_nn_distance, np.float64)
    med = np.asarray(diag.sets[name].normalized_nn_distance, np.float64)[:, mid]
    return ["farther" if m > ref[k, hi] else "closer" if m < ref[k, lo] else None
            for k, m in enumerate(med)]


def exit_ranges(sigmas, exits) -> list[tuple[float, float, str]]:
    """Runs of neighbouring sigmas (ascending) with the same exit direction."""
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


# ------------------------------------------------------------------------------------------
# Claims
# ------------------------------------------------------------------------------------------

def _fmt(v, digits: int = 3) -> str:
    return "n/a" if v is None or not math.isfinite(float(v)) else f"{float(v):.{digits}g}"


def _val_context(domain: Mapping[str, Any], sigmas: Sequence[float]) -> str:
    """Context for the domain claim: are noisy validation states outside the band too?"""
    if "noisy_val" not in domain or not sigmas:
        return ""
    val = {round(float(s), 12) for s in domain["noisy_val"]["farther_sigmas"]}
    both = [s for s in sigmas if round(s, 12) in val]
    return (f" (noisy validation states are above the band too at {len(both)} of these)"
            if both else " (noisy validation states are not)")


def evaluate_claims(numbers: Mapping[str, Any]) -> list[dict]:
    """The claims table of a run, judged from its measured numbers.

    Args:
      numbers: the key numbers of a run (the ``results.json`` sections): ``training``
        (``gap_max_first``, ``gap_max_first_se``, ``first_step``, ``gap_max_last``,
        ``gap_max_last_se``, ``last_step``, ``peak_sigma``, ``gap_at_sigma_min``),
        ``closed_form`` (``empirical``: ``gap_max``, ``gap_at_sigma_min``, ``peak_sigma``;
        ``sigma_min``), ``memorization`` (``{sampler: {memorized_fraction,
        memorized_fraction_se}}`` for ``empirical``, ``network``, ``toy_model``),
        ``domain`` (``network``: ``farther_sigmas``), ``fit`` (``delta``) and ``toy_field``
        (``sharpness_empirical``, ``sharpness_toy``, ``sigma``, ``toy_gap_at_sigma_min``).

    Returns:
      One dict per claim, in the order of :data:`CLAIM_CRITERIA`: ``id``, ``claim``,
      ``criterion``, ``measured`` (text with the numbers) and ``supported`` (bool).
    """
    out = []

    def add(cid: str, measured: str, supported: bool):
        out.append({"id": cid, "claim": CLAIM_TEXT[cid], "criterion": CLAIM_CRITERIA[cid],
                    "measured": measured, "supported": bool(supported)})

    tr = numbers["training"]
    if tr.get("first_step") is None or tr["first_step"] == tr["last_step"]:
        add("gap_grows", "fewer than two evaluations after step 0: growth cannot be judged",
            False)
    else:
        diff = tr["gap_max_last"] - tr["gap_max_first"]
        se = math.hypot(tr["gap_max_first_se"], tr["gap_max_last_se"])
        z = diff / se if se > 0 else math.copysign(math.inf, diff)
        add("gap_grows", f"largest EMA gap {_fmt(tr['gap_max_first'])} +- "
            f"{_fmt(tr['gap_max_first_se'], 2)} at step {tr['first_step']} -> "
            f"{_fmt(tr['gap_max_last'])} +- {_fmt(tr['gap_max_last_se'], 2)} at step "
            f"{tr['last_step']} (difference {_fmt(diff)}, {_fmt(z, 2)} se)",
            diff > 2 * se)

    cf = numbers["closed_form"]
    emp = cf["empirical"]
    s_min = cf["sigma_min"]
    net_frac = tr["gap_at_sigma_min"] / tr["gap_max_last"] if tr["gap_max_last"] > 0 else math.inf
    emp_frac = emp["gap_at_sigma_min"] / emp["gap_max"] if emp["gap_max"] > 0 else -math.inf
    add("gap_peak", f"network: peak at sigma = {_fmt(tr['peak_sigma'])} "
        f"({_fmt(tr['peak_sigma'] / s_min)} x sigma_min = {_fmt(s_min)}), gap at sigma_min = "
        f"{_fmt(net_frac, 2)} x its max; optimal denoiser: peak at sigma = "
        f"{_fmt(emp['peak_sigma'])}, gap at sigma_min = {_fmt(emp_frac, 3)} x its max",
        tr["peak_sigma"] >= PEAK_FACTOR * s_min and net_frac <= NET_SMALL_FRACTION
        and emp_frac >= EMP_SMALL_FRACTION)

    mem = numbers["memorization"]
    me, mn = mem["empirical"], mem["network"]
    add("copying", f"memorized fraction: optimal denoiser {_fmt(me['memorized_fraction'])} "
        f"+- {_fmt(me['memorized_fraction_se'], 2)}, network "
        f"{_fmt(mn['memorized_fraction'])} +- {_fmt(mn['memorized_fraction_se'], 2)}",
        me["memorized_fraction"] >= COPY_HIGH and mn["memorized_fraction"] <= COPY_LOW)

    far = sorted(float(s) for s in numbers["domain"]["network"]["farther_sigmas"])
    inside = [s for s in far if INTERMEDIATE[0] <= s <= INTERMEDIATE[1]]
    add("domain", "network trajectories above the noisy-train band at "
        + (f"{len(inside)} sampler sigma(s) in the range ({', '.join(_fmt(s) for s in inside)})"
           if inside else "no sampler sigma in the range")
        + f"; at {len(far)} sigma(s) overall" + _val_context(numbers["domain"], inside),
        bool(inside))

    delta = float(numbers["fit"]["delta"])
    mt = mem["toy_model"]
    field = numbers["toy_field"]
    mem_se = math.hypot(me["memorized_fraction_se"], mt["memorized_fraction_se"])
    lower_copy = me["memorized_fraction"] - mt["memorized_fraction"] > 2 * mem_se
    gap_ratio = (field["toy_gap_at_sigma_min"] / emp["gap_at_sigma_min"]
                 if emp["gap_at_sigma_min"] > 0 else math.inf)
    sharp_ratio = (field["sharpness_toy"] / field["sharpness_empirical"]
                   if field["sharpness_empirical"] > 0 else math.inf)
    add("smoothing", f"fitted delta = {_fmt(delta)}; memorized fraction toy "
        f"{_fmt(mt['memorized_fraction'])} +- {_fmt(mt['memorized_fraction_se'], 2)} vs optimal "
        f"{_fmt(me['memorized_fraction'])}; gap at sigma_min toy/optimal = {_fmt(gap_ratio, 2)}; "
        f"sharpness at sigma = {_fmt(field['sigma'])}: toy {_fmt(field['sharpness_toy'])} vs "
        f"optimal {_fmt(field['sharpness_empirical'])} ({_fmt(sharp_ratio, 3)} x)",
        delta > 0 and lower_copy and gap_ratio <= GAP_SMALL_RATIO
        and sharp_ratio <= SHARP_RATIO)
    return out


# ------------------------------------------------------------------------------------------
# The pipeline
# ------------------------------------------------------------------------------------------

def field_sharpness(denoiser, train, sigmas, *, num_pairs: int = 64,
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
      denoiser: any ``D(x, sigma)``.
      train: ``[N, d]`` training points, ``N >= 2``.
      sigmas: ``[K]`` noise levels.
      num_pairs: at most this many segments.
      num_steps: steps per segment ``S >= 1``.

    Returns:
      ``[K, P]`` float64 slopes ``s_i(sigma_k)``.
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
    nb = metrics.nearest_neighbors(train[:p], train, k=2)
    index = np.asarray(nb.index)
    # The nearest other point: column 1, unless a duplicate put the point itself there.
    other = np.where(index[:, 0] == np.arange(p), index[:, 1], index[:, 0])
    a, b = train[:p], train[other]
    t = np.linspace(0.0, 1.0, num_steps + 1, dtype=np.float32)
    x = a[:, None, :] + t[None, :, None] * (b - a)[:, None, :]  # [P, T, d]
    xs = jnp.broadcast_to(jnp.asarray(x)[None], (sig.size, *x.shape))
    sig_b = jnp.broadcast_to(jnp.asarray(sig)[:, None, None], xs.shape[:-1])
    out = np.asarray(denoiser(xs, sig_b), np.float64)
    step = np.linalg.norm((b - a).astype(np.float64), axis=1) / num_steps  # [P]
    slope = np.linalg.norm(np.diff(out, axis=2), axis=-1) / step[None, :, None]
    return slope.max(axis=2)


class _Ctx(NamedTuple):
    config: ReproduceConfig
    out: Path
    ds: Any
    val: np.ndarray
    sigmas: Any  # [K] the log grid of every gap curve
    key: jax.Array  # the evaluation key (common random numbers with the training evals)
    progress: bool | None


def _bar(ctx: _Ctx, total: int, desc: str):
    return tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True, leave=False,
                disable=None if ctx.progress is None else not ctx.progress)


def _png(plot: Callable, *args, **kw) -> bytes:
    buf = io.BytesIO()
    plot(*args, path=buf, **kw)
    return buf.getvalue()


def _bytes_writer(data: bytes) -> Callable:
    return lambda f: f.write(data)


def _json_bytes(doc) -> Callable:
    return rep.text_writer(json.dumps(rep.finite_or_none(doc), indent=2, allow_nan=False) + "\n")


def _curve_summary(sigmas, gap, gap_se) -> dict:
    s, g, se = (np.asarray(a, np.float64) for a in (sigmas, gap, gap_se))
    order = np.argsort(s)
    s, g, se = s[order], g[order], se[order]
    k = int(np.nanargmax(g))
    return {"peak_sigma": float(s[k]), "gap_max": float(g[k]), "gap_max_se": float(se[k]),
            "gap_at_sigma_min": float(g[0]), "gap_at_sigma_min_se": float(se[0])}


def _stage_closed_form(ctx: _Ctx, done: dict) -> tuple[dict, dict]:
    bar = _bar(ctx, 3, "closed form: empirical, Gaussian")
    curves = {}
    for name, den in (("empirical", EmpiricalDenoiser(ctx.ds.train)),
                      ("gaussian", GaussianDenoiser.from_data(ctx.ds.train))):
        c = gap_curve(den, ctx.ds.train, ctx.val, ctx.sigmas, ctx.key,
                      num_noise=ctx.config.num_noise)
        curves[name] = jax.block_until_ready(c).to_dict()
        bar.update(1)
    png = _png(plot_gap_curves, {"empirical (optimal)": curves["empirical"],
                                 "Gaussian (Wiener filter)": curves["gaussian"]},
               title=f"{ctx.ds.name}: closed-form denoisers (n_train = {ctx.ds.num_train})")
    bar.update(1)
    bar.close()
    doc = {"curves": curves, "sigma_min": float(np.min(np.asarray(ctx.sigmas))),
           **{name: _curve_summary(c["sigmas"], c["gap"], c["gap_se"])
              for name, c in curves.items()}}
    return doc, {"gap_closed_form.png": png}


def _net_rows(train_dir: Path):
    rows = train_mod.read_metrics(train_dir)
    if not rows:
        raise ValueError(f"out: no evaluations in {train_dir}")
    return rows


def _stage_train(ctx: _Ctx, done: dict) -> tuple[dict, dict]:
    tc = ctx.config.train_config()
    run_dir = ctx.out / "train"
    resume = (run_dir / train_mod.CONFIG).exists()
    train_mod.train_and_evaluate(tc, run_dir, resume=resume, progress=sys.stderr.isatty()
                                 if ctx.progress is None else ctx.progress)
    rows = _net_rows(run_dir)
    png = _png(plot_gap_over_training, rows, title=f"{ctx.ds.name} / MLP {tc.width}x{tc.depth}"
               f", n_train = {ctx.ds.num_train}: EMA gap over training")
    later = [r for r in rows if r["step"] > 0]
    first, last = (later[0] if later else None), rows[-1]

    def peak(r):
        return _curve_summary(r["sigmas"], r["ema_gap"], r["ema_gap_se"])

    lp = peak(last)
    doc = {"resumed": resume, "num_evaluations": len(rows),
           "first_step": first["step"] if first else None,
           "gap_max_first": peak(first)["gap_max"] if first else None,
           "gap_max_first_se": peak(first)["gap_max_se"] if first else None,
           "last_step": last["step"], "gap_max_last": lp["gap_max"],
           "gap_max_last_se": lp["gap_max_se"], "peak_sigma": lp["peak_sigma"],
           "gap_at_sigma_min": lp["gap_at_sigma_min"],
           "gap_max_by_step": [[r["step"], peak(r)["gap_max"]] for r in rows],
           "final_curve": {"sigmas": last["sigmas"], "train": last["ema_train"],
                           "val": last["ema_val"], "gap": last["ema_gap"],
                           "gap_se": last["ema_gap_se"]}}
    return doc, {"gap_over_training.png": png}


def _sample_key(ctx: _Ctx):
    return jax.random.fold_in(jax.random.PRNGKey(ctx.config.seed), 20)


def _stage_sample(ctx: _Ctx, done: dict) -> tuple[dict, dict]:
    cfg, ds = ctx.config, ctx.ds
    bar = _bar(ctx, 1 + 2 * len(SAMPLERS), "fit toy model")
    target = done["train"]["final_curve"]
    grid = (None if cfg.fit_grid is None else
            np.concatenate([[0.0], np.geomspace(0.01, 3.0, cfg.fit_grid - 1)]))
    fit = fit_delta(ds.train, ctx.val, target, ctx.key, deltas=grid, num_noise=cfg.num_noise,
                    num_refine=cfg.fit_refine)
    bar.update(1)
    dens = {"empirical": EmpiricalDenoiser(ds.train),
            "network": train_mod.load_denoiser(ctx.out / "train"),
            "toy_model": PositionError(ds.train, fit.delta)}
    key = _sample_key(ctx)  # one key: every sampler starts from the same noise
    arrays, mems, files = {}, {}, {}
    for name, den in dens.items():
        bar.set_description_str(f"sample: {name}")
        traj = sampling.sample(key, den, cfg.num_samples, ds.dim, num_steps=cfg.sample_steps,
                               return_trajectory=True)
        traj = jax.block_until_ready(traj)
        samples = np.asarray(traj.x[-1])
        bad = int(np.sum(~np.all(np.isfinite(samples), axis=1)))
        if bad:
            raise ValueError(f"{name}: sampling diverged: {bad} of {cfg.num_samples} samples "
                             "hold non-finite values")
        bar.update(1)
        mem = measure_memorization(samples, ds.train, ds.val, jax.random.fold_in(key, 1),
                                   num_bootstrap=cfg.num_bootstrap)
        mems[name] = mem.summary()
        arrays[f"{name}_x"] = np.asarray(traj.x)
        arrays[f"{name}_copy_ratio"] = mem.copy_ratio
        if ds.image_shape is not None:
            files[f"samples_{name}.png"] = _png(
                plot_sample_grid, samples, ds.train[mem.nearest], ds.image_shape,
                max_pairs=16, labels=[f"r={r:.2f}" for r in mem.copy_ratio],
                title=f"{name}: upper sample, lower nearest training image (r < 1/3: copy)")
        bar.update(1)
    arrays["sigma"] = np.asarray(traj.sigma)
    bar.close()

    def write_npz(f):
        np.savez(f, **arrays)

    # The scale of a generalizing sample: a held-out point's distance to the training set.
    ref = np.asarray(metrics.nearest_neighbors(ctx.val, ds.train, k=1).dist[:, 0], np.float64)
    doc = {"fit": fit.to_dict(), "memorization": mems,
           "val_mean_distance_to_train": float(np.mean(ref)), "num_samples": cfg.num_samples,
           "sample_steps": cfg.sample_steps, "method": "heun"}
    return doc, {"samples.npz": write_npz, **files}


def _stage_domain(ctx: _Ctx, done: dict) -> tuple[dict, dict]:
    cfg, ds = ctx.config, ctx.ds
    bar = _bar(ctx, 2, "domain diagnostics")
    with np.load(ctx.out / "samples.npz") as z:
        sig = z["sigma"][:-1]  # the trajectory states sit at the sampler's sigmas
        trajs = {name: z[f"{name}_x"][:-1] for name in SAMPLERS}
    diag = trajectory_domain(EmpiricalDenoiser(ds.train), _sample_key(ctx), sig, ds.train,
                             ds.val, trajs, num=cfg.num_samples)
    bar.update(1)
    png = _png(plot_domain_diagnostics, diag, title=f"{ds.name}: trajectory states vs noisy "
               f"train / val (n_train = {ds.num_train}, {cfg.num_samples} samples)")
    bar.update(1)
    bar.close()
    mid = int(np.argmin(np.abs(np.asarray(QUANTILES) - 0.5)))
    summary = {}
    for name in (*SAMPLERS, "noisy_val"):
        exits = domain_exits(diag, name)
        summary[name] = {
            "farther_sigmas": [float(s) for s, e in zip(sig, exits, strict=True)
                               if e == "farther"],
            "closer_sigmas": [float(s) for s, e in zip(sig, exits, strict=True)
                              if e == "closer"],
            "median_normalized_nn_distance": np.asarray(
                diag.sets[name].normalized_nn_distance, np.float64)[:, mid].tolist(),
        }
    for name in ("noisy_train",):
        summary[name] = {"median_normalized_nn_distance": np.asarray(
            diag.sets[name].normalized_nn_distance, np.float64)[:, mid].tolist()}
    doc = {"sigmas": [float(s) for s in sig], "summary": summary, "diagnostics": diag.to_dict()}
    return doc, {"domain.png": png}


def _stage_toy(ctx: _Ctx, done: dict) -> tuple[dict, dict]:
    cfg, ds = ctx.config, ctx.ds
    bar = _bar(ctx, 2, "toy model: field")
    fit = done["sample"]["fit"]
    sig = np.asarray(done["domain"]["sigmas"], np.float64)
    sig = np.sort(sig)
    toy = PositionError(ds.train, fit["delta"])
    states = metrics.noisy_states(jax.random.fold_in(_sample_key(ctx), 3),
                                  ctx.val[:cfg.num_samples], jnp.asarray(sig, jnp.float32))
    sig_b = jnp.broadcast_to(jnp.asarray(sig, jnp.float32)[:, None], states.shape[:2])
    neff = {name: np.median(np.asarray(metrics.posterior_concentration(states, sig_b, den)
                                       .effective_count, np.float64), axis=1).tolist()
            for name, den in (("empirical", EmpiricalDenoiser(ds.train)), ("toy_model", toy))}
    sharp = {name: np.median(field_sharpness(den, ds.train, sig), axis=1).tolist()
             for name, den in (("empirical", EmpiricalDenoiser(ds.train)), ("toy_model", toy))}
    bar.update(1)
    emp = done["closed_form"]["curves"]["empirical"]
    png = _png(plot_gap_curves, {
        "network (EMA, final)": done["train"]["final_curve"],
        f"toy model, delta = {fit['delta']:.3g}": fit["curve"],
        "empirical (optimal)": emp},
        title=f"{ds.name}: position-error toy model fitted to the network's gap")
    bar.update(1)
    bar.close()
    fc = fit["curve"]
    toy_summary = _curve_summary(fc["sigmas"], fc["gap"], fc["gap_se"])
    doc = {"delta": fit["delta"], "sse": fit["sse"], "sigmas": sig.tolist(),
           "neff_median": neff, "sharpness_median": sharp, "toy_curve": toy_summary,
           "field": {"sigma": float(sig[0]), "sharpness_empirical": sharp["empirical"][0],
                     "sharpness_toy": sharp["toy_model"][0],
                     "neff_empirical": neff["empirical"][0], "neff_toy": neff["toy_model"][0],
                     "toy_gap_at_sigma_min": toy_summary["gap_at_sigma_min"]}}
    return doc, {"toy_fit.png": png}


_STAGE_FNS = {"closed_form": _stage_closed_form, "train": _stage_train,
              "sample": _stage_sample, "domain": _stage_domain, "toy": _stage_toy}


def _check_out(out: Path, config: ReproduceConfig, resume: bool) -> None:
    settings = out / SETTINGS
    if out.exists() and not out.is_dir():
        raise ValueError(f"out: expected a folder, but {str(out)!r} is a file")
    if not resume:
        if out.exists() and any(not (p.name.startswith(".") and p.name.endswith(".tmp"))
                                for p in out.iterdir()):
            raise ValueError(f"out: {str(out)!r} is not empty; pass --resume to continue the "
                             "run in it or choose another --out")
        return
    if settings.exists():
        try:
            old = json.loads(settings.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"out: {settings} is not valid JSON ({err})") from None
        new = dataclasses.asdict(config)
        if not isinstance(old, dict) or old != new:
            diff = sorted(k for k in new if not isinstance(old, dict) or old.get(k) != new[k])
            raise ValueError(f"out: {str(out)!r} holds a run with other settings (differs in "
                             f"{', '.join(diff) or 'its fields'}); choose another --out")
    elif out.exists() and any(out.iterdir()) and not (out / "train").exists():
        raise ValueError(f"out: {str(out)!r} holds no jaxgap reproduce run (no {SETTINGS})")


def run(config: ReproduceConfig, out, *, resume: bool = False, progress: bool | None = None,
        log: Callable[[str], None] | None = print) -> dict:
    """Run the study: every stage not yet done, then results.json and the reports.

    Args:
      config: the run's :class:`ReproduceConfig`.
      out: output folder (created; must be empty unless ``resume``).
      resume: skip the stages whose results exist; continue training from its last
        checkpoint; redo a stage that was killed.
      progress: progress bars (None: only when stderr is a terminal).
      log: called with one line per stage (None: silent).

    Returns:
      The ``results.json`` document (settings, stage timings, key numbers, ``claims``).

    Raises:
      ValueError: bad settings, a non-empty ``out`` without ``resume``, or an ``out`` that
        holds a run with other settings.
    """
    config = config.validate()
    out = Path(out)
    log = log or (lambda _: None)
    _check_out(out, config, resume)
    tc = config.train_config()
    ds = train_mod.load_data(tc)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(".*.tmp"):  # temporary files of a killed run (never final names)
        stale.unlink(missing_ok=True)
    if not (out / SETTINGS).exists():
        rep.write_files(str(out), {SETTINGS: _json_bytes(dataclasses.asdict(config))})
    val = np.asarray(ds.val if config.val_size is None else ds.val[:config.val_size])
    ctx = _Ctx(config, out, ds, val, noise.log_sigmas(config.num_sigmas, SIGMA_MIN, SIGMA_MAX),
               jax.random.fold_in(jax.random.PRNGKey(config.seed), 3), progress)
    done: dict[str, dict] = {}
    seconds: dict[str, float] = {}
    skipped = []
    for i, name in enumerate(STAGES, 1):
        head = f"[{i}/{len(STAGES)}] {STAGE_TITLES[name]}"
        path = out / f"{name}.json"
        if resume and path.exists():
            done[name] = json.loads(path.read_text())
            seconds[name] = done[name].get("seconds")
            skipped.append(name)
            log(f"{head}: skipped (done)")
            continue
        log(f"{head} ...")
        t0 = time.perf_counter()
        doc, files = _STAGE_FNS[name](ctx, done)
        doc["seconds"] = round(time.perf_counter() - t0, 3)
        writers = {n: w if callable(w) else _bytes_writer(w) for n, w in files.items()}
        writers[f"{name}.json"] = _json_bytes(doc)  # renamed last: the stage's marker
        rep.write_files(str(out), writers)
        done[name] = json.loads(json.dumps(rep.finite_or_none(doc)))
        seconds[name] = doc["seconds"]
        log(f"{head}: done in {doc['seconds']:.1f} s")
    results = _results(ctx, done, seconds, skipped)
    _write_reports(out, results)
    return results


def _results(ctx: _Ctx, done: dict, seconds: dict, skipped: list) -> dict:
    device = jax.devices()[0]
    cf = done["closed_form"]
    tr = {k: v for k, v in done["train"].items() if k not in ("final_curve", "seconds")}
    numbers = {
        "closed_form": {"sigma_min": cf["sigma_min"], "empirical": cf["empirical"],
                        "gaussian": cf["gaussian"]},
        "training": tr,
        "memorization": done["sample"]["memorization"],
        "val_mean_distance_to_train": done["sample"].get("val_mean_distance_to_train"),
        "fit": {"delta": done["sample"]["fit"]["delta"], "sse": done["sample"]["fit"]["sse"]},
        "domain": {k: {kk: vv for kk, vv in v.items()
                       if kk in ("farther_sigmas", "closer_sigmas")}
                   for k, v in done["domain"]["summary"].items()
                   if k in (*SAMPLERS, "noisy_val")},
        "toy_field": done["toy"]["field"],
    }
    ds = ctx.ds
    return rep.finite_or_none({
        "command": "reproduce",
        "settings": dataclasses.asdict(ctx.config),
        "data": ds.name, "num_train": ds.num_train, "num_val": int(ctx.val.shape[0]),
        "dim": ds.dim,
        "stage_seconds": seconds,
        "stages_skipped": skipped,
        **numbers,
        "sampler_sigmas": done["domain"]["sigmas"],
        "claims": evaluate_claims(numbers),
        "jax_version": jax.__version__,
        "jaxgap_version": __version__,
        "device": f"{device.platform}: {device.device_kind}",
    })


FIGURES = (
    ("closed_form", "gap_closed_form.png", "Gap curves L_val - L_train of the closed-form "
     "denoisers (+-2 se bands)."),
    ("train", "gap_over_training.png", "The network's EMA gap curve at every evaluation, "
     "coloured by training step; the dotted line marks the final peak."),
    ("sample", "samples_empirical.png", "Samples of the optimal (empirical) denoiser beside "
     "their nearest training images."),
    ("sample", "samples_network.png", "Samples of the network beside their nearest training "
     "images."),
    ("sample", "samples_toy_model.png", "Samples of the fitted toy model beside their "
     "nearest training images."),
    ("domain", "domain.png", "Inference-domain diagnostics: medians and 10-90% bands of "
     "noisy train, noisy val and the samplers' trajectory states at the sampler's sigmas."),
    ("toy", "toy_fit.png", "The position-error toy model fitted to the network's final gap "
     "curve, with the optimal denoiser's gap."),
)


def _report_blocks(r: dict, figures: Sequence[str]) -> list:
    s = r["settings"]
    b = [rep.heading("jaxgap reproduce: memorization in training, generalization in "
                     "inference", 1),
         rep.paragraph(f"Data `{r['data']}`: n_train = {r['num_train']}, n_val = "
                       f"{r['num_val']}, d = {r['dim']}; seed {s['seed']}"
                       f"{'; quick settings (a smoke test, not evidence)' if s['quick'] else ''}"
                       f". Device {r['device']}, JAX {r['jax_version']}, jaxgap "
                       f"{r['jaxgap_version']}."),
         rep.heading("Claims", 2),
         rep.paragraph("Judged automatically from this run's numbers with the stated "
                       "criteria; 'no' means this run does not support the claim."),
         rep.table(["claim", "criterion", "measured", "supported"],
                   [[c["claim"], c["criterion"], c["measured"],
                     "yes" if c["supported"] else "no"] for c in r["claims"]])]
    cf, tr = r["closed_form"], r["training"]
    b += [rep.heading("1. Closed-form denoisers", 2),
          rep.table(["denoiser", "largest gap", "at sigma", "gap at sigma_min"],
                    [[name, f"{cf[name]['gap_max']:.4g} +- {cf[name]['gap_max_se']:.2g}",
                      f"{cf[name]['peak_sigma']:.3g}",
                      f"{cf[name]['gap_at_sigma_min']:.4g}"]
                     for name in ("empirical", "gaussian")])]
    b += [rep.heading("2. Training the network", 2),
          rep.paragraph(f"MLP {s['width']} x {s['depth']}, {s['steps']} steps, batch "
                        f"{s['batch_size']}, lr {s['lr']:g}; EMA gap on {s['num_sigmas']} "
                        f"sigmas in [0.002, 80] every {s['eval_every']} steps."),
          rep.table(["step", "largest EMA gap"],
                    [[str(st), f"{g:.4g}"] for st, g in tr["gap_max_by_step"]])]
    mem = r["memorization"]
    b += [rep.heading("3. Sampling and memorization", 2),
          rep.paragraph(f"{s['num_samples']} samples per sampler, Heun with "
                        f"{s['sample_steps']} steps (EDM schedule), the same initial noise "
                        f"for every sampler; toy model: position error delta = "
                        f"{r['fit']['delta']:.4g} fitted to the network's final EMA gap "
                        f"(weighted SSE {r['fit']['sse']:.3g})."),
          rep.table(["sampler", "memorized (r < 1/3)", "median copy ratio",
                     "mean dist. to train", "mean dist. to val"],
                    [[name, f"{m['memorized_fraction']:.3f} +- "
                      f"{m['memorized_fraction_se']:.3f}", f"{m['copy_ratio_median']:.3f}",
                      f"{m['mean_distance_to_train']:.4g}", f"{m['mean_distance_to_val']:.4g}"]
                     for name, m in mem.items()])]
    ref = r.get("val_mean_distance_to_train")
    if ref is not None:
        b.append(rep.paragraph(f"For scale: a validation image lies at mean distance "
                               f"{ref:.4g} from its nearest training image; samples much "
                               f"farther than that are not realistic images."))
    rows = []
    for name, d in r["domain"].items():
        far = ", ".join(f"{x:.3g}" for x in sorted(d["farther_sigmas"])) or "none"
        close = ", ".join(f"{x:.3g}" for x in sorted(d["closer_sigmas"])) or "none"
        rows.append([name, far, close])
    b += [rep.heading("4. Inference-domain diagnostics", 2),
          rep.paragraph("Sampler sigmas where a sampler's median normalized nearest-training "
                        "distance lies above (farther) or below (closer) the 10-90% band of "
                        "noisy training states."),
          rep.table(["trajectories of", "farther at sigma", "closer at sigma"], rows)]
    f = r["toy_field"]
    b += [rep.heading("5. Toy model", 2),
          rep.paragraph(f"Field sharpness (largest secant slope of D between neighbouring "
                        f"training points, median over pairs; {SEGMENT_STEPS} = a jump, 1 = "
                        f"the identity) at sigma = {f['sigma']:.3g}: toy model "
                        f"{f['sharpness_toy']:.3g}, optimal denoiser "
                        f"{f['sharpness_empirical']:.3g}."),
          rep.paragraph(f"At sigma = {f['sigma']:.3g} the posterior of the fitted toy model "
                        f"spreads over a median {f['neff_toy']:.3g} effective training points "
                        f"on noisy validation states, the optimal denoiser's over "
                        f"{f['neff_empirical']:.3g}; its gap at the smallest sigma is "
                        f"{f['toy_gap_at_sigma_min']:.4g}.")]
    b += [rep.heading("Figures", 2)]
    for _, name, caption in FIGURES:
        if name in figures:
            b.append(rep.figure(name, caption))
    secs = r["stage_seconds"]
    b += [rep.heading("Timings", 2),
          rep.table(["stage", "seconds", "this invocation"],
                    [[n, f"{secs[n]:.1f}" if secs.get(n) is not None else "n/a",
                      "skipped (done)" if n in r["stages_skipped"] else "run"]
                     for n in STAGES])]
    return b


def _write_reports(out: Path, results: dict) -> None:
    figures = [name for _, name, _ in FIGURES if (out / name).exists()]
    images = {name: (out / name).read_bytes() for name in figures}
    blocks = _report_blocks(results, figures)
    rep.write_files(str(out), {
        "report.md": rep.text_writer(rep.render_markdown(blocks)),
        "report.html": rep.text_writer(rep.render_html(blocks, images,
                                                       title="jaxgap reproduce")),
        RESULTS: _json_bytes(results),
    })

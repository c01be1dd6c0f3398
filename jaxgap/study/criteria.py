r"""Pre-registered claim criteria and the judges that apply them to numbers pooled over seeds.

Every threshold lives in one versioned file, ``criteria.toml`` (package data next to this
module; ``docs/criteria.md`` gives each one's rationale); :func:`load_criteria` reads and
checks it. A judge (``judge_*``) takes per-seed records of measured numbers (mappings or
NamedTuples; the keys are listed per judge) and returns the claim object of
``results.json``: ``id``, ``paper_claim``, ``claim``, ``criterion`` (thresholds filled in),
``criteria_version``, ``measured`` (text), ``interval`` ``[low, high]`` and ``estimate``
(the pooled headline quantity), ``seeds_supporting``, ``seeds``, ``supported`` (bool),
``controls`` (``{name, kind, supported, as_required, measured, interval}``) and
``per_seed``. Values are JSON-ready (non-finite numbers become None).

A claim is supported when (i) its pooled rule holds on the intervals, (ii) more than half
of its seeds support it on their own, (iii) it has at least ``pooling.min_seeds`` seeds and
(iv) every control comes out as required: a negative control (:class:`Control`, judged by
the same rule on its own records, without the minimum number of seeds) must come out not
supported, a positive one supported; otherwise the claim is not supported and ``measured``
says which control failed. Intervals are those of :func:`pool`.

Example:
  >>> crit = load_criteria()
  >>> seeds = [dict(sigmas=[0.002, 0.5, 80.0], gap=[0.0, 0.04 + 0.001 * s, 0.01],
  ...               gap_se=[0.0, 0.002, 0.005]) for s in range(3)]
  >>> claim = judge_gap_peak(seeds, sigma_min=0.002, sigma_data=0.5, criteria=crit)
  >>> claim["supported"], claim["seeds_supporting"], claim["criteria_version"]
  (True, 3, 3)
"""

from __future__ import annotations

import functools
import math
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import NamedTuple

from jaxgap.study import _judges
from jaxgap.study._judges import Pooled, pool
from jaxgap.study._records import (
    curves_from_rows,
    delta_bracket,
    domain_record,
    fit_residual,
    quality_record,
)

__all__ = ["CLAIMS", "CLAIM_PAPER", "FACTOR_LEVELS", "Control", "Criteria", "Pooled",
           "curves_from_rows", "delta_bracket", "domain_record", "fit_residual", "judge_copies",
           "judge_domain", "judge_factor", "judge_gap_grows", "judge_gap_peak",
           "judge_generalization",
           "judge_no_copying", "judge_smoothing", "load_criteria", "pool", "quality_record"]

CLAIMS = {
    "gap_grows": "the network's generalization gap grows with training",
    "gap_peak": "the network's gap peaks at intermediate sigma",
    "copying": "the network does not copy its training images",
    "copies": "the sampler copies its training images",
    "domain": "sampling trajectories leave the domain of noisy training samples at "
              "intermediate sigma",
    "generalization": "the network generalizes: its samples are neither copies nor poor",
    "smoothing": "model error smooths the network's field where its gap peaks",
    "factor_time": "training time: the network memorizes more the longer it trains",
    "factor_data_size": "dataset size: a network trained on fewer images memorizes more",
    "factor_model_size": "model size: a larger network memorizes more",
    "factor_condition": "condition granularity: finer conditions (random labels, one per "
                        "image) memorize more than none",
    "factor_guidance": "guidance: a larger guidance weight memorizes more",
}
"""The statement each judge tests, by claim id."""

CLAIM_PAPER = {"gap_grows": 1, "gap_peak": 1, "copying": 1, "copies": 1, "domain": 3,
               "generalization": 1, "smoothing": 2, "factor_time": 1, "factor_data_size": 1,
               "factor_model_size": 1, "factor_condition": 1, "factor_guidance": 1}
"""The paper's claim (1, 2 or 3 of :data:`jaxgap.study.claims.PAPER_CLAIMS`) per claim id."""


FACTOR_LEVELS = {
    "factor_time": "T against T/2 steps",
    "factor_data_size": "memorize_size against train_size images, at the memorizing "
                        "control's last step",
    "factor_model_size": "the largest size rung against the smallest",
    "factor_condition": "random labels against no condition",
    "factor_guidance": "class labels at the largest guidance weight against w = 0",
}
"""The two levels each factor row compares (higher against lower)."""


# ----------------------------------------------------------------------------- criteria

@dataclass(frozen=True)
class Pooling:
    level: float
    min_seeds: int
    rationale: str


@dataclass(frozen=True)
class GapPeak:
    z_peak: float
    low_factor: float
    high_factor: float
    rationale: str


@dataclass(frozen=True)
class GapGrows:
    z_growth: float
    rationale: str


@dataclass(frozen=True)
class Copying:
    margin: float
    copy_high: float
    rationale: str


@dataclass(frozen=True)
class Domain:
    band_low: float
    band_high: float
    position_min: float
    low_factor: float
    high_factor: float
    rationale: str


@dataclass(frozen=True)
class Generalization:
    frechet_ratio_max: float
    precision_ratio_min: float
    rationale: str


@dataclass(frozen=True)
class Smoothing:
    sharpness_ratio_max: float
    optimal_sharpness_min: float
    fit_residual_max: float
    delta_sse_factor: float
    low_factor: float
    rationale: str


@dataclass(frozen=True)
class Factors:
    margin: float
    rationale: str


_TABLES = {"pooling": Pooling, "gap_peak": GapPeak, "gap_grows": GapGrows,
           "copying": Copying, "domain": Domain, "generalization": Generalization,
           "smoothing": Smoothing, "factors": Factors}
_RANGES = {  # "table.key": (check, what is expected); any other number must be > 0
    "pooling.level": (lambda v: 0 < v < 1, "a number in (0, 1)"),
    "pooling.min_seeds": (lambda v: v >= 1, "an integer >= 1"),
    "copying.margin": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "copying.copy_high": (lambda v: 0 < v <= 1, "a number in (0, 1]"),
    "domain.band_low": (lambda v: 0 <= v < 0.5, "a quantile level in [0, 0.5)"),
    "domain.band_high": (lambda v: 0.5 < v <= 1, "a quantile level in (0.5, 1]"),
    "domain.position_min": (lambda v: 0 < v < 1, "a number in (0, 1)"),
    "smoothing.optimal_sharpness_min": (lambda v: v >= 1, "a number >= 1"),
    "smoothing.delta_sse_factor": (lambda v: v > 1, "a number > 1"),
}


@dataclass(frozen=True)
class Criteria:
    """The criteria file's contents: ``version``, ``changelog`` (``((version, line), ...)``)
    and one table of thresholds (with its ``rationale``) per claim."""

    version: int
    changelog: tuple
    pooling: Pooling
    gap_peak: GapPeak
    gap_grows: GapGrows
    copying: Copying
    domain: Domain
    generalization: Generalization
    smoothing: Smoothing
    factors: Factors

    def texts(self) -> dict[str, str]:
        """``{claim id: criterion text with the thresholds filled in}``."""
        lvl = f"{100 * self.pooling.level:g}%"
        tail = (f"; at least {self.pooling.min_seeds} seeds, more than half of them "
                f"supporting on their own, every control as required")
        g, d, q, s = self.gap_peak, self.domain, self.generalization, self.smoothing
        no_copy = (f"the {lvl} interval of the copy fraction minus the held-out baseline's "
                   f"(real validation images against the same training set) lies below "
                   f"{self.copying.margin:g} for the 1/3 rule and for the noisy-copy "
                   f"detector, pooled over seeds (per seed: its own interval)")
        return {
            "gap_grows": f"the largest gap over sigma at the final evaluation exceeds the one "
                         f"at the first evaluation after step 0 by >= "
                         f"{self.gap_grows.z_growth:g} se of the difference (per seed), and "
                         f"by >= {self.gap_grows.z_growth:g} pooled se with its {lvl} "
                         f"t-interval above 0 (pooled)" + tail,
            "gap_peak": f"the largest gap exceeds the gap at both ends of the sigma grid by "
                        f">= {g.z_peak:g} se of the difference and lies at "
                        f"{g.low_factor:g} sigma_min <= sigma <= {g.high_factor:g} "
                        f"sigma_data (per seed); the seeds' mean curve peaks in that range "
                        f"and exceeds both ends by >= {g.z_peak:g} pooled se with its {lvl} "
                        f"t-interval above 0 (pooled)" + tail,
            "copying": no_copy + tail,
            "copies": f"the lower end of the {lvl} interval of the fraction of samples the "
                      f"noisy-copy detector flags is >= {self.copying.copy_high:g}" + tail,
            "domain": f"at the sigmas in [{d.low_factor:g} sigma_min, {d.high_factor:g} "
                      f"sigma_data] where the noisy-train and noisy-validation bands of the "
                      f"normalized nearest-training distance are disjoint "
                      f"({d.band_low:g}/{d.band_high:g} quantiles), the trajectories' median "
                      f"lies above the noisy-train band and its mean position between the "
                      f"bands' medians (log scale, 0 = noisy train, 1 = noisy validation) is "
                      f">= {d.position_min:g} (per seed); the {lvl} t-interval of the "
                      f"position lies above {d.position_min:g} (pooled)" + tail,
            "generalization": f"{no_copy}; and against the validation split, the Frechet "
                              f"distance is <= {q.frechet_ratio_max:g} x and the k-NN "
                              f"precision >= {q.precision_ratio_min:g} x those of real "
                              f"training images (the {lvl} intervals of the ratios, "
                              f"Frechet pooled in log space)" + tail,
            "smoothing": f"at the network's gap-peak sigma (>= {s.low_factor:g} sigma_min) the "
                         f"optimal denoiser's field sharpness is >= "
                         f"{s.optimal_sharpness_min:g} and the network's <= "
                         f"{s.sharpness_ratio_max:g} x it; the position-error toy model fits "
                         f"the network's gap with weighted residual <= "
                         f"{s.fit_residual_max:g} x the curve's weighted energy and delta "
                         f"resolved from 0 (every delta fitting within "
                         f"{s.delta_sse_factor:g} x the best objective is > 0) (per seed); "
                         f"the {lvl} intervals of the sharpness ratio (log space) and the "
                         f"residual lie below their bounds (pooled)" + tail,
            **{cid: f"the memorized fraction (1/3 rule) at the higher level minus that at the "
                    f"lower level ({levels}), seed by seed, has its {lvl} interval above "
                    f"{self.factors.margin:g} (pooled over seeds; per seed its own interval)"
               + tail for cid, levels in FACTOR_LEVELS.items()},
        }


def _table(doc, name: str, cls, where: str):
    table = doc[name]
    if not isinstance(table, dict):
        raise ValueError(f"{where}: {name}: expected a table, got {table!r}")
    names = [f.name for f in fields(cls)]
    for key in names:
        if key not in table:
            raise ValueError(f"{where}: {name}.{key}: missing (expected the keys {names})")
    for key in table:
        if key not in names:
            raise ValueError(f"{where}: {name}.{key}: unknown key (expected {names})")
    values = {}
    for f in fields(cls):
        key, v = f"{name}.{f.name}", table[f.name]
        if f.type == "str":
            if not isinstance(v, str) or not v.strip():
                raise ValueError(f"{where}: {key}: expected a non-empty string, got {v!r}")
        elif f.type == "int":
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"{where}: {key}: expected an integer, got {v!r}")
        elif isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{where}: {key}: expected a finite number, got {v!r}")
        if f.type != "str":
            check, text = _RANGES.get(key, (lambda x: x > 0, "a number > 0"))
            if not check(v):
                raise ValueError(f"{where}: {key}: expected {text}, got {v!r}")
        values[f.name] = float(v) if f.type == "float" else v
    return cls(**values)


def load_criteria(path: str | Path | None = None) -> Criteria:
    """Read and check a criteria file (default: the package's ``criteria.toml``).

    Raises:
      ValueError: naming the key, for a missing or unknown key, a value of the wrong type or
        range, or a version without a changelog line (every version ``1..version`` needs one).
    """
    if path is None:
        where = "criteria.toml"
        text = resources.files("jaxgap.study").joinpath(where).read_text(encoding="utf-8")
    else:
        where = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as err:
            raise ValueError(f"path: expected a readable criteria file, got {where!r} "
                             f"({err.strerror})") from err
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{where}: not valid TOML: {err}") from err
    expected = ["version", "changelog", *_TABLES]
    for key in expected:
        if key not in doc:
            raise ValueError(f"{where}: {key}: missing (expected the keys {expected})")
    for key in doc:
        if key not in expected:
            raise ValueError(f"{where}: {key}: unknown key (expected {expected})")
    version = doc["version"]
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"{where}: version: expected an integer >= 1, got {version!r}")
    log = doc["changelog"]
    if not isinstance(log, dict):
        raise ValueError(f"{where}: changelog: expected a table, got {log!r}")
    lines = {}
    for key, line in log.items():
        if not key.isdigit() or not 1 <= int(key) <= version:
            raise ValueError(f"{where}: changelog.{key}: expected a version in 1..{version}, "
                             f"got {key!r}")
        if not isinstance(line, str) or not line.strip():
            raise ValueError(f"{where}: changelog.{key}: expected a non-empty line saying why, "
                             f"got {line!r}")
        lines[int(key)] = line.strip()
    missing = [v for v in range(1, version + 1) if v not in lines]
    if missing:
        raise ValueError(f"{where}: changelog: expected a line for every version "
                         f"1..{version}, missing version(s) {missing}")
    return Criteria(version, tuple(sorted(lines.items())),
                    **{name: _table(doc, name, cls, where) for name, cls in _TABLES.items()})


# ----------------------------------------------------------------------------- judges

class Control(NamedTuple):
    """A control of a claim: ``kind`` ``"negative"`` (must come out not supported: an
    untrained network, structureless data, a memorizing network) or ``"positive"`` (must come
    out supported); ``data``: per-seed records of the same form as the claim's, judged with
    the claim's keyword arguments."""

    name: str
    kind: str
    data: Sequence


@functools.cache
def _default_criteria() -> Criteria:
    return load_criteria()


def _judge(cid: str, evaluate, data, controls, criteria, positive=None, **kw) -> dict:
    crit = _default_criteria() if criteria is None else criteria
    if not isinstance(crit, Criteria):
        raise ValueError(f"criteria: expected a Criteria (see load_criteria), got {crit!r}")
    if isinstance(controls, Control) or not isinstance(controls, Sequence):
        raise ValueError(f"controls: expected a sequence of Control, got {controls!r}")
    v = evaluate(_judges.records(data, "seeds"), crit, "seeds", **kw)
    n, notes = len(v.per_seed), []
    supported = v.pooled_ok and _judges.majority(v)
    if n < crit.pooling.min_seeds:
        supported = False
        notes.append(f"only {n} seed(s), fewer than the {crit.pooling.min_seeds} the "
                     f"criteria require")
    out = []
    for i, c in enumerate(controls):
        if not isinstance(c, Control) or c.kind not in ("negative", "positive") \
                or not isinstance(c.name, str):
            raise ValueError(f"controls[{i}]: expected a Control(name, kind 'negative' or "
                             f"'positive', data), got {c!r}")
        judge = positive if c.kind == "positive" and positive is not None else evaluate
        cv = judge(_judges.records(c.data, f"controls[{i}].data"), crit,
                   f"controls[{i}].data", **kw)
        ok = cv.pooled_ok and _judges.majority(cv)
        as_required = ok if c.kind == "positive" else not ok
        out.append({"name": c.name, "kind": c.kind, "supported": ok,
                    "as_required": as_required, "measured": cv.measured,
                    "interval": list(cv.interval)})
        if not as_required:
            supported = False
            notes.append(f"the {c.kind} control '{c.name}' came out "
                         f"{'supported' if ok else 'not supported'}, so the claim is not "
                         f"supported")
    return _judges.to_json({
        "id": cid, "paper_claim": CLAIM_PAPER[cid], "claim": CLAIMS[cid],
        "criterion": crit.texts()[cid], "criteria_version": crit.version,
        "measured": v.measured + "".join(f"; {note}" for note in notes),
        "interval": list(v.interval), "estimate": v.estimate,
        "seeds_supporting": _judges.supporting(v.per_seed), "seeds": n,
        "supported": supported, "controls": out, "per_seed": v.per_seed, **v.extra})


def judge_gap_peak(seeds, *, sigma_min: float, sigma_data: float, controls=(),
                   criteria: Criteria | None = None) -> dict:
    """The claim "the network's gap peaks at intermediate sigma".

    Args:
      seeds: per seed ``{"sigmas": [K], "gap": [K], "gap_se": [K]}``, a final EMA gap curve
        (one sigma grid for all seeds, any order; :func:`curves_from_rows` makes them from a
        sweep's ``losses.csv``). Every record may carry a ``"seed"`` label.
      sigma_min: the grid's smallest sigma.
      sigma_data: the data's standard deviation (the network's ``sigma_data``).
      controls: :class:`Control` s with records of the same form (negative: the untrained
        network, a network at step 0).
      criteria: default :func:`load_criteria`.

    Returns:
      The claim object (module docstring); ``interval``: the mean curve's excess over the
      weaker end of the grid; also ``peak_sigma`` (of the mean curve), ``z`` (that excess
      in pooled se) and ``location_interval`` (of the per-seed peak sigmas, log scale).
    """
    return _judge("gap_peak", _judges.eval_gap_peak, seeds, controls, criteria,
                  sigma_min=sigma_min, sigma_data=sigma_data)


def judge_gap_grows(seeds, *, controls=(), criteria: Criteria | None = None) -> dict:
    """The claim "the network's generalization gap grows with training".

    Args:
      seeds: per seed ``{"gap_max_first", "gap_max_first_se", "gap_max_last",
        "gap_max_last_se"}``: the largest EMA gap over sigma and its se at the first
        evaluation after step 0 and at the last (``TrainResult.numbers()`` has them; None
        where there is no evaluation after step 0).
      controls: :class:`Control` s (negative: two evaluations of one checkpoint).
      criteria: default :func:`load_criteria`.

    Returns:
      The claim object; ``interval``: the growth; ``z``: the growth in pooled se.
    """
    return _judge("gap_grows", _judges.eval_gap_grows, seeds, controls, criteria)


def judge_no_copying(seeds, *, controls=(), criteria: Criteria | None = None) -> dict:
    """The claim "the network does not copy its training images".

    Args:
      seeds: per seed ``{"num", "ratio_rule", "flagged", "base_num", "base_ratio_rule",
        "base_flagged"}``: the number of samples and the fractions the 1/3 rule and the
        noisy-copy detector (:class:`~jaxgap.metrics.NoisyCopyDetector`, ``flagged``) call
        copies; the same for the held-out baseline (real validation images scored against
        the same training set).
      controls: negative ones (the empirical denoiser, a network trained long on few
        images) are judged by this rule, positive ones by :func:`judge_copies`' rule.
      criteria: default :func:`load_criteria`.

    Returns:
      The claim object; ``interval``: the noisy-copy detector's difference to the baseline;
      ``intervals``: both detectors'.
    """
    return _judge("copying", _judges.eval_no_copy, seeds, controls, criteria,
                  positive=_judges.eval_copies)


def judge_copies(seeds, *, controls=(), criteria: Criteria | None = None) -> dict:
    """The claim "the sampler copies its training images" (the optimal denoiser's row, and
    the positive control of :func:`judge_no_copying`).

    Args:
      seeds: per seed ``{"num", "flagged"}`` (the noisy-copy detector's flagged fraction).
      controls, criteria: as in :func:`judge_no_copying`.
    """
    return _judge("copies", _judges.eval_copies, seeds, controls, criteria)


def judge_domain(seeds, *, sigma_min: float, sigma_data: float, controls=(),
                 criteria: Criteria | None = None) -> dict:
    """The claim "sampling trajectories leave the domain of noisy training samples".

    Args:
      seeds: per seed ``{"sigmas": [K], "quantiles": [Q], "states": [K, Q], "noisy_train":
        [K, Q], "noisy_val": [K, Q]}``: quantiles of the normalized nearest-training distance
        of the trajectory states and of the two bands (:func:`domain_record` makes one from
        :func:`jaxgap.metrics.domain_diagnostics`; ``quantiles`` must hold the criteria's
        band levels and 0.5).
      sigma_min, sigma_data: the sampler's smallest sigma and the data's deviation.
      controls: negative: the empirical denoiser's trajectories; positive: noisy
        validation states in place of the trajectories.
      criteria: default :func:`load_criteria`.

    Returns:
      The claim object; ``interval``: the mean position between the bands.
    """
    return _judge("domain", _judges.eval_domain, seeds, controls, criteria,
                  sigma_min=sigma_min, sigma_data=sigma_data)


def judge_generalization(seeds, *, controls=(), criteria: Criteria | None = None) -> dict:
    """The claim "the network generalizes": its samples are no copies and good.

    Args:
      seeds: per seed the keys of :func:`judge_no_copying` and ``{"frechet", "precision",
        "base_frechet", "base_precision"}``: Frechet distance and k-NN precision of the
        samples against the validation split, and of real training images of the same
        number (the baseline; :func:`quality_record` reads them from
        :func:`jaxgap.metrics.measure_quality` or a sweep row).
      controls: negative: an untrained network, a run on structureless noise data.
      criteria: default :func:`load_criteria`.

    Returns:
      The claim object; ``interval``: the Frechet ratio to the baseline; ``components``:
      the copying and quality parts.
    """
    return _judge("generalization", _judges.eval_generalization, seeds, controls, criteria)


def judge_factor(cid: str, seeds, *, controls=(), criteria: Criteria | None = None) -> dict:
    """A factor row (``cid`` a key of :data:`FACTOR_LEVELS`): does the higher level of the
    factor memorize more than the lower one?

    Args:
      cid: the factor claim id.
      seeds: per seed ``{"high", "high_num", "low", "low_num"}``: the memorized fractions
        (1/3 rule) at the two levels and their numbers of samples.
      controls: :class:`Control` s (negative: the same comparison at step 0).
      criteria: default :func:`load_criteria`.

    Returns:
      The claim object; ``interval``: the pooled difference high - low.
    """
    if cid not in FACTOR_LEVELS:
        raise ValueError(f"cid: expected one of {list(FACTOR_LEVELS)}, got {cid!r}")
    return _judge(cid, _judges.eval_factor, seeds, controls, criteria)


def judge_smoothing(seeds, *, sigma_min: float, controls=(),
                    criteria: Criteria | None = None) -> dict:
    """The claim "model error smooths the network's field where its gap peaks".

    Args:
      seeds: per seed ``{"sigma", "sharpness_network", "sharpness_optimal", "fit_residual",
        "delta", "delta_low", "delta_high"}``: the sigma of the network's gap peak, the
        median field sharpness (:func:`jaxgap.metrics.field_sharpness`) of the network and
        of the optimal denoiser there, the toy fit's relative residual
        (:func:`fit_residual`) and its delta with the range of deltas fitting almost as
        well (:func:`delta_bracket`).
      sigma_min: the grid's smallest sigma.
      controls: negative: the untrained network; the optimal denoiser as the network.
      criteria: default :func:`load_criteria`.

    Returns:
      The claim object; ``interval``: the sharpness ratio network / optimal.
    """
    return _judge("smoothing", _judges.eval_smoothing, seeds, controls, criteria,
                  sigma_min=sigma_min)

"""One typed result per stage of the study, each written as ``<stage>.json``.

Every result is a frozen dataclass with ``to_dict`` / ``from_dict`` (plain JSON values)
and ``to_json`` / ``from_json``; a stage's JSON file is its result, so a resumed run reads
the finished stages back as the same types. The documents keep jaxgap 0.1's layout, so a
run started by 0.1 resumes.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import numpy as np

from jaxgap.losses import GapCurve, curve_peak
from jaxgap.report.report import finite_or_none
from jaxgap.theory import DeltaFit

__all__ = ["ClosedFormResult", "CurveSummary", "DomainResult", "SampleResult", "ToyField",
           "ToyResult", "TrainResult"]


class CurveSummary(NamedTuple):
    """The key numbers of a gap curve.

    Attributes:
      peak_sigma: the grid sigma of the largest gap.
      gap_max: the largest gap.
      gap_max_se: its standard error.
      gap_at_sigma_min: the gap at the smallest sigma.
      gap_at_sigma_min_se: its standard error.
    """

    peak_sigma: float
    gap_max: float
    gap_max_se: float
    gap_at_sigma_min: float
    gap_at_sigma_min_se: float

    @classmethod
    def of(cls, sigmas, gap, gap_se) -> CurveSummary:
        """The summary of ``[K]`` arrays (any order of ``sigmas``).

        Example:
          >>> s = CurveSummary.of([1.0, 0.1, 10.0], [2.0, 0.5, 1.0], [0.1, 0.2, 0.3])
          >>> s.peak_sigma, s.gap_max_se, s.gap_at_sigma_min
          (1.0, 0.1, 0.5)
        """
        s, g, se = (np.asarray(a, np.float64) for a in (sigmas, gap, gap_se))
        order = np.argsort(s)
        s, g, se = s[order], g[order], se[order]
        k = curve_peak(s, g, return_index=True)[2]
        return cls(float(s[k]), float(g[k]), float(se[k]), float(g[0]), float(se[0]))


@dataclass(frozen=True)
class _Result:
    """``to_json`` / ``from_json`` of a stage result from its ``to_dict`` / ``from_dict``
    (by default: the fields by name, in order, and last the stage's wall time ``seconds``,
    set by the pipeline once the stage has run)."""

    seconds: float | None = dataclasses.field(default=None, kw_only=True)

    def to_dict(self) -> dict:
        return {**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                   if f.name != "seconds"}, "seconds": self.seconds}

    @classmethod
    def from_dict(cls, doc: dict) -> Any:
        return cls(**{f.name: doc.get(f.name) for f in dataclasses.fields(cls)})

    def to_json(self) -> str:
        """Strict JSON (non-finite floats as null)."""
        return json.dumps(finite_or_none(self.to_dict()), indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Any:
        return cls.from_dict(json.loads(text))


@dataclass(frozen=True)
class ClosedFormResult(_Result):
    """Stage 1: gap curves of the closed-form denoisers.

    Attributes:
      curves: ``{name: GapCurve.to_dict()}`` for ``empirical`` and ``gaussian``.
      sigma_min: the grid's smallest sigma.
      summaries: ``{name: CurveSummary}`` (stored as top-level keys).
    """

    curves: dict
    sigma_min: float
    summaries: dict

    def to_dict(self) -> dict:
        return {"curves": self.curves, "sigma_min": self.sigma_min,
                **{name: s._asdict() for name, s in self.summaries.items()},
                "seconds": self.seconds}

    @classmethod
    def from_dict(cls, doc: dict) -> ClosedFormResult:
        return cls(doc["curves"], doc["sigma_min"],
                   {name: CurveSummary(**doc[name]) for name in doc["curves"]},
                   seconds=doc.get("seconds"))


@dataclass(frozen=True)
class TrainResult(_Result):
    """Stage 2: the network's EMA gap over training.

    Attributes:
      resumed: whether training continued an earlier run folder.
      num_evaluations: evaluation rows of the run.
      first_step: the first evaluation after step 0 (None: none).
      gap_max_first, gap_max_first_se: the largest EMA gap there, and its se.
      last_step: the final evaluation's step.
      gap_max_last, gap_max_last_se: the largest final EMA gap, and its se.
      peak_sigma: where the final EMA gap peaks.
      gap_at_sigma_min: the final EMA gap at the smallest sigma.
      gap_max_by_step: ``[[step, largest EMA gap], ...]`` of every evaluation.
      final_curve: the final EMA curve (``sigmas``, ``train``, ``val``, ``gap``,
        ``gap_se``).
    """

    resumed: bool
    num_evaluations: int
    first_step: int | None
    gap_max_first: float | None
    gap_max_first_se: float | None
    last_step: int
    gap_max_last: float
    gap_max_last_se: float
    peak_sigma: float
    gap_at_sigma_min: float
    gap_max_by_step: list
    final_curve: dict

    _NOT_NUMBERS: ClassVar[tuple[str, ...]] = ("final_curve", "seconds")

    def numbers(self) -> dict:
        """The training section of ``results.json`` (everything but the curve and time)."""
        return {k: v for k, v in self.to_dict().items() if k not in self._NOT_NUMBERS}


def _fit_from_dict(doc: dict) -> DeltaFit:
    curve = GapCurve(*(np.asarray(doc["curve"][f], np.float64) for f in GapCurve._fields))
    return DeltaFit(doc["delta"], doc["sse"], curve, np.asarray(doc["deltas"], np.float64),
                    np.asarray(doc["sse_values"], np.float64))


@dataclass(frozen=True)
class SampleResult(_Result):
    """Stage 3: the toy-model fit, and the samplers' memorization.

    Attributes:
      fit: the :class:`~jaxgap.theory.DeltaFit` of the toy model to the network's gap.
      memorization: ``{sampler: Memorization.summary()}``.
      val_mean_distance_to_train: a held-out point's mean distance to the training set
        (the scale of a generalizing sample).
      num_samples: samples per sampler.
      sample_steps: sampler steps.
      method: the sampler.
      quality: :func:`~jaxgap.study.measure_quality` of every sampler's samples, with real
        training points as the baseline (None in runs of jaxgap <= 0.1 or with too few
        samples).
    """

    fit: DeltaFit
    memorization: dict
    val_mean_distance_to_train: float
    num_samples: int
    sample_steps: int
    method: str
    quality: dict | None = dataclasses.field(default=None, kw_only=True)

    def to_dict(self) -> dict:
        return {**super().to_dict(), "fit": self.fit.to_dict()}

    @classmethod
    def from_dict(cls, doc: dict) -> SampleResult:
        return dataclasses.replace(super().from_dict(doc), fit=_fit_from_dict(doc["fit"]))


@dataclass(frozen=True)
class DomainResult(_Result):
    """Stage 4: the inference-domain diagnostics of the samplers' trajectories.

    Attributes:
      sigmas: the sampler's noise levels (where the trajectory states sit).
      summary: per set, the sigmas where its median normalized nearest-training distance
        lies above (``farther_sigmas``) or below (``closer_sigmas``) the noisy-train band,
        and those medians (``median_normalized_nn_distance``; ``noisy_train``: medians only).
      diagnostics: ``DomainDiagnostics.to_dict()``.
    """

    sigmas: list
    summary: dict
    diagnostics: dict


class ToyField(NamedTuple):
    """The fitted toy model's field against the optimal denoiser's, at the smallest sampler
    sigma: sharpness, effective number of training points, and the toy gap at the grid's
    smallest sigma."""

    sigma: float
    sharpness_empirical: float
    sharpness_toy: float
    neff_empirical: float
    neff_toy: float
    toy_gap_at_sigma_min: float


@dataclass(frozen=True)
class ToyResult(_Result):
    """Stage 5: the toy model's field diagnostics.

    Attributes:
      delta, sse: the fit (as in :class:`SampleResult`).
      sigmas: the sampler's noise levels, ascending.
      neff_median: ``{empirical, toy_model: [K]}`` median effective number of training
        points of the posterior on noisy validation states.
      sharpness_median: ``{empirical, toy_model: [K]}`` median field sharpness.
      toy_curve: :class:`CurveSummary` of the fitted toy model's gap curve.
      field: :class:`ToyField`.
    """

    delta: float
    sse: float
    sigmas: list
    neff_median: dict
    sharpness_median: dict
    toy_curve: CurveSummary
    field: ToyField

    def to_dict(self) -> dict:
        return {**super().to_dict(), "toy_curve": self.toy_curve._asdict(),
                "field": self.field._asdict()}

    @classmethod
    def from_dict(cls, doc: dict) -> ToyResult:
        return dataclasses.replace(super().from_dict(doc),
                                   toy_curve=CurveSummary(**doc["toy_curve"]),
                                   field=ToyField(**doc["field"]))

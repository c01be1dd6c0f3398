"""The claims table: each claim of the paper judged from a run's numbers by a criterion fixed
in advance. Every threshold is a field of one frozen :class:`Criteria`.

Five checks, each with an id (its key in ``results.json``) and a statement, test the
paper's three claims (:data:`PAPER_CLAIMS`): ``gap_grows``, ``gap_peak`` and
``copying`` test claim 1 (memorization in training), ``smoothing`` claim 2 (model error
smooths the field) and ``domain`` claim 3 (generalization in inference).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jaxgap.metrics import SEGMENT_STEPS

__all__ = ["CLAIM_CRITERIA", "CLAIM_PAPER", "CLAIM_TEXT", "PAPER_CLAIMS", "Criteria",
           "evaluate_claims"]

PAPER_CLAIMS = {
    1: "diffusion models memorize in training",
    2: "model error smooths the field",
    3: "diffusion models generalize in inference",
}
"""The paper's three claims (Kaiser and Kollmann, arXiv 2603.13419), by number: 1. the
optimal denoiser of a finite training set memorizes, and a trained network, which
generalizes at the sample level, overfits the denoising objective progressively (the gap
``L_val - L_train`` grows with training and is largest at intermediate noise levels);
2. in an error-prone toy model the optimal field localizes sharply around training points,
and model error suppresses exact recall, giving a smooth, generalizing field; 3. the
training-time gap does not turn into copying at inference, because intermediate states of
sampling trajectories lie far from the noisy training samples the model was trained on."""

CLAIM_PAPER = {"gap_grows": 1, "gap_peak": 1, "copying": 1, "domain": 3, "smoothing": 2}
"""The paper's claim (a key of :data:`PAPER_CLAIMS`) each check tests, by claim id."""

CLAIM_TEXT = {
    "gap_grows": "the network's generalization gap grows with training",
    "gap_peak": "the network's gap peaks at intermediate sigma, the optimal denoiser's at "
                "small sigma",
    "copying": "the optimal denoiser copies training images, the network does not",
    "domain": "sampling trajectories leave the domain of noisy training samples at "
              "intermediate sigma",
    "smoothing": "model error smooths the field (fitted position-error toy model vs the "
                 "optimal denoiser)",
}
"""The statement each check tests, by claim id."""


@dataclass(frozen=True)
class Criteria:
    """The thresholds of the claims, stated in the report next to the numbers they judge.

    Attributes:
      growth_se: the final largest gap must exceed the first by more than this many standard
        errors (``gap_grows``).
      peak_factor: the network's gap peak must lie at ``>= peak_factor`` x the grid's
        smallest sigma (``gap_peak``) ...
      net_small_fraction: ... and its gap at the smallest sigma ``<=`` this fraction of its
        maximum;
      emp_small_fraction: the optimal denoiser's gap at the smallest sigma ``>=`` this
        fraction of its maximum.
      copy_high, copy_low: memorized fractions: optimal ``>= copy_high``, network
        ``<= copy_low`` (``copying``).
      intermediate: the range of "intermediate sigma" of the ``domain`` claim.
      copy_se: the toy model's memorized fraction must be lower than the optimal
        denoiser's by more than this many standard errors (``smoothing``) ...
      gap_small_ratio: ... its gap at the smallest sigma ``<=`` this x the optimal
        denoiser's ...
      sharp_ratio: ... and its field sharpness ``<=`` this x the optimal denoiser's.

    Example:
      >>> Criteria().copy_high, Criteria(copy_high=0.8).copy_high
      (0.9, 0.8)
    """

    # gap_grows
    growth_se: float = 2.0
    # gap_peak
    peak_factor: float = 10.0
    net_small_fraction: float = 0.5
    emp_small_fraction: float = 0.9
    # copying
    copy_high: float = 0.9
    copy_low: float = 0.1
    # domain
    intermediate: tuple[float, float] = (0.1, 5.0)
    # smoothing
    copy_se: float = 2.0
    gap_small_ratio: float = 0.5
    sharp_ratio: float = 0.5

    def texts(self) -> dict[str, str]:
        """``{claim id: criterion text}`` in the order of the claims table."""
        lo, hi = self.intermediate
        return {
            "gap_grows": f"the network's largest EMA gap (over sigma) at the final evaluation "
                         f"exceeds the one at the first evaluation after step 0 by more than "
                         f"{self.growth_se:g} standard errors (se of the difference, the two "
                         f"taken as independent)",
            "gap_peak": f"the network's final EMA gap peaks at sigma >= {self.peak_factor:g} x "
                        f"the grid's smallest sigma and its gap there is <= "
                        f"{self.net_small_fraction:g} x its maximum; the optimal denoiser's "
                        f"gap at the smallest sigma is >= {self.emp_small_fraction:g} x its "
                        f"maximum",
            "copying": f"memorized fraction (copy ratio < 1/3) of the optimal denoiser's "
                       f"samples >= {self.copy_high:g} and of the network's <= "
                       f"{self.copy_low:g}",
            "domain": f"at some sampler noise level sigma in [{lo:g}, {hi:g}] the median "
                      f"normalized nearest-training-point distance of the network's "
                      f"trajectory states lies above the 90% quantile of noisy training "
                      f"states",
            "smoothing": f"the fitted toy model has delta > 0 and, against the optimal "
                         f"denoiser: a lower memorized fraction (by > {self.copy_se:g} se), a "
                         f"gap at the smallest sigma <= {self.gap_small_ratio:g} x the "
                         f"optimal denoiser's, and a field sharpness <= "
                         f"{self.sharp_ratio:g} x the optimal denoiser's at the smallest "
                         f"sampler sigma (sharpness: the largest secant slope |D(x_t+1) - "
                         f"D(x_t)| / |x_t+1 - x_t| along the segment from a training point to "
                         f"its nearest training neighbour in {SEGMENT_STEPS} steps, median "
                         f"over pairs; a jump from one point to the other shows as "
                         f"{SEGMENT_STEPS}, the identity as 1)",
        }


CLAIM_CRITERIA = Criteria().texts()
"""The criteria texts of the default :class:`Criteria`, by claim id."""


def _fmt(v, digits: int = 3) -> str:
    return "n/a" if v is None or not math.isfinite(float(v)) else f"{float(v):.{digits}g}"


def _ratio(a: float, b: float, otherwise: float) -> float:
    return a / b if b > 0 else otherwise


def _val_context(domain: Mapping[str, Any], sigmas: Sequence[float]) -> str:
    """Context for the domain claim: are noisy validation states outside the band too?"""
    if "noisy_val" not in domain or not sigmas:
        return ""
    val = {round(float(s), 12) for s in domain["noisy_val"]["farther_sigmas"]}
    both = [s for s in sigmas if round(s, 12) in val]
    return (f" (noisy validation states are above the band too at {len(both)} of these)"
            if both else " (noisy validation states are not)")


def evaluate_claims(numbers: Mapping[str, Any], criteria: Criteria | None = None) -> list[dict]:
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
      criteria: the thresholds (default: :class:`Criteria`'s).

    Returns:
      One dict per claim, in the order of :meth:`Criteria.texts`: ``id``, ``paper_claim``
      (the number of the paper's claim it tests, :data:`CLAIM_PAPER`), ``claim`` (the
      statement, :data:`CLAIM_TEXT`), ``criterion``, ``measured`` (text with the numbers)
      and ``supported`` (bool).
    """
    c = Criteria() if criteria is None else criteria
    texts = c.texts()
    out = []

    def add(cid: str, measured: str, supported: bool):
        out.append({"id": cid, "paper_claim": CLAIM_PAPER[cid], "claim": CLAIM_TEXT[cid],
                    "criterion": texts[cid], "measured": measured,
                    "supported": bool(supported)})

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
            diff > c.growth_se * se)

    cf = numbers["closed_form"]
    emp = cf["empirical"]
    s_min = cf["sigma_min"]
    net_frac = _ratio(tr["gap_at_sigma_min"], tr["gap_max_last"], math.inf)
    emp_frac = _ratio(emp["gap_at_sigma_min"], emp["gap_max"], -math.inf)
    add("gap_peak", f"network: largest gap at sigma = {_fmt(tr['peak_sigma'])} "
        f"({_fmt(tr['peak_sigma'] / s_min)} x sigma_min = {_fmt(s_min)}), gap at sigma_min = "
        f"{_fmt(net_frac, 2)} x its max; optimal denoiser: largest gap at sigma = "
        f"{_fmt(emp['peak_sigma'])}, gap at sigma_min = {_fmt(emp_frac, 3)} x its max",
        tr["peak_sigma"] >= c.peak_factor * s_min and net_frac <= c.net_small_fraction
        and emp_frac >= c.emp_small_fraction)

    mem = numbers["memorization"]
    me, mn = mem["empirical"], mem["network"]
    add("copying", f"memorized fraction: optimal denoiser {_fmt(me['memorized_fraction'])} "
        f"+- {_fmt(me['memorized_fraction_se'], 2)}, network "
        f"{_fmt(mn['memorized_fraction'])} +- {_fmt(mn['memorized_fraction_se'], 2)}",
        me["memorized_fraction"] >= c.copy_high and mn["memorized_fraction"] <= c.copy_low)

    far = sorted(float(s) for s in numbers["domain"]["network"]["farther_sigmas"])
    inside = [s for s in far if c.intermediate[0] <= s <= c.intermediate[1]]
    add("domain", "network trajectories above the noisy-train band at "
        + (f"{len(inside)} sampler sigma(s) in the range ({', '.join(_fmt(s) for s in inside)})"
           if inside else "no sampler sigma in the range")
        + f"; at {len(far)} sigma(s) overall" + _val_context(numbers["domain"], inside),
        bool(inside))

    delta = float(numbers["fit"]["delta"])
    mt = mem["toy_model"]
    field = numbers["toy_field"]
    mem_se = math.hypot(me["memorized_fraction_se"], mt["memorized_fraction_se"])
    lower_copy = me["memorized_fraction"] - mt["memorized_fraction"] > c.copy_se * mem_se
    gap_ratio = _ratio(field["toy_gap_at_sigma_min"], emp["gap_at_sigma_min"], math.inf)
    sharp_ratio = _ratio(field["sharpness_toy"], field["sharpness_empirical"], math.inf)
    add("smoothing", f"fitted delta = {_fmt(delta)}; memorized fraction toy "
        f"{_fmt(mt['memorized_fraction'])} +- {_fmt(mt['memorized_fraction_se'], 2)} vs optimal "
        f"{_fmt(me['memorized_fraction'])}; gap at sigma_min toy/optimal = {_fmt(gap_ratio, 2)}; "
        f"sharpness at sigma = {_fmt(field['sigma'])}: toy {_fmt(field['sharpness_toy'])} vs "
        f"optimal {_fmt(field['sharpness_empirical'])} ({_fmt(sharp_ratio, 3)} x)",
        delta > 0 and lower_copy and gap_ratio <= c.gap_small_ratio
        and sharp_ratio <= c.sharp_ratio)
    return out

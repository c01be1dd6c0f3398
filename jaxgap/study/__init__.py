r"""The study behind ``jaxgap reproduce``: the paper's claims measured end to end, in five
resumable stages, with a report and a claims table.

Stages (run in this order; each writes its files into the output folder and, last, its
``<stage>.json``, the JSON of its result in :mod:`jaxgap.study.results`; a stage whose
JSON exists is skipped on ``--resume``):

1. ``closed_form``: gap curves of the empirical (optimal) and Gaussian denoisers of the
   first seed's training set (``closed_form.json``, ``gap_closed_form.png``).
2. ``sweep``: the network on ``train_size`` images (the claims) and on ``memorize_size``
   images (the memorizing control), ``seeds`` seeds each, trained as one ensemble by the
   sweep engine (``sweep/``: :func:`jaxgap.sweep.run_sweep`, resumable inside the
   ensemble), evaluated over training and sampled at steps 0, T/4, T/2 and T; every
   sampled network also gets the measurements of :mod:`jaxgap.study._measure` (noisy
   copies, and at the end trajectory domain, field sharpness and a second evaluation);
   ``phase_map.png``, ``memorization.png``, ``gap_over_training.png``.
3. ``noise``: the same network on structureless noise data of the data's shape
   (``noise/``; the negative control of "the network generalizes").
4. ``controls``: the optimal denoiser as a sampler per seed: its copies, trajectory domain
   and field sharpness.
5. ``toy``: the position-error toy model fitted to every seed's final gap curve, to the
   untrained networks' and to the optimal denoiser's (``toy_fit.png``).

Then ``results.json`` (settings, timings, ``criteria_version``, the ``claims`` judged by
:func:`~jaxgap.study.judge_run` with their controls, the phase map's ``regimes``, the
memorization onset against N, and the ``disclosure``), ``report.md`` and a self-contained
``report.html`` (:mod:`jaxgap.study.report_text`). Every file is written atomically, so a
run killed at any moment leaves no partial result under a final name; on ``--resume`` a
killed stage is redone (the sweep from its last ensemble checkpoint).

Example::

    from jaxgap.study import default_config, run
    results = run(default_config("digits", quick=True), "runs/quick")
    [(c["claim"], c["supported"]) for c in results["claims"]]
"""

from jaxgap.metrics import SamplerRun, measure_quality, sample_and_measure
from jaxgap.study.claims import PAPER_CLAIMS
from jaxgap.study.config import StudyConfig, default_config
from jaxgap.study.judgement import judge_run
from jaxgap.study.pipeline import RESULTS, SETTINGS, STAGES, run
from jaxgap.study.results import ClosedFormResult, CurveSummary, StageResult

__all__ = [
    "PAPER_CLAIMS",
    "RESULTS",
    "SETTINGS",
    "STAGES",
    "ClosedFormResult",
    "CurveSummary",
    "SamplerRun",
    "StageResult",
    "StudyConfig",
    "default_config",
    "judge_run",
    "measure_quality",
    "run",
    "sample_and_measure",
]

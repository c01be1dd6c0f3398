r"""The study behind ``jaxgap reproduce``: the paper's claims measured end to end, in five
resumable stages, with a report and a claims table.

Stages (run in this order; each writes its files into the output folder and, last, its
``<stage>.json``, the JSON of its typed result in :mod:`jaxgap.study.results`; a stage
whose JSON exists is skipped on ``--resume``):

1. ``closed_form``: gap curves of the empirical (optimal) and Gaussian denoisers of the
   training set on the study's log grid (``closed_form.json``, ``gap_closed_form.png``).
2. ``train``: the default network (EDM-preconditioned MLP) trained on the same training set
   with the per-sigma gap recorded over training (:func:`jaxgap.train.train_and_evaluate`
   in ``train/``: orbax checkpoints, so a killed run continues from its last checkpoint;
   ``train.json``, ``gap_over_training.png``).
3. ``sample``: first the position-error toy model :class:`~jaxgap.theory.PositionError`
   is fitted to the network's final EMA gap curve (:func:`~jaxgap.theory.fit_delta`; the
   fit is needed to sample from the toy model), then the empirical denoiser, the network
   and the fitted toy model each draw samples from the same initial noise
   (:func:`sample_and_measure`, as ``jaxgap sample`` does); memorized fractions by the 1/3
   rule with bootstrap standard errors (``samples.npz``, ``samples_<sampler>.png`` for
   image data, ``sample.json``).
4. ``domain``: inference-domain diagnostics (normalized nearest-training-point distance,
   posterior concentration) of noisy training states, noisy validation states and every
   sampler's trajectory states at the sampler's noise levels (``domain.json``,
   ``domain.png``).
5. ``toy``: the toy-model fit figure (network, fitted toy model and optimal denoiser gap
   curves) and the toy model's field diagnostics: the effective number of training points
   its posterior spreads over on noisy validation states, against the optimal denoiser's
   (``toy.json``, ``toy_fit.png``).

Then ``results.json`` (settings, per-stage timings, the key numbers and the ``claims``
table, judged by :class:`Criteria`), ``report.md`` and a self-contained ``report.html``
(:mod:`jaxgap.study.report_text`) are written from the stages' results. Every file is
written atomically (temporary name, then rename), so a run killed at any moment leaves no
partial result under a final name; on ``--resume`` a killed stage is redone from its start
(the training stage from its last checkpoint).

Modules: :mod:`~jaxgap.study.config` (:class:`StudyConfig`, holding the network's
:class:`~jaxgap.train.TrainConfig`), :mod:`~jaxgap.study.results` (one typed result per
stage), :mod:`~jaxgap.study.claims` (:class:`Criteria`, :func:`evaluate_claims`),
:func:`~jaxgap.metrics.sample_and_measure` (sampling and its measurements),
:mod:`~jaxgap.study.report_text` (the report) and :mod:`~jaxgap.study.pipeline`
(:func:`run`).

Example::

    from jaxgap.study import default_config, run
    results = run(default_config("digits", quick=True), "runs/quick")
    [(c["claim"], c["supported"]) for c in results["claims"]]
"""

from jaxgap.metrics import SamplerRun, measure_quality, sample_and_measure
from jaxgap.study.claims import CLAIM_CRITERIA, CLAIM_TEXT, Criteria, evaluate_claims
from jaxgap.study.config import StudyConfig, default_config
from jaxgap.study.pipeline import RESULTS, SETTINGS, STAGES, run
from jaxgap.study.results import (
    ClosedFormResult,
    CurveSummary,
    DomainResult,
    SampleResult,
    ToyField,
    ToyResult,
    TrainResult,
)

__all__ = [
    "CLAIM_CRITERIA",
    "CLAIM_TEXT",
    "RESULTS",
    "SETTINGS",
    "STAGES",
    "ClosedFormResult",
    "Criteria",
    "CurveSummary",
    "DomainResult",
    "SampleResult",
    "SamplerRun",
    "StudyConfig",
    "ToyField",
    "ToyResult",
    "TrainResult",
    "default_config",
    "evaluate_claims",
    "run",
    "measure_quality",
    "sample_and_measure",
]

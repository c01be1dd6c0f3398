"""The study's report: its prose, tables and figure captions as report blocks
(:mod:`jaxgap.report.report`), rendered to ``report.md`` and ``report.html``. Each figure
follows the section of its stage."""

from __future__ import annotations

import math
from collections.abc import Sequence

from jaxgap.metrics import SEGMENT_STEPS
from jaxgap.report import report as rep
from jaxgap.report.plots import PEAK_SE
from jaxgap.study.claims import PAPER_CLAIMS
from jaxgap.study.config import StudyConfig
from jaxgap.train import describe_model

__all__ = ["FIGURES", "device_text", "report_blocks"]

FIGURES = (
    ("closed_form", "gap_closed_form.png", "Gap curves L_val - L_train of the closed-form "
     "denoisers, with +-2 se bands. A star marks a peak (the largest gap, larger than 2 "
     "standard errors), an open circle a largest gap that is not significant."),
    ("train", "gap_over_training.png", "The network's EMA gap curve at every evaluation, "
     "coloured by training step, with +-1 se bands; the star and the dotted line mark the "
     "final curve's peak (an open circle, no line, where its largest gap is not "
     "significant: < 2 se)."),
    ("sample", "samples_empirical.png", "Samples of the optimal (empirical) denoiser beside "
     "their nearest training images."),
    ("sample", "samples_network.png", "Samples of the network beside their nearest training "
     "images."),
    ("sample", "samples_toy_model.png", "Samples of the fitted toy model beside their "
     "nearest training images."),
    ("domain", "domain.png", "Inference-domain diagnostics: medians and 10-90% bands of "
     "noisy train, noisy val and the samplers' trajectory states at the sampler's sigmas."),
    ("toy", "toy_fit.png", "The position-error toy model fitted to the network's final gap "
     "curve, with the optimal denoiser's gap (+-2 se bands; stars mark peaks larger than 2 "
     "se, open circles largest gaps that are not significant)."),
)
"""``(stage, PNG file name, caption)`` of every figure, in report order; each is shown after
the section of its stage."""


def device_text(device: str) -> str:
    """The device of a run as the header shows it: results written as ``"platform:
    device_kind"`` (jaxgap 0.1) read ``"CPU"`` for ``"cpu: cpu"`` and ``"NVIDIA H200
    (gpu)"`` for ``"gpu: NVIDIA H200"``; any other text is kept.

    Example:
      >>> device_text("cpu: cpu"), device_text("gpu: NVIDIA H200"), device_text("CPU")
      ('CPU', 'NVIDIA H200 (gpu)', 'CPU')
    """
    platform, sep, kind = str(device).partition(": ")
    if not sep or not platform or not kind:
        return str(device)
    if kind.strip().lower() == platform.strip().lower():
        return platform.strip().upper()
    return f"{kind.strip()} ({platform.strip()})"


def _loss_scale(r: dict, config: StudyConfig) -> str:
    if r["data"] == "digits":
        data = ("The digits' pixel values 0..16 are mapped to [-1, 1] (x / 8 - 1), so a loss "
                "of 0.01 is a root-mean-square error of 0.1 per pixel, 5% of that range.")
    else:
        data = (f"The data are `{r['data']}` as `jaxgap.data.load` returns them; a loss of "
                f"0.01 is a root-mean-square error of 0.1 per dimension.")
    return ("Loss scale: every loss and gap in this report is a mean squared error per "
            "dimension of a denoiser's output, L(sigma) = mean over examples x0 and noise "
            "eps ~ N(0, I) of |D(x0 + sigma eps, sigma) - x0|^2 / d, with d = "
            f"{r['dim']} and no weighting over sigma (it is not the EDM training objective); "
            f"{config.num_noise} noise draw(s) per example and sigma for the closed-form "
            f"denoisers and the toy model, {config.train.eval_num_noise} for the network's "
            "evaluations. The gap is L_val(sigma) - L_train(sigma); +- values are standard "
            "errors over examples. " + data)


def _head(r: dict, config: StudyConfig) -> list:
    quick = "; quick settings (a smoke test, not evidence)" if config.quick else ""
    papers = "; ".join(f"({n}) {text}" for n, text in PAPER_CLAIMS.items())
    return [rep.heading("jaxgap reproduce: memorization in training, generalization in "
                        "inference", 1),
            rep.paragraph(f"Data `{r['data']}`: n_train = {r['num_train']}, n_val = "
                          f"{r['num_val']}, d = {r['dim']}; seed {config.seed}{quick}. Device "
                          f"{device_text(r['device'])}, JAX {r['jax_version']}, jaxgap "
                          f"{r['jaxgap_version']}."),
            rep.heading("Claims", 2),
            rep.paragraph(f"The paper (Kaiser and Kollmann, arXiv 2603.13419) makes three "
                          f"claims: {papers}. Each row below tests one of them (column "
                          "'paper claim'), judged automatically from this run's numbers by "
                          "the criterion stated beside it; 'no' means this run does not "
                          "support the row's claim."),
            rep.table(["claim", "paper claim", "criterion", "measured", "supported"],
                      [[c["claim"], _paper_claim(c), c["criterion"], c["measured"],
                        "yes" if c["supported"] else "no"] for c in r["claims"]]),
            rep.paragraph(_loss_scale(r, config))]


def _paper_claim(c: dict) -> str:
    n = c.get("paper_claim")
    return f"{n}: {PAPER_CLAIMS[n]}" if n in PAPER_CLAIMS else "n/a"


def _peak_cell(gap: float | None, se: float | None) -> str:
    """Is the largest gap a peak (> ``PEAK_SE`` standard errors)? With its ``gap / se``."""
    if gap is None or se is None or not math.isfinite(se) or se <= 0:
        return "n/a (no standard error)"
    z = gap / se
    if z > PEAK_SE:
        return f"yes ({z:.2g} se)"
    return f"no ({z:.2g} se): not significant"


def _figures(stage: str, figures: Sequence[str]) -> list:
    return [rep.figure(name, caption) for st, name, caption in FIGURES
            if st == stage and name in figures]


def _closed_form_and_training(r: dict, config: StudyConfig, figures: Sequence[str]) -> list:
    cf, tr, tc = r["closed_form"], r["training"], config.train
    return [rep.heading("1. Closed-form denoisers", 2),
            rep.table(["denoiser", "largest gap", "at sigma", "a peak? (> 2 se)",
                       "gap at sigma_min"],
                      [[name, f"{cf[name]['gap_max']:.4g} +- {cf[name]['gap_max_se']:.2g}",
                        f"{cf[name]['peak_sigma']:.3g}",
                        _peak_cell(cf[name]["gap_max"], cf[name]["gap_max_se"]),
                        f"{cf[name]['gap_at_sigma_min']:.4g}"]
                       for name in ("empirical", "gaussian")]),
            *_figures("closed_form", figures),
            rep.heading("2. Training the network", 2),
            rep.paragraph(f"{describe_model(tc)}, {tc.steps} steps, batch "
                          f"{tc.batch_size}, lr {tc.lr:g}; EMA gap on {tc.eval_sigmas} "
                          f"sigmas in [{tc.sigma_min:g}, {tc.sigma_max:g}] every "
                          f"{tc.eval_every} steps."),
            rep.table(["step", "largest EMA gap"],
                      [[str(st), f"{g:.4g}"] for st, g in tr["gap_max_by_step"]]),
            *_figures("train", figures)]


def _sampling(r: dict, config: StudyConfig, figures: Sequence[str]) -> list:
    mem = r["memorization"]
    b = [rep.heading("3. Sampling and memorization", 2),
         rep.paragraph(f"{config.num_samples} samples per sampler, Heun with "
                       f"{config.sample_steps} steps (EDM schedule), the same initial noise "
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
    return b + _quality(r.get("quality")) + _figures("sample", figures)


def _quality(q: dict | None) -> list:
    """The sample-quality table (:func:`jaxgap.study.measure_quality`), when measured."""
    if not q:
        return []
    acc = q.get("classifier_accuracy")
    spaces = [("pixels", "pixels")] + ([("features", "features")] if acc is not None else [])
    rows = []
    for name, row in q["sets"].items():
        for space, label in spaces:
            m = row[space]
            rows.append([name, label, f"{m['precision']:.3f}", f"{m['recall']:.3f}",
                         f"{m['density']:.3f}", f"{m['coverage']:.3f}", f"{m['frechet']:.4g}"])
    feats = (f" and in the penultimate features of a small classifier trained on the "
             f"training labels (held-out accuracy {acc:.3f})" if acc is not None else "")
    return [rep.paragraph(
        f"Sample quality against the {q['num_reference']} held-out validation points, in "
        f"pixels{feats}: k-NN precision and recall (Kynkäänniemi et al. 2019), density and "
        f"coverage (Naeem et al. 2020), k = {q['k']}, and the Fréchet distance between "
        "Gaussians fitted to the two sets. The first row, real training images, is the "
        "reference value: copies score like it, poor samples score lower precision, density "
        "and coverage and a larger Fréchet distance. Quality says nothing about copying (see "
        "the memorized fraction above)."),
        rep.table(["samples", "space", "precision", "recall", "density", "coverage",
                   "Fréchet"], rows)]


def _domain_and_toy(r: dict, figures: Sequence[str]) -> list:
    rows = []
    for name, d in r["domain"].items():
        far = ", ".join(f"{x:.3g}" for x in sorted(d["farther_sigmas"])) or "none"
        close = ", ".join(f"{x:.3g}" for x in sorted(d["closer_sigmas"])) or "none"
        rows.append([name, far, close])
    f = r["toy_field"]
    return [rep.heading("4. Inference-domain diagnostics", 2),
            rep.paragraph("Sampler sigmas where a sampler's median normalized nearest-training "
                          "distance lies above (farther) or below (closer) the 10-90% band of "
                          "noisy training states."),
            rep.table(["trajectories of", "farther at sigma", "closer at sigma"], rows),
            *_figures("domain", figures),
            rep.heading("5. Toy model", 2),
            rep.paragraph(f"Field sharpness (largest secant slope of D between neighbouring "
                          f"training points, median over pairs; {SEGMENT_STEPS} = a jump, 1 = "
                          f"the identity) at sigma = {f['sigma']:.3g}: toy model "
                          f"{f['sharpness_toy']:.3g}, optimal denoiser "
                          f"{f['sharpness_empirical']:.3g}."),
            rep.paragraph(f"At sigma = {f['sigma']:.3g} the posterior of the fitted toy model "
                          f"spreads over a median {f['neff_toy']:.3g} effective training "
                          f"points on noisy validation states, the optimal denoiser's over "
                          f"{f['neff_empirical']:.3g}; its gap at the smallest sigma is "
                          f"{f['toy_gap_at_sigma_min']:.4g}."),
            *_figures("toy", figures)]


def report_blocks(results: dict, config: StudyConfig, figures: Sequence[str],
                  stages: Sequence[str]) -> list[rep.Block]:
    """The report of a finished run.

    Args:
      results: the ``results.json`` document.
      config: the run's settings.
      figures: the PNG files present (their figures are shown, each after the section of
        its stage).
      stages: the stage names, in order (the timings table).

    Returns:
      The report's blocks.
    """
    b = (_head(results, config) + _closed_form_and_training(results, config, figures)
         + _sampling(results, config, figures) + _domain_and_toy(results, figures))
    secs = results["stage_seconds"]
    b += [rep.heading("Timings", 2),
          rep.table(["stage", "seconds", "this invocation"],
                    [[n, f"{secs[n]:.1f}" if secs.get(n) is not None else "n/a",
                      "skipped (done)" if n in results["stages_skipped"] else "run"]
                     for n in stages])]
    return b

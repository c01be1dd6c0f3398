"""The study's report: its prose, tables and figure captions as report blocks
(:mod:`jaxgap.report.report`), rendered to ``report.md`` and ``report.html``."""

from __future__ import annotations

from collections.abc import Sequence

from jaxgap.metrics import SEGMENT_STEPS
from jaxgap.report import report as rep
from jaxgap.study.config import StudyConfig

__all__ = ["FIGURES", "report_blocks"]

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
"""``(stage, PNG file name, caption)`` of every figure, in report order."""


def _head(r: dict, config: StudyConfig) -> list:
    quick = "; quick settings (a smoke test, not evidence)" if config.quick else ""
    return [rep.heading("jaxgap reproduce: memorization in training, generalization in "
                        "inference", 1),
            rep.paragraph(f"Data `{r['data']}`: n_train = {r['num_train']}, n_val = "
                          f"{r['num_val']}, d = {r['dim']}; seed {config.seed}{quick}. Device "
                          f"{r['device']}, JAX {r['jax_version']}, jaxgap "
                          f"{r['jaxgap_version']}."),
            rep.heading("Claims", 2),
            rep.paragraph("Judged automatically from this run's numbers with the stated "
                          "criteria; 'no' means this run does not support the claim."),
            rep.table(["claim", "criterion", "measured", "supported"],
                      [[c["claim"], c["criterion"], c["measured"],
                        "yes" if c["supported"] else "no"] for c in r["claims"]])]


def _closed_form_and_training(r: dict, config: StudyConfig) -> list:
    cf, tr, tc = r["closed_form"], r["training"], config.train
    return [rep.heading("1. Closed-form denoisers", 2),
            rep.table(["denoiser", "largest gap", "at sigma", "gap at sigma_min"],
                      [[name, f"{cf[name]['gap_max']:.4g} +- {cf[name]['gap_max_se']:.2g}",
                        f"{cf[name]['peak_sigma']:.3g}",
                        f"{cf[name]['gap_at_sigma_min']:.4g}"]
                       for name in ("empirical", "gaussian")]),
            rep.heading("2. Training the network", 2),
            rep.paragraph(f"MLP {tc.width} x {tc.depth}, {tc.steps} steps, batch "
                          f"{tc.batch_size}, lr {tc.lr:g}; EMA gap on {tc.eval_sigmas} "
                          f"sigmas in [{tc.sigma_min:g}, {tc.sigma_max:g}] every "
                          f"{tc.eval_every} steps."),
            rep.table(["step", "largest EMA gap"],
                      [[str(st), f"{g:.4g}"] for st, g in tr["gap_max_by_step"]])]


def _sampling(r: dict, config: StudyConfig) -> list:
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
    return b


def _domain_and_toy(r: dict) -> list:
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
                          f"{f['toy_gap_at_sigma_min']:.4g}.")]


def report_blocks(results: dict, config: StudyConfig, figures: Sequence[str],
                  stages: Sequence[str]) -> list[rep.Block]:
    """The report of a finished run.

    Args:
      results: the ``results.json`` document.
      config: the run's settings.
      figures: the PNG files present (their figures are shown).
      stages: the stage names, in order (the timings table).

    Returns:
      The report's blocks.
    """
    b = (_head(results, config) + _closed_form_and_training(results, config)
         + _sampling(results, config) + _domain_and_toy(results))
    b.append(rep.heading("Figures", 2))
    b += [rep.figure(name, caption) for _, name, caption in FIGURES if name in figures]
    secs = results["stage_seconds"]
    b += [rep.heading("Timings", 2),
          rep.table(["stage", "seconds", "this invocation"],
                    [[n, f"{secs[n]:.1f}" if secs.get(n) is not None else "n/a",
                      "skipped (done)" if n in results["stages_skipped"] else "run"]
                     for n in stages])]
    return b

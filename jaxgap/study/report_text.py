"""The study's report: its prose, tables and figure captions as report blocks
(:mod:`jaxgap.report.report`), rendered to ``report.md`` and ``report.html``. Each figure
follows the section of its stage."""

from __future__ import annotations

import math
from collections.abc import Sequence

from jaxgap.report import report as rep
from jaxgap.study.claims import PAPER_CLAIMS
from jaxgap.study.config import StudyConfig
from jaxgap.train import describe_model

__all__ = ["FIGURES", "device_text", "report_blocks"]

FIGURES = (
    ("regimes", "phase_map.png", "Phase map (from the sweep engine): memorized fraction (1/3 "
     "rule, mean over seeds) per training-set size N and sampled step, with the gap-peak "
     "height; the larger N carries the claims, the smaller one is the memorizing control."),
    ("regimes", "memorization.png", "Memorized fraction over training per N with 95% "
     "intervals over seeds, against the held-out baseline."),
    ("closed_form", "gap_closed_form.png", "Gap curves L_val - L_train of the closed-form "
     "denoisers (first seed's training set), with +-2 se bands."),
    ("training", "gap_over_training.png", "The first seed's EMA gap curve at every "
     "evaluation, coloured by training step, with +-1 se bands."),
    ("sampling", "samples_network.png", "The first seed's samples beside their nearest "
     "training images."),
    ("domain", "domain.png", "Inference-domain diagnostics of the first seed: medians and "
     "10-90% bands of noisy train, noisy val and the network's trajectory states."),
    ("toy", "toy_fit.png", "The position-error toy model fitted to the first seed's final "
     "gap curve, with the optimal denoiser's gap."),
    ("factor_model_size", "factor_sizes.png", "Memorized fraction per model-size rung at step "
     "0 and at the end, with 95% t-intervals over seeds and the held-out baseline."),
    ("factor_condition", "factor_conditions.png", "Memorized fraction per condition "
     "granularity at step 0 and at the end."),
    ("factor_guidance", "factor_guidance.png", "Memorized fraction per guidance weight "
     "(class labels) at step 0 and at the end."),
)
"""``(section, PNG file name, caption)`` of every figure, in report order."""


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


def _iv(c: dict) -> str:
    lo, hi = (c.get("interval") or [None, None])[:2]
    est = c.get("estimate")
    f = (lambda v: "n/a" if v is None or not math.isfinite(float(v)) else f"{float(v):.3g}")
    return f"{f(est)} [{f(lo)}, {f(hi)}]"


def _controls(c: dict) -> str:
    return "; ".join(f"{x['name']} ({x['kind']}): "
                     f"{'supported' if x['supported'] else 'not supported'}"
                     f"{'' if x['as_required'] else ' - NOT AS REQUIRED'}"
                     for x in c["controls"]) or "none"


def _head(r: dict, config: StudyConfig) -> list:
    quick = "; quick settings (a smoke test, not evidence)" if config.quick else ""
    papers = "; ".join(f"({n}) {text}" for n, text in PAPER_CLAIMS.items())
    tc = config.train
    return [rep.heading("jaxgap reproduce: memorization in training, generalization in "
                        "inference", 1),
            rep.paragraph(f"Data `{r['data']}`: n_train = {tc.train_size} per seed, n_val = "
                          f"{r['num_val']}, d = {r['dim']}; seeds {r['seeds']}{quick}; "
                          f"{describe_model(tc)}, {tc.steps} steps at batch {tc.batch_size}. "
                          f"Device {device_text(r['device'])}, JAX {r['jax_version']}, "
                          f"jaxgap {r['jaxgap_version']}; total "
                          f"{r.get('total_seconds') or 0:.0f} s."),
            rep.heading("Claims", 2),
            rep.paragraph(f"The paper (Kaiser and Kollmann, arXiv 2603.13419) makes three "
                          f"claims: {papers}. Each row is judged by the pre-registered "
                          f"criteria (version {r['criteria_version']}, "
                          "`jaxgap/study/criteria.toml`, rationale in docs/criteria.md) on "
                          "the pooled seeds (estimate with its 95% interval), with the "
                          "controls the study ran: a negative control must come out not "
                          "supported, a positive one supported, or the claim is not "
                          "supported."),
            rep.table(["claim", "supported", "estimate [95% interval]", "seeds supporting",
                       "controls", "criterion", "measured"],
                      [[c["claim"], "yes" if c["supported"] else "no", _iv(c),
                        f"{c['seeds_supporting']}/{c['seeds']}", _controls(c), c["criterion"],
                        c["measured"]] for c in r["claims"]]),
            rep.paragraph(_loss_scale(r, config))]


def _figures(section: str, figures: Sequence[str]) -> list:
    return [rep.figure(name, caption) for sec, name, caption in FIGURES
            if sec == section and name in figures]


def _regimes(r: dict, figures: Sequence[str]) -> list:
    reg = r["regimes"]
    b = [rep.heading("Regimes: the phase map (training time and dataset size)", 2),
         *_figures("regimes", figures),
         rep.paragraph("Per cell: does the network not copy (the copying criterion on the "
                       "cell's seeds, no controls), and the mean gap-peak height. "
                       + " ".join(s + "." for s in reg["statements"])),
         rep.table(["N", "step", "no copying", "copy excess [95%]", "seeds", "gap peak"],
                   [[str(c["train_size"]), str(c["step"]), "yes" if c["no_copying"] else "no",
                     _iv({"estimate": c["copy_excess"], "interval": c["interval"]}),
                     f"{c['seeds_supporting']}/{c['seeds']}",
                     "n/a" if c["gap_peak_height"] is None else f"{c['gap_peak_height']:.4g}"]
                    for c in reg["cells"]])]
    onset = r.get("memorization_onset") or []
    for o in onset:
        b.append(rep.paragraph(f"Memorization onset against N: {o.get('shows', 'n/a')}. "
                               f"{o.get('note', '')} Reference: {o.get('reference', '')}."))
    return b


def _sections(r: dict, figures: Sequence[str]) -> list:
    cf = r["closed_form"]
    b = [rep.heading("Closed-form denoisers", 2),
         rep.table(["denoiser", "largest gap", "at sigma", "gap at sigma_min"],
                   [[name, f"{cf[name]['gap_max']:.4g} +- {cf[name]['gap_max_se']:.2g}",
                     f"{cf[name]['peak_sigma']:.3g}", f"{cf[name]['gap_at_sigma_min']:.4g}"]
                    for name in ("empirical", "gaussian")]),
         *_figures("closed_form", figures)]
    for section, title in (("training", "Training (first seed)"),
                           ("sampling", "Samples (first seed)"),
                           ("domain", "Inference domain (first seed)"),
                           ("toy", "Toy model (first seed)")):
        figs = _figures(section, figures)
        if figs:
            b += [rep.heading(title, 2), *figs]
    return b + _factors(r, figures)


FACTOR_TITLES = {"factor_time": "Training time", "factor_data_size": "Dataset size",
                 "factor_model_size": "Model size", "factor_condition":
                 "Condition granularity", "factor_guidance": "Guidance"}


def _factors(r: dict, figures: Sequence[str]) -> list:
    rows = {c["id"]: c for c in r.get("factors") or []}
    b = [rep.heading("The five factors", 2),
         rep.paragraph("Each factor row compares the memorized fraction at two levels of one "
                       "factor, seed by seed, by the pre-registered factor criterion; its "
                       "negative control is the same comparison between the untrained "
                       "networks. Training time and dataset size come from the phase map's "
                       "sweeps of every run; model size, condition granularity and guidance "
                       "from `jaxgap reproduce --full`.")]
    for cid, title in FACTOR_TITLES.items():
        b.append(rep.heading(title, 3))
        c = rows.get(cid)
        if c is None:
            b.append(rep.paragraph("Not run: `jaxgap reproduce --full` runs this factor "
                                   "(docs/model_sizes.md and docs/conditioning.md hold "
                                   "separate sweeps of it)."))
            continue
        figs = (_figures(cid, figures) if cid not in ("factor_time", "factor_data_size")
                else [rep.paragraph("Figure: the phase map and the memorized fraction over "
                                    "training (Regimes, above).")])
        b += [rep.table(["claim", "supported", "estimate [95% interval]", "seeds supporting",
                         "controls", "measured"],
                        [[c["claim"], "yes" if c["supported"] else "no", _iv(c),
                          f"{c['seeds_supporting']}/{c['seeds']}", _controls(c),
                          c["measured"]]]), *figs]
    return b


def _disclosure(r: dict) -> list:
    d = r["disclosure"]
    return [rep.heading("Disclosure", 2),
            rep.paragraph("How the defaults were chosen: " + d["defaults"]),
            rep.paragraph("What was tried before: " + d["tried_before"]),
            rep.paragraph("Controls: " + d["controls"]),
            rep.paragraph("Where claims flip in the phase map: "
                          + "; ".join(d["flips"]) + ".")]


def report_blocks(results: dict, config: StudyConfig, figures: Sequence[str]) -> list:
    """The report of a finished run.

    Args:
      results: the ``results.json`` document.
      config: the run's settings.
      figures: the PNG files present (each shown in its section).

    Returns:
      The report's blocks.
    """
    b = (_head(results, config) + _regimes(results, figures) + _sections(results, figures)
         + _disclosure(results))
    secs = results["stage_seconds"]
    b += [rep.heading("Timings", 2),
          rep.table(["stage", "seconds", "this invocation"],
                    [[n, f"{v:.1f}" if v is not None else "n/a",
                      "skipped (done)" if n in results["stages_skipped"] else "run"]
                     for n, v in secs.items()])]
    return b

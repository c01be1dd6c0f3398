"""The claims table of a study run: every claim judged by the pre-registered criteria
(:mod:`jaxgap.study.criteria`) on the run's seeds, with the controls the study ran, and the
per-regime verdicts of the phase map.

The records come from the run folder: the sweep's ``losses.csv``, ``samples.csv`` and
``extras.json`` (the networks: ``train_size`` images, and the memorizing control's
``memorize_size``), the noise sweep's (the structureless-data control), and the results of
the ``controls`` (optimal denoiser as a sampler) and ``toy`` (fits) stages.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from jaxgap.study import criteria as cr
from jaxgap.study.criteria import Control
from jaxgap.study.results import CurveSummary
from jaxgap.sweep import tables

__all__ = ["DISCLOSURE", "judge_run", "regimes"]

DISCLOSURE = {
    "defaults": (
        "The default network (the EDM-preconditioned MLP of width 256 and depth 4 trained for "
        "8000 steps at batch 128 on 512 digits) and its grid were fixed in jaxgap 0.1, "
        "after single-seed runs, so that the run took about 2 minutes on 2 CPU cores and "
        "the network's memorized fraction stayed under the version-1 threshold of 0.1 "
        "(it was 0.098, 0.086, 0.098 on seeds 0-2); they are kept unchanged in this version "
        "so that the new criteria judge the same point rather than one chosen for them."),
    "tried_before": (
        "Criteria version 1 judged one seed by point estimates against constants; an audit "
        "found that the untrained network passed the gap-peak claim, that the copy "
        "threshold sat inside the interval of the network's memorized fraction, that noisy "
        "validation states leave the noisy-train band at the same sigmas as the "
        "trajectories, and that the smoothing criterion could not fail at the smallest "
        "sigma (criteria.toml, changelog 1). Longer runs of the same network copy more: "
        "memorized fraction 0.26 at 12k steps and 0.46-0.51 at 16k (runs/sweep_digits: 0.46 "
        "[0.44, 0.48] over 4 seeds at N = 512 and 16k steps)."),
    "controls": (
        "Run by the study itself: the untrained (step-0) networks of the same ensemble; the "
        "same network on structureless noise data of the data's shape (every pixel uniform "
        "on the data's range; noise_steps steps, a quarter of the network's by default, to "
        "fit the time budget); the same network on memorize_size images for memorize_steps "
        "steps (half the network's by default: 4000 epochs of 128 images, memorizing); the "
        "optimal (empirical) denoiser as a sampler; a second evaluation of each final "
        "network with fresh noise; and held-out real images scored as samples (the "
        "baseline). Each control's seeds are listed in its row."),
}
"""How the default settings were chosen, what was tried before, and the controls run."""


def _read(folder: Path) -> tuple[list[dict], list[dict], list[dict]]:
    losses = tables.read_csv(folder / "losses.csv")
    samples = tables.read_csv(folder / "samples.csv")
    extras_path = folder / "extras.json"
    extras = json.loads(extras_path.read_text()) if extras_path.exists() else []
    return losses, samples, extras


def _pick(rows, *, size=None, step=None, key="seed") -> dict:
    out = {}
    for r in rows:
        if (r.get("half") or 0) or (size is not None and r["train_size"] != size) or (
                step is not None and r["step"] != step):
            continue
        out[r[key]] = r
    return dict(sorted(out.items()))


def _curves(losses, size, step) -> dict:
    """``{seed: {"sigmas", "gap", "gap_se"}}`` EMA curves of one (size, step)."""
    rows = [r for r in losses if r["train_size"] == size and r["step"] == step
            and not (r.get("half") or 0)]
    return {c["seed"]: c for c in cr.curves_from_rows(rows)} if rows else {}


def _summary(c) -> CurveSummary:
    return CurveSummary.of(c["sigmas"], c["gap"], c["gap_se"])


def _copy_rec(extra_row, seed) -> dict:
    return {"seed": seed, **extra_row["extra"]["copies"]}


def _sharp_at(sharp: Mapping, sigma: float) -> tuple[float, float]:
    s = np.asarray(sharp["sigmas"], np.float64)
    if s.size == 0:
        return math.nan, math.nan
    k = int(np.argmin(np.abs(np.log(s) - math.log(sigma))))
    return float(sharp["network"][k]), float(sharp["optimal"][k])


def _smooth_rec(seed, sigma, sharp, fit) -> dict:
    net, opt = _sharp_at(sharp, sigma) if sharp else (math.nan, math.nan)
    return {"seed": seed, "sigma": sigma, "sharpness_network": net, "sharpness_optimal": opt,
            "fit_residual": fit["fit_residual"], "delta": fit["delta"],
            "delta_low": fit["delta_low"], "delta_high": fit["delta_high"]}


def judge_run(out, config, done, *, criteria=None) -> dict:
    """The claims of a finished study run.

    Args:
      out: the run folder.
      config: its :class:`~jaxgap.study.StudyConfig`.
      done: the stage results (:class:`jaxgap.study._stages.Done`).
      criteria: default :func:`~jaxgap.study.criteria.load_criteria`.

    Returns:
      ``{"criteria_version", "claims": [claim objects], "regimes": ..., "records": ...}``.
    """
    crit = criteria or cr.load_criteria()
    out = Path(out)
    n, m, t = config.train.train_size, config.memorize_size, config.train.steps
    losses, samples, extras = _read(out / "sweep")
    _, _, m_extras = _read(out / "memorize")
    _, n_samples, n_extras = _read(out / "noise")
    phase_losses, phase_samples, _ = _read(out / "phase")
    sigma_min = float(done.closed_form.sigma_min)
    sigma_data = float(config.train.sigma_data)
    final, untrained = _curves(losses, n, t), _curves(losses, n, 0)
    control_seeds = config.seed_list(config.control_seeds)
    untrained = {s: c for s, c in untrained.items() if s in control_seeds}
    ex_final, ex_zero = _pick(extras, size=n, step=t), _pick(extras, size=n, step=0)
    ex_mem = _pick(m_extras, size=m, step=config.steps_of("memorize"))
    rows_final, rows_zero = _pick(samples, size=n, step=t), _pick(samples, size=n, step=0)
    optimal = done.controls.doc["optimal"]
    fits = done.toy.doc
    claims = []

    # gap peak
    claims.append(cr.judge_gap_peak(
        list(final.values()), sigma_min=sigma_min, sigma_data=sigma_data, criteria=crit,
        controls=[Control("untrained network (step 0)", "negative", list(untrained.values()))]))

    # gap grows
    first_step = min((r["step"] for r in losses if r["step"] > 0), default=None)
    firsts = _curves(losses, n, first_step) if first_step is not None else {}
    grows, recheck = [], []
    for s, c in final.items():
        last = _summary(c)
        if s in firsts:
            f = _summary(firsts[s])
            grows.append({"seed": s, "gap_max_first": f.gap_max, "gap_max_first_se":
                          f.gap_max_se, "gap_max_last": last.gap_max,
                          "gap_max_last_se": last.gap_max_se})
        if s in ex_final and "recheck" in ex_final[s]["extra"]:
            rc = ex_final[s]["extra"]["recheck"]
            recheck.append({"seed": s, "gap_max_first": rc["gap_max"],
                            "gap_max_first_se": rc["gap_max_se"],
                            "gap_max_last": last.gap_max, "gap_max_last_se": last.gap_max_se})
    claims.append(cr.judge_gap_grows(grows, criteria=crit, controls=[
        Control("final network evaluated twice (fresh noise)", "negative", recheck)]))

    # copying
    copies = [_copy_rec(e, s) for s, e in ex_final.items()]
    opt_copies = [{"seed": o["seed"], **o["copies"]} for o in optimal]
    mem_copies = [_copy_rec(e, s) for s, e in ex_mem.items()]
    claims.append(cr.judge_no_copying(copies, criteria=crit, controls=[
        Control("optimal (empirical) denoiser", "negative", opt_copies),
        Control(f"network trained on {m} images (memorizing)", "negative", mem_copies),
        Control("optimal denoiser copies", "positive", opt_copies)]))
    held_out = [{"seed": c["seed"], "num": c["base_num"], "flagged": c["base_flagged"]}
                for c in opt_copies]
    copies_claim = cr.judge_copies(opt_copies, criteria=crit, controls=[
        Control("held-out real images", "negative", held_out)])
    copies_claim["claim"] = "the optimal (empirical) denoiser copies its training images"
    claims.append(copies_claim)

    # domain
    dom = [{"seed": s, **e["extra"]["domain"]} for s, e in ex_final.items()
           if "domain" in e["extra"]]
    mem_dom = [{"seed": s, **e["extra"]["domain"]} for s, e in ex_mem.items()
               if "domain" in e["extra"]]
    claims.append(cr.judge_domain(
        dom, sigma_min=sigma_min, sigma_data=sigma_data, criteria=crit, controls=[
            Control("optimal (empirical) denoiser", "negative",
                    [{"seed": o["seed"], **o["domain"]} for o in optimal]),
            Control(f"network trained on {m} images (memorizing)", "negative", mem_dom)]))

    # generalization
    def gen(rows, ex):
        return [{**_copy_rec(ex[s], s), **cr.quality_record(r)} for s, r in rows.items()
                if s in ex]

    t_noise = config.steps_of("noise")
    noise_rows, noise_ex = _pick(n_samples, step=t_noise), _pick(n_extras, step=t_noise)
    zero_rows = {s: r for s, r in rows_zero.items() if s in control_seeds}
    claims.append(cr.judge_generalization(gen(rows_final, ex_final), criteria=crit, controls=[
        Control("untrained network (step 0)", "negative", gen(zero_rows, ex_zero)),
        Control("network trained on structureless noise data", "negative",
                gen(noise_rows, noise_ex))]))

    # smoothing
    fit_final = {f["seed"]: f for f in fits["final"]}
    fit_zero = {f["seed"]: f for f in fits["untrained"]}
    smooth = [_smooth_rec(s, _summary(c).peak_sigma, ex_final.get(s, {}).get(
        "extra", {}).get("sharpness"), fit_final[s]) for s, c in final.items() if s in fit_final]
    zero = [_smooth_rec(s, _summary(c).peak_sigma, ex_zero.get(s, {}).get(
        "extra", {}).get("sharpness"), fit_zero[s]) for s, c in untrained.items()
        if s in fit_zero]
    emp = done.closed_form.curves["empirical"]
    opt_sigma = _summary(emp).peak_sigma
    opt = [_smooth_rec(o["seed"], opt_sigma, o["sharpness"], fits["optimal"][0])
           for o in optimal[:1]]
    claims.append(cr.judge_smoothing(smooth, sigma_min=sigma_min, criteria=crit, controls=[
        Control("untrained network (step 0)", "negative", zero),
        Control("optimal denoiser as the network", "negative", opt)]))
    return {"criteria_version": crit.version, "claims": claims,
            "regimes": regimes(phase_samples, extras + m_extras, phase_losses, crit=crit)}


def regimes(samples, extras, losses, *, crit=None) -> dict:
    """Per phase-map cell (training-set size, sampled step after 0): the no-copying verdict
    over its seeds (no controls: the cell's own numbers) and the gap-peak height; and, per
    size, the last step up to which samples stay at the held-out baseline."""
    crit = crit or cr.load_criteria()
    cells, statements = [], []
    sizes = sorted({r["train_size"] for r in samples})
    for size in sizes:
        steps = sorted({r["step"] for r in samples if r["train_size"] == size and r["step"]})
        holds_until, fails_from = None, None
        for step in steps:
            ex = _pick(extras, size=size, step=step)
            if not ex:
                continue
            v = cr.judge_no_copying([_copy_rec(e, s) for s, e in ex.items()], criteria=crit)
            heights = [_summary(c).gap_max for c in _curves(losses, size, step).values()]
            cells.append({"train_size": size, "step": step, "no_copying": v["supported"],
                          "copy_excess": v["estimate"], "interval": v["interval"],
                          "seeds_supporting": v["seeds_supporting"], "seeds": v["seeds"],
                          "gap_peak_height": float(np.mean(heights)) if heights else None})
            if v["supported"] and fails_from is None:
                holds_until = step
            elif not v["supported"] and fails_from is None:
                fails_from = step
        if holds_until is None:
            statements.append(f"N = {size}: samples exceed the held-out baseline from the "
                              f"first sampled step ({steps[0] if steps else 'none'}) on")
        else:
            statements.append(f"N = {size}: samples stay at the held-out baseline up to step "
                              f"{holds_until}" + (f"; from step {fails_from} on they copy "
                                                  f"more than held-out images do"
                                                  if fails_from else " (every sampled step)"))
    return {"cells": cells, "statements": statements}

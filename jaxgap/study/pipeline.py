"""Run the study: every stage not yet done, then ``results.json`` and the reports."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

from jaxgap import __version__
from jaxgap import train as train_mod
from jaxgap._mc import device_text
from jaxgap.report import report as rep
from jaxgap.study import _stages
from jaxgap.study._factors import FACTOR_STAGES, factor_claims
from jaxgap.study.config import StudyConfig, settings_diff
from jaxgap.study.criteria import load_criteria
from jaxgap.study.judgement import DISCLOSURE, judge_run
from jaxgap.study.report_text import FIGURES, report_blocks

__all__ = ["FULL_STAGES", "RESULTS", "SETTINGS", "STAGES", "run", "stages"]

STAGES = tuple(s.name for s in _stages.STAGES)
FULL_STAGES = STAGES + tuple(s.name for s in FACTOR_STAGES)


def stages(config: StudyConfig) -> tuple:
    """The stages of a run: the core ones, and the factor study's with ``full``."""
    return _stages.STAGES + (FACTOR_STAGES if config.full else ())
SETTINGS = "settings.json"
RESULTS = "results.json"


def _json_writer(doc) -> Callable:
    return rep.text_writer(json.dumps(rep.finite_or_none(doc), indent=2, allow_nan=False) + "\n")


def _check_out(out: Path, config: StudyConfig, resume: bool) -> None:
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
        diff = settings_diff(old, config)
        if diff == ["full"] and config.full:  # --full --resume adds the factor study
            diff = []
        if diff:
            raise ValueError(f"out: {str(out)!r} holds a run with other settings (differs in "
                             f"{', '.join(diff)}); choose another --out")
    elif out.exists() and any(out.iterdir()) and not (out / "train").exists():
        raise ValueError(f"out: {str(out)!r} holds no jaxgap reproduce run (no {SETTINGS})")


def run(config: StudyConfig, out, *, resume: bool = False, progress: bool | str | None = None,
        log: Callable[[str], None] | None = print) -> dict:
    """Run the study: every stage not yet done, then results.json and the reports.

    Args:
      config: the run's :class:`~jaxgap.study.StudyConfig`.
      out: output folder (created; must be empty unless ``resume``).
      resume: skip the stages whose results exist; continue training from its last
        checkpoint; redo a stage that was killed.
      progress: None or True: bars on a terminal, a log line every few seconds otherwise;
        False: none (see :func:`jaxgap._progress.bar`).
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
    ds = train_mod.load_data(config.train)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(".*.tmp"):  # temporary files of a killed run (never final names)
        stale.unlink(missing_ok=True)
    if not (out / SETTINGS).exists() or config.full:  # (a resumed run may gain --full)
        rep.write_files(str(out), {SETTINGS: _json_writer(config.to_dict())})
    val_size = config.train.eval_val_size
    val = np.asarray(ds.val if val_size is None else ds.val[:val_size])
    ctx = _stages.Context(config, out, ds, val, config.sigmas(), config.eval_key(), progress)
    done = _stages.Done()
    seconds: dict[str, float | None] = {}
    skipped = []
    todo = stages(config)
    for i, stage in enumerate(todo, 1):
        head = f"[{i}/{len(todo)}] {stage.title}"
        path = out / f"{stage.name}.json"
        if resume and path.exists():
            result = stage.result.from_json(path.read_text())
            skipped.append(stage.name)
            log(f"{head}: skipped (done)")
        else:
            log(f"{head} ...")
            t0 = time.perf_counter()
            result, files = stage.run(ctx, done)
            result = dataclasses.replace(result, seconds=round(time.perf_counter() - t0, 3))
            text = result.to_json()
            writers = {n: w if callable(w) else (lambda f, data=w: f.write(data))
                       for n, w in files.items()}
            writers[path.name] = rep.text_writer(text)  # renamed last: the stage's marker
            rep.write_files(str(out), writers)
            result = stage.result.from_json(text)  # as a resumed run reads it back
            log(f"{head}: done in {result.seconds:.1f} s")
        setattr(done, stage.name, result)
        seconds[stage.name] = result.seconds
    figures = _stages.detail_figures(ctx)
    if figures:
        rep.write_files(str(out), {n: (lambda f, data=b: f.write(data))
                                   for n, b in figures.items()})
    results = _results(ctx, done, seconds, skipped)
    _write_reports(out, config, results)
    return results


def _results(ctx: _stages.Context, done: _stages.Done, seconds: dict, skipped: list) -> dict:
    judged = judge_run(ctx.out, ctx.config, done)
    cf = done.closed_form
    ds = ctx.ds
    return rep.finite_or_none({
        "command": "reproduce",
        "settings": ctx.config.to_dict(),
        "data": ds.name, "num_train": ds.num_train, "num_val": int(ctx.val.shape[0]),
        "dim": ds.dim,
        "seeds": ctx.config.seed_list(),
        "stage_seconds": seconds,
        "total_seconds": sum(v for v in seconds.values() if v is not None),
        "stages_skipped": skipped,
        "closed_form": {"sigma_min": cf.sigma_min,
                        **{name: cf.summaries[name]._asdict() for name in ("empirical",
                                                                           "gaussian")}},
        "criteria_version": judged["criteria_version"],
        "claims": judged["claims"],
        "factors": factor_claims(ctx.out, ctx.config, load_criteria()),
        "regimes": judged["regimes"],
        "memorization_onset": done.memorize.doc.get("onset"),
        "disclosure": {**DISCLOSURE, "flips": judged["regimes"]["statements"]},
        "jax_version": jax.__version__,
        "jaxgap_version": __version__,
        "device": device_text(),
    })


def _write_reports(out: Path, config: StudyConfig, results: dict) -> None:
    figures = [name for _, name, _ in FIGURES if (out / name).exists()]
    images = {name: (out / name).read_bytes() for name in figures}
    blocks = report_blocks(results, config, figures)
    rep.write_files(str(out), {
        "report.md": rep.text_writer(rep.render_markdown(blocks)),
        "report.html": rep.text_writer(rep.render_html(blocks, images,
                                                       title="jaxgap reproduce")),
        RESULTS: _json_writer(results),
    })

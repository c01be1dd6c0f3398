"""The factor study of ``jaxgap reproduce --full``: model size, condition granularity and
guidance, each one sweep of the study's network in the memorizing regime (``factor_size``
images, ``memorize_steps`` steps, ``control_seeds`` seeds), with a figure and a claims row
(:func:`jaxgap.study.criteria.judge_factor`). Training time and dataset size are rows of
every run (the phase map's sweeps)."""

from __future__ import annotations

from jaxgap._config import ARCH_FIELDS
from jaxgap.report.sweep_plots import plot_factor_levels
from jaxgap.study import _stages as st
from jaxgap.study import results as res
from jaxgap.study.config import StudyConfig
from jaxgap.study.criteria import Control, judge_factor
from jaxgap.sweep import tables
from jaxgap.sweep.run import SAMPLES

__all__ = ["FACTOR_STAGES", "factor_claims", "factor_grid"]

SIZES, SIZES_QUICK = ["xs", "s", "m", "l"], ["xs", "s"]
# "fine" (sub-classes) is left out: at factor_size = 128 images some fine conditions have no
# training image, and a validation condition must have one (jaxgap.data.check_conditions).
CONDITIONS, CONDITIONS_QUICK = ["none", "coarse", "class", "random"], ["none", "random"]
GUIDANCE, GUIDANCE_QUICK = [0.0, 1.0, 2.0, 4.0], [0.0, 2.0]
UNTRAINED = "the same comparison between untrained networks (step 0)"
TITLES = {"sizes": "model size", "conditions": "condition granularity",
          "guidance": "guidance (class labels)"}


def factor_grid(config: StudyConfig, name: str) -> dict:
    """The grid of a factor sweep (``"sizes"``, ``"conditions"``, ``"guidance"``)."""
    if name == "sizes":
        return {"model_size": SIZES_QUICK if config.quick else SIZES}
    if name == "conditions":
        return {"condition": CONDITIONS_QUICK if config.quick else CONDITIONS}
    return {"condition": ["class"], "guidance": GUIDANCE_QUICK if config.quick else GUIDANCE}


def _factor_stage(name: str, factor: str):
    def stage(ctx: st.Context, done: st.Done) -> tuple[res.StageResult, dict]:
        cfg = ctx.config
        if name != "sizes" and ctx.ds.train_labels is None:
            return res.StageResult({"skipped": f"{ctx.ds.name!r} has no labels: no "
                                               f"conditions"}), {}
        steps = cfg.steps_of("memorize")
        doc = st.spec_doc(cfg, data=cfg.data, seeds=cfg.seed_list(cfg.control_seeds),
                          sizes=[cfg.factor_size], steps=steps, sample_steps=[0, steps])
        if name == "sizes":  # the rungs set the architecture
            for key in ARCH_FIELDS:
                doc["sweep"].pop(key, None)
        doc["sweep"]["features"] = False
        doc["grid"].update(factor_grid(cfg, name))
        result = st.run_sweep_stage(ctx, name, doc, measure=False)
        rows = tables.read_csv(ctx.out / name / SAMPLES)
        png = st.png(plot_factor_levels, rows, factor,
                     title=f"{ctx.ds.name}: memorized fraction by {TITLES[name]} (N = "
                           f"{cfg.factor_size}, {steps} steps; 95% t-intervals over seeds)")
        return result, {f"factor_{name}.png": png}

    return stage


FACTOR_STAGES = (
    st.Stage("sizes", "factor: model size", res.StageResult, _factor_stage("sizes",
                                                                            "model_size")),
    st.Stage("conditions", "factor: condition granularity", res.StageResult,
             _factor_stage("conditions", "condition")),
    st.Stage("guidance", "factor: guidance", res.StageResult, _factor_stage("guidance",
                                                                            "guidance")),
)


def _pairs(rows, high: dict, low: dict, step) -> list[dict]:
    """Per seed ``{high, high_num, low, low_num}`` of the rows matching ``high`` / ``low``
    (column values) at ``step``."""
    def pick(match):
        return {r["seed"]: r for r in rows if r["step"] == step and not (r.get("half") or 0)
                and all(r.get(k) == v for k, v in match.items())}

    hi, lo = pick(high), pick(low)
    return [{"seed": s, "high": hi[s]["memorized"], "high_num": hi[s]["num_samples"],
             "low": lo[s]["memorized"], "low_num": lo[s]["num_samples"]}
            for s in sorted(hi) if s in lo]


def _row(cid, rows, high, low, step, crit) -> dict:
    return judge_factor(cid, _pairs(rows, high, low, step), criteria=crit, controls=[
        Control(UNTRAINED, "negative", _pairs(rows, high, low, 0))])


def factor_claims(out, config: StudyConfig, crit) -> list[dict]:
    """The factor rows of a run: training time and dataset size from the phase map's
    tables; model size, condition granularity and guidance from the ``--full`` sweeps when
    they ran."""
    phase = tables.read_csv(out / st.PHASE / SAMPLES)
    n, m, t = config.train.train_size, config.memorize_size, config.train.steps
    t_m = config.steps_of("memorize")
    rows = [judge_factor("factor_time", _steps_pairs(phase, n, t, t // 2), criteria=crit,
                         controls=[Control(UNTRAINED, "negative",
                                           _steps_pairs(phase, n, 0, 0))])]
    rows.append(_row("factor_data_size", phase, {"train_size": m}, {"train_size": n}, t_m,
                     crit))
    for name, cid, high, low in (
            ("sizes", "factor_model_size", lambda g: {"model_size": g["model_size"][-1]},
             lambda g: {"model_size": g["model_size"][0]}),
            ("conditions", "factor_condition", lambda g: {"condition": "random"},
             lambda g: {"condition": "none"}),
            ("guidance", "factor_guidance", lambda g: {"guidance": g["guidance"][-1]},
             lambda g: {"guidance": g["guidance"][0]})):
        path = out / name / SAMPLES
        if config.full and path.exists():
            grid = factor_grid(config, name)
            rows.append(_row(cid, tables.read_csv(path), high(grid), low(grid), t_m, crit))
    return rows


def _steps_pairs(rows, n, step_hi, step_lo) -> list[dict]:
    """Per seed: the memorized fraction of the ``n``-image networks at two steps."""
    at = {}
    for r in rows:
        if r["train_size"] == n and not (r.get("half") or 0):
            at[(r["seed"], r["step"])] = r
    return [{"seed": s, "high": at[(s, step_hi)]["memorized"],
             "high_num": at[(s, step_hi)]["num_samples"],
             "low": at[(s, step_lo)]["memorized"], "low_num": at[(s, step_lo)]["num_samples"]}
            for s, step in sorted(at) if step == step_hi and (s, step_lo) in at]

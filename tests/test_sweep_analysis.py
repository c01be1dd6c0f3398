"""Tables, analyses and figures of a sweep, on synthetic row lists (no training)."""

import json
import math

import numpy as np
import pytest

from jaxgap.report import sweep_plots
from jaxgap.sweep import analysis, tables

# ----------------------------------------------------------------------------- builders

SIGMAS = (0.01, 0.05, 0.2, 1.0, 5.0, 20.0)


def _loss_rows(grid, seeds=(0, 1), steps=(0, 100), ema=True, peak_of=None):
    """losses.csv rows: for grid point p (a dict of factors) the gap curve of seed s at step
    t is a bump at sigma = peak_of(p, s, t) of height 0.1 * (1 + s) * (1 + t / 100)."""
    peak_of = peak_of or (lambda p, s, t: 1.0)
    rows = []
    for point, factors in enumerate(grid):
        for s in seeds:
            for t in steps:
                centre = peak_of(factors, s, t)
                height = 0.1 * (1 + s) * (1 + t / 100)
                for sg in SIGMAS[::-1]:  # descending, as karras_sigmas: analyses must sort
                    g = height * math.exp(-(math.log(sg) - math.log(centre)) ** 2)
                    row = dict(point=point, seed=s, half=0, model="mlp", **factors, step=t,
                               sigma=sg, train=0.5, val=0.5 + g, gap=g, train_se=0.01,
                               val_se=0.01, gap_se=0.02 + sg / 1000)
                    row.update(ema_train=0.5 if ema else None,
                               ema_val=0.5 + 2 * g if ema else None,
                               ema_gap=2 * g if ema else None, ema_train_se=None,
                               ema_val_se=None, ema_gap_se=0.03 if ema else None)
                    rows.append(row)
    return rows


def _sample_rows(sizes, onset_of, *, seeds=(0, 1, 2, 3), steps=range(0, 7001, 20),
                 base=0.0, level=0.9, se=0.01, extra=None):
    """samples.csv rows: seed s of N memorizes fraction `level` from step onset_of(N, s)."""
    rows = []
    for point, n in enumerate(sizes):
        for s in seeds:
            for t in steps:
                m = level if t >= onset_of(n, s) else 0.0
                rows.append(dict(point=point, seed=s, half=0, model="mlp", train_size=n,
                                 **(extra or {}), step=t, num_samples=256, memorized=m,
                                 memorized_se=se, base_memorized=base,
                                 base_memorized_se=0.01))
    return rows


SPREAD = (0.8, 0.9, 1.1, 1.25)  # per-seed factors of the onset step


# ----------------------------------------------------------------------------- t quantile

@pytest.mark.parametrize("p, df, expected", [
    (0.975, 3, 3.182446), (0.975, 1, 12.706205), (0.975, 10, 2.228139),
    (0.95, 5, 2.015048), (0.995, 2, 9.924843), (0.025, 3, -3.182446),
    (0.975, 10**6, 1.959966)])
def test_t_quantile_known_values(p, df, expected):
    # Values of standard t tables (six decimals).
    assert analysis.t_quantile(p, df) == pytest.approx(expected, abs=2e-6)


@pytest.mark.parametrize("p, df, name", [(1.0, 3, "p"), (0.0, 3, "p"), (0.9, 0, "df")])
def test_t_quantile_rejects_bad_input(p, df, name):
    with pytest.raises(ValueError, match=name):
        analysis.t_quantile(p, df)


# ----------------------------------------------------------------------------- gap peaks

def test_gap_peaks_known_location_ema_and_factor_columns():
    peak = {(0, 0): 0.05, (0, 100): 1.0, (1, 0): 5.0, (1, 100): 0.2}
    rows = _loss_rows([{"train_size": 64}], peak_of=lambda f, s, t: peak[s, t])
    out = analysis.gap_peaks(rows)
    assert [(r["seed"], r["step"]) for r in out] == [(0, 0), (0, 100), (1, 0), (1, 100)]
    for r in out:
        assert r["peak_sigma"] == peak[r["seed"], r["step"]]
        assert r["source"] == "ema" and r["peak_gap_se"] == 0.03
        # EMA gap = 2 x raw bump of height 0.1 (1 + s)(1 + t / 100), at its centre.
        assert r["peak_gap"] == pytest.approx(0.2 * (1 + r["seed"]) * (1 + r["step"] / 100))
        assert r["peak_log10_sigma"] == pytest.approx(math.log10(r["peak_sigma"]))
        assert r["train_size"] == 64 and r["model"] == "mlp"
        assert "sigma" not in r and "gap" not in r and "ema_gap" not in r
    raw = analysis.gap_peaks(rows, ema=False)
    assert raw[0]["source"] == "raw" and raw[0]["peak_gap_se"] == pytest.approx(0.02 + 0.05e-3)
    assert raw[1]["peak_gap"] == pytest.approx(0.2)


def test_gap_peaks_raw_for_closed_forms_and_repeated_sigma():
    rows = _loss_rows([{"delta": 0.1}], seeds=(0,), steps=(0,), ema=False,
                      peak_of=lambda f, s, t: 20.0)
    (r,) = analysis.gap_peaks(rows)
    assert r["source"] == "raw" and r["peak_sigma"] == 20.0 and r["delta"] == 0.1
    with pytest.raises(ValueError, match="loss_rows.*repeated sigma"):
        analysis.gap_peaks(rows + rows[:1])
    with pytest.raises(ValueError, match="loss_rows"):
        analysis.gap_peaks([{"point": 0, "seed": 0, "step": 0, "sigma": 1.0}])


# ----------------------------------------------------------------------------- over seeds

def test_over_seeds_against_numpy():
    rng = np.random.default_rng(0)
    rows, ref = [], {}
    for n in (8, 16):
        y = rng.normal(size=5)
        ref[n] = y
        rows += [dict(train_size=n, seed=s, v=float(v)) for s, v in enumerate(y)]
    rows.append(dict(train_size=8, seed=9, v=None))  # missing: left out
    out = analysis.over_seeds(rows, "v", by=["train_size"], level=0.9)
    assert [r["train_size"] for r in out] == [8, 16]
    for r in out:
        y = ref[r["train_size"]]
        se = np.std(y, ddof=1) / np.sqrt(5)
        assert r["n"] == 5 and r["mean"] == pytest.approx(np.mean(y))
        assert r["se"] == pytest.approx(se)
        assert r["hi"] - r["mean"] == pytest.approx(2.131847 * se, rel=1e-6)  # t_{0.95, 4}
        assert r["mean"] - r["lo"] == pytest.approx(2.131847 * se, rel=1e-6)


def test_over_seeds_averages_within_a_seed_and_one_seed_has_no_interval():
    rows = [dict(g=0, seed=0, v=1.0), dict(g=0, seed=0, v=3.0), dict(g=0, seed=1, v=4.0),
            dict(g=1, seed=0, v=2.0)]
    a, b = analysis.over_seeds(rows, "v", by=["g"])
    assert a["n"] == 2 and a["mean"] == pytest.approx(3.0)  # seed 0 -> 2.0, seed 1 -> 4.0
    assert b == {"g": 1, "n": 1, "mean": 2.0, "se": None, "lo": None, "hi": None}
    with pytest.raises(ValueError, match="level"):
        analysis.over_seeds(rows, "v", by=["g"], level=1.0)
    with pytest.raises(ValueError, match="by"):
        analysis.over_seeds(rows, "v", by="g")


# ----------------------------------------------------------------------------- onset

def test_onset_linear_in_n_gives_slope_one_within_interval():
    sizes = (64, 128, 256, 512)
    rows = _sample_rows(sizes, lambda n, s: 10 * n * SPREAD[s])
    res = analysis.memorization_onset(rows)
    for r in res["per_n"]:
        n = r["train_size"]
        # Three of four seeds (0.675 +- 0.225 se) do not clear the bound; all four do.
        assert r["onset"] == 20 * math.ceil(12.5 * n / 20) and not r["censored"]
        assert [o["onset"] for o in r["seed_onsets"]] == [
            20 * math.ceil(10 * n * f / 20) for f in SPREAD]
    lo, hi = res["slope_interval"]
    assert lo < 1.0 < hi and abs(res["slope"] - 1.0) < 0.05 and hi - lo < 0.3
    assert res["num_points"] == 16 and res["num_values"] == 4
    assert "consistent with slope 1" in res["shows"]
    assert res["reference"].startswith("Bonnaire, Urfin, Biroli, Mezard (NeurIPS 2025)")
    assert res["margin"] == 0.05 and res["level"] == 0.95
    json.dumps(res, allow_nan=False)


def test_onset_independent_of_n_excludes_slope_one():
    rows = _sample_rows((64, 128, 256, 512), lambda n, s: 1000 * SPREAD[s])
    res = analysis.memorization_onset(rows)
    lo, hi = res["slope_interval"]
    assert lo < 0.0 < hi and hi < 1.0
    assert "below 1" in res["shows"]


def test_onset_censored_n_is_reported_and_left_out_of_the_slope():
    rows = _sample_rows((64, 128, 256, 4096), lambda n, s: 10 * n * SPREAD[s])
    res = analysis.memorization_onset(rows)
    last = res["per_n"][-1]
    assert last["train_size"] == 4096 and last["censored"] and last["onset"] is None
    assert last["last_step"] == 7000
    assert all(o["onset"] is None for o in last["seed_onsets"])
    assert res["num_values"] == 3 and res["num_points"] == 12
    assert "train_size = 4096 (last step 7000)" in res["note"]
    assert "not reached by the last step" in res["note"]


def test_onset_high_baseline_gives_no_onset():
    rows = _sample_rows((64, 128), lambda n, s: 10 * n * SPREAD[s], base=0.9)
    res = analysis.memorization_onset(rows)
    assert all(r["censored"] for r in res["per_n"])
    assert res["slope"] is None and res["slope_interval"] is None
    assert res["shows"].startswith("no slope")


def test_onset_negative_control_memorized_equal_to_baseline():
    rng = np.random.default_rng(1)
    rows = _sample_rows((64, 128, 256), lambda n, s: 0, steps=range(0, 2001, 100))
    for r in rows:
        r["memorized"] = r["base_memorized"] = float(rng.uniform(0.0, 1.0))
    res = analysis.memorization_onset(rows, margin=0.0)
    assert all(r["onset"] is None for r in res["per_n"])
    assert all(o["onset"] is None for r in res["per_n"] for o in r["seed_onsets"])
    assert res["slope"] is None


def test_onset_single_seed_uses_bootstrap_se():
    def rows(se):
        return _sample_rows((64,), lambda n, s: 100, seeds=(0,), steps=(0, 100),
                            level=0.2, se=se)
    # lower = 0.2 - 1.96 se: 0.102 > 0.05 with se = 0.05, 0.004 < 0.05 with se = 0.1.
    assert analysis.memorization_onset(rows(0.05))["per_n"][0]["onset"] == 100
    assert analysis.memorization_onset(rows(0.1))["per_n"][0]["onset"] is None
    assert analysis.memorization_onset(rows(0.1), level=0.5)["per_n"][0]["onset"] == 100


def test_onset_rejects_mixed_points_and_bad_arguments():
    rows = _sample_rows((64,), lambda n, s: 0, steps=(0,), extra={"width": 8})
    rows += [dict(r, point=1, width=16) for r in rows]
    with pytest.raises(ValueError, match="sample_rows: expected one grid point per"):
        analysis.memorization_onset(rows)
    with pytest.raises(ValueError, match="margin"):
        analysis.memorization_onset(rows[:1], margin=float("nan"))
    with pytest.raises(ValueError, match="sample_rows"):
        analysis.memorization_onset([{"seed": 0, "step": 0}])


# ----------------------------------------------------------------------------- halves

def _halves(sizes=(64, 256, 1024), seeds=(0, 1, 2)):
    rows = []
    for point, n in enumerate(sizes):
        for s in seeds:
            for t in (500, 1000):
                rel = 1.0 / math.log2(n) + 0.01 * s + (0.1 if t == 500 else 0.0)
                for half in (0, 1):
                    rows.append(dict(point=point, seed=s, half=half, train_size=n, step=t,
                                     memorized=0.5 * half, pair_distance=2 * rel if half else None,
                                     pair_relative=rel if half else None))
    return rows


def test_disjoint_halves_against_numpy():
    rows = _halves()
    res = analysis.disjoint_halves(rows)
    assert [(r["train_size"], r["step"]) for r in res["rows"]] == [
        (n, t) for n in (64, 256, 1024) for t in (500, 1000)]
    for r in res["rows"]:
        y = np.array([1.0 / math.log2(r["train_size"]) + 0.01 * s
                      + (0.1 if r["step"] == 500 else 0.0) for s in (0, 1, 2)])
        se = np.std(y, ddof=1) / np.sqrt(3)
        assert r["n"] == 3
        assert r["pair_relative"]["mean"] == pytest.approx(y.mean())
        assert r["pair_relative"]["se"] == pytest.approx(se)
        assert r["pair_relative"]["hi"] == pytest.approx(y.mean() + 4.302653 * se, rel=1e-6)
        assert r["pair_distance"]["mean"] == pytest.approx(2 * y.mean())
        assert r["memorized"]["mean"] == pytest.approx(0.5)  # half 0 rows ignored
    assert [r["step"] for r in res["final"]] == [1000, 1000, 1000]
    # 1/log2 N at N = 64, 256, 1024: 1/6, 1/8, 1/10 against log2 N = 6, 8, 10.
    x, y = np.array([6.0, 8.0, 10.0]), np.array([1 / 6, 1 / 8, 1 / 10])
    assert res["trend"]["slope"] == pytest.approx(np.polyfit(x, y, 1)[0])
    assert res["trend"]["slope_interval"][1] < 0
    assert res["reference"].startswith("Kadkhodaie")
    json.dumps(res, allow_nan=False)


def test_disjoint_halves_without_partners():
    rows = [r for r in _halves() if r["half"] == 0]
    res = analysis.disjoint_halves(rows)
    assert res["rows"] == [] and res["trend"]["slope"] is None
    assert res["note"].startswith("no disjoint-halves members")


# ----------------------------------------------------------------------------- summarize

def test_summarize_slices_other_factors_and_is_json():
    grid = [{"train_size": n, "width": w} for n in (64, 128) for w in (8, 16)]
    losses = _loss_rows(grid, peak_of=lambda f, s, t: 0.2 if f["width"] == 8 else 5.0)
    samples = []
    for point, f in enumerate(grid):
        part = _sample_rows((f["train_size"],), lambda n, s: 10 * n * SPREAD[s],
                            steps=range(0, 2001, 100), extra={"width": f["width"]})
        samples += [dict(r, point=point) for r in part]
    res = analysis.summarize(losses, samples, ["train_size", "width"])
    json.dumps(res, allow_nan=False)
    height = res["gap_peaks"]["height"]
    assert res["gap_peaks"]["by"] == ["point", "model", "train_size", "width", "step"]
    assert len(height) == 8 and all(r["n"] == 2 for r in height)
    # EMA heights 0.2 (1 + s)(1 + t / 100), s = 0, 1 -> mean 0.3 (1 + t / 100).
    assert [r["mean"] for r in height[:2]] == pytest.approx([0.3, 0.6])
    where = [r["mean"] for r in res["gap_peaks"]["log10_sigma"]]
    assert where == pytest.approx([math.log10(0.2 if f["width"] == 8 else 5.0)
                                   for f in grid for _ in (0, 100)])
    slices = [(s["slice"], [r["onset"] for r in s["per_n"]]) for s in res["memorization_onset"]]
    assert slices == [({"model": "mlp", "width": 8}, [800, 1600]),
                      ({"model": "mlp", "width": 16}, [800, 1600])]
    assert res["disjoint_halves"] == []


# ----------------------------------------------------------------------------- tables

def test_csv_round_trip_with_missing_values(tmp_path):
    rows = [dict(point=0, seed=1, model="mlp", lr=1e-3, gap=0.1 + 0.2, ema_gap=None),
            dict(point=1, seed=2, model="gaussian", lr=0.5, gap=float("nan"))]
    cols = ["point", "seed", "model", "lr", "gap", "ema_gap"]
    path = tables.write_csv(tmp_path / "t.csv", rows, cols)
    back = tables.read_csv(path)
    assert list(back[0]) == cols
    assert back[0] == dict(point=0, seed=1, model="mlp", lr=1e-3, gap=0.1 + 0.2, ema_gap=None)
    assert back[1]["ema_gap"] is None and math.isnan(back[1]["gap"])
    assert type(back[1]["point"]) is int and type(back[1]["lr"]) is float
    assert [p.name for p in tmp_path.iterdir()] == ["t.csv"]  # no temporary file left
    tables.write_csv(tmp_path / "e.csv", [], cols)
    assert tables.read_csv(tmp_path / "e.csv") == []
    with pytest.raises(ValueError, match="rows: expected keys among columns"):
        tables.write_csv(tmp_path / "x.csv", [dict(point=0, other=1)], cols)
    with pytest.raises(ValueError, match="columns: expected unique"):
        tables.write_csv(tmp_path / "x.csv", rows, ["point", "point"])


# ----------------------------------------------------------------------------- figures

def _write_sweep(folder, grid, losses, samples, factors):
    lcols = list(dict.fromkeys(k for r in losses for k in r))
    tables.write_csv(folder / "losses.csv", losses, lcols)
    if samples is not None:
        scols = list(dict.fromkeys(k for r in samples for k in r))
        tables.write_csv(folder / "samples.csv", samples, scols)
    (folder / "sweep.json").write_text(json.dumps({"factors": factors}))


def _is_png(path):
    data = path.read_bytes()
    return data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000


def test_plot_sweep_on_a_two_by_two_grid(tmp_path):
    grid = [{"train_size": n, "width": w} for n in (64, 128) for w in (8, 16)]
    losses = _loss_rows(grid, steps=(0, 100, 200))
    samples = []
    for point, f in enumerate(grid):
        part = _sample_rows((f["train_size"],), lambda n, s: 5 * n * SPREAD[s],
                            steps=(0, 100, 200, 400, 800), extra={"width": f["width"]},
                            base=0.02)
        for r in part:
            r.update(point=point)
            samples += [r, dict(r, half=1, pair_relative=0.5, pair_distance=1.0)]
    _write_sweep(tmp_path, grid, losses, samples, ["train_size", "width"])
    written = sweep_plots.plot_sweep(tmp_path)
    assert [p.name for p in written] == ["gap_peaks.png", "memorization.png", "phase_map.png"]
    assert all(_is_png(p) for p in written)


def test_plot_sweep_on_a_one_value_grid_and_without_samples(tmp_path):
    grid = [{"train_size": 64}]
    losses = _loss_rows(grid, seeds=(0,), steps=(100,))
    samples = _sample_rows((64,), lambda n, s: 0, seeds=(0,), steps=(100,))
    _write_sweep(tmp_path, grid, losses, samples, ["train_size"])
    written = sweep_plots.plot_sweep(tmp_path)
    assert [p.name for p in written] == ["gap_peaks.png", "memorization.png", "phase_map.png"]
    assert all(_is_png(p) for p in written)
    other = tmp_path / "no_samples"
    other.mkdir()
    _write_sweep(other, grid, _loss_rows(grid, ema=False, steps=(0,)), None, [])
    assert [p.name for p in sweep_plots.plot_sweep(other)] == ["gap_peaks.png"]
    with pytest.raises(ValueError, match="folder"):
        sweep_plots.plot_sweep(tmp_path / "missing")


def test_onset_at_the_first_sampled_step_is_flagged_as_an_upper_bound():
    rows = [dict(train_size=n, seed=s, step=t, memorized=0.9 if (n == 10 or t >= 500) else 0.0,
                 memorized_se=0.01, base_memorized=0.0)
            for n in (10, 100) for s in (0, 1, 2) for t in (100, 500)]
    res = analysis.memorization_onset(rows)
    flags = {r["train_size"]: (r["onset"], r["at_first_step"]) for r in res["per_n"]}
    assert flags == {10: (100, True), 100: (500, False)}
    assert "first sampled step (an upper bound" in res["note"] and "train_size = 10" in res["note"]

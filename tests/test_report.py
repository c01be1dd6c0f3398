"""The report page and its figures: sizes, readable labels, error bands, peaks marked only
where significant, the loss scale, the claims table, the device line; the peak of a plateau."""

import io
import re

import numpy as np
import pytest

from jaxgap.losses import GapCurve, curve_peak
from jaxgap.report import _figure, plots
from jaxgap.report import report as rep
from jaxgap.study import default_config
from jaxgap.study.criteria import Control, judge_copies
from jaxgap.study.report_text import FIGURES, device_text, report_blocks

S5 = np.array([0.1, 0.2, 0.4, 0.8, 1.6])


# ------------------------------------------------------------------------------------------
# curve_peak on a plateau: one documented point, whatever the order of the grid
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("values", "grid_point", "refined"), [
    ([0.0, 1.0, 1.0, 1.0, 0.0], 0.4, 0.4),  # interior, odd run: its middle
    ([0.0, 1.0, 1.0, 0.5, 0.0], 0.2, np.sqrt(0.2 * 0.4)),  # even run: the smaller middle
    ([1.0, 1.0, 1.0, 0.5, 0.0], 0.1, 0.1),  # reaches the smallest sigma: that end
    ([0.0, 0.5, 1.0, 1.0, 1.0], 1.6, 1.6),  # reaches the largest sigma: that end
    ([2.0, 2.0, 2.0, 2.0, 2.0], 0.1, 0.1),  # flat: the smallest sigma
    ([0.0, 1.0 + 1e-9, 1.0, 1.0, 0.0], 0.4, 0.4),  # tied within float tolerance
    ([1.0, 0.0, 1.0, 1.0, 0.0], 0.1, 0.1),  # two runs: the first one (smaller sigma)
])
def test_curve_peak_plateau_rule_is_order_independent(values, grid_point, refined):
    g = np.asarray(values)
    for order in (slice(None), slice(None, None, -1)):  # ascending and descending grids
        s, v = S5[order], g[order]
        sigma, value, k = curve_peak(s, v, return_index=True)
        assert sigma == pytest.approx(grid_point, rel=1e-12)
        assert s[k] == sigma and value == v[k]
        assert curve_peak(s, v, refine=True)[0] == pytest.approx(refined, rel=1e-12)
        curve = GapCurve(s, 0 * v, v, v, *(np.ones(5),) * 3)
        assert curve.peak_sigma == pytest.approx(grid_point, rel=1e-12)
    # Without ties the grid maximum, as before; NaN is never tied and breaks a run.
    assert curve_peak(S5, [0.0, 0.7, 1.0, 0.999, 0.0]) == (0.4, 1.0)
    assert curve_peak(S5, [np.nan, 1.0, 1.0, np.nan, 0.0]) == (0.2, 1.0)


# ------------------------------------------------------------------------------------------
# Figures: peaks marked only where significant, bands over training, readable text
# ------------------------------------------------------------------------------------------

@pytest.fixture
def saved(monkeypatch):
    """The figures the plot functions would save (the figure before it is cleared)."""
    figs = []
    monkeypatch.setattr(plots, "save", lambda fig, path, **kw: figs.append(fig))
    return figs


def _markers(ax, marker):
    return [ln for ln in ax.lines if ln.get_marker() == marker and len(ln.get_xdata()) == 1]


def _legend_texts(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


CURVE_SIG = {"sigmas": [0.1, 1.0, 10.0], "train": [0.0] * 3, "val": [0.1, 0.5, 0.2],
             "gap": [0.1, 0.5, 0.2], "gap_se": [0.05, 0.05, 0.05]}  # 10 se: a peak
CURVE_NOISE = {"sigmas": [0.1, 1.0, 10.0], "train": [0.0] * 3, "val": [0.01, 0.016, 0.0],
               "gap": [0.01, 0.016, 0.0], "gap_se": [0.01, 0.01, 0.01]}  # 1.6 se: noise


def test_gap_curves_star_only_significant_peaks(saved):
    plots.plot_gap_curves({"signal": CURVE_SIG, "noise": CURVE_NOISE}, io.BytesIO())
    ax = saved[0].axes[0]
    stars, circles = _markers(ax, "*"), _markers(ax, "o")
    assert [(s.get_xdata()[0], s.get_ydata()[0]) for s in stars] == [(1.0, 0.5)]
    assert [(c.get_xdata()[0], c.get_ydata()[0]) for c in circles] == [(1.0, 0.016)]
    assert circles[0].get_markerfacecolor() == "none"
    texts = _legend_texts(ax)
    assert "peak: largest gap > 2 se" in texts
    assert "largest gap, not significant (< 2 se)" in texts


def test_gap_curve_not_significant_has_no_peak_line(saved):
    plots.plot_gap_curve(CURVE_NOISE, io.BytesIO())
    ax_gap = saved[0].axes[1]
    assert not _markers(ax_gap, "*")
    assert not [ln for ln in ax_gap.lines if ln.get_linestyle() == ":"]  # no peak line
    notes = [t.get_text() for t in ax_gap.texts]
    assert any("not significant (1.6 se < 2)" in t for t in notes), notes
    saved.clear()
    plots.plot_gap_curve(CURVE_SIG, io.BytesIO())
    ax_gap = saved[0].axes[1]
    assert len(_markers(ax_gap, "*")) == 1
    assert any(t.get_text().startswith("peak (10 se)") for t in ax_gap.texts)


def _rows(with_se: bool):
    rows = []
    for step, top in ((0, 0.01), (100, 0.03), (200, 0.05)):
        row = {"step": step, "sigmas": [0.01, 0.1, 1.0, 10.0],
               "ema_gap": [0.0, 0.5 * top, top, 0.2 * top]}
        if with_se:
            row["ema_gap_se"] = [0.001, 0.002, 0.004, 0.002]
        rows.append(row)
    return rows


def test_gap_over_training_has_one_se_bands(saved):
    rows = _rows(with_se=True)
    plots.plot_gap_over_training(rows, io.BytesIO())
    ax = saved[0].axes[0]
    bands = [c for c in ax.collections if type(c).__name__ in ("PolyCollection",
                                                               "FillBetweenPolyCollection")]
    assert len(bands) == len(rows)
    # +-1 se around the final curve: its band spans [gap - se, gap + se] at sigma = 1.
    verts = bands[-1].get_paths()[0].vertices
    at_one = verts[np.isclose(verts[:, 0], 1.0), 1]
    assert at_one.min() == pytest.approx(0.05 - 0.004) and at_one.max() == pytest.approx(
        0.05 + 0.004)
    texts = _legend_texts(ax)
    assert "$\\pm$1 standard error" in texts
    assert "final curve's peak: largest gap > 2 se" in texts  # 0.05 / 0.004 = 12.5 se
    assert len(_markers(ax, "*")) == 1


def test_gap_over_training_without_se_draws_no_band(saved):
    plots.plot_gap_over_training(_rows(with_se=False), io.BytesIO())
    ax = saved[0].axes[0]
    assert not ax.collections
    assert not _markers(ax, "*")  # no standard error: no claim of a peak
    assert _legend_texts(ax) == ["final curve's largest gap (no se)"]


def _smallest_font_px(png: bytes) -> float:
    """The smallest text of a saved figure in CSS pixels at its drawn size (96 / dpi)."""
    info = rep.png_info(png)
    return float(info.text[_figure.FONT_KEY]) * 96.0 / 72.0


def test_figures_record_their_smallest_font_and_it_is_readable():
    x = np.linspace(-1.0, 1.0, 20 * 64).reshape(20, 64)
    grid = io.BytesIO()
    plots.plot_sample_grid(x, x[::-1], (8, 8, 1), grid, labels=[f"r={i}" for i in range(20)],
                           max_pairs=16, title="samples")
    band = [[0.5, 1.0, 2.0], [0.6, 1.1, 2.1]]
    diag = {"sigmas": [0.1, 1.0], "quantiles": [0.1, 0.5, 0.9], "sets": {"noisy_train": {
        "normalized_nn_distance": band, "max_weight": band, "effective_count": band}}}
    domain = io.BytesIO()
    plots.plot_domain_diagnostics(diag, domain, title="domain")
    for buf in (grid, domain):
        assert _smallest_font_px(buf.getvalue()) >= 9.0


# ------------------------------------------------------------------------------------------
# The HTML page: figures never shrunk below their drawn size, scroll boxes, self-contained
# ------------------------------------------------------------------------------------------

def _png(width_in: float, height_in: float, dpi: int = 150) -> bytes:
    from matplotlib.figure import Figure

    buf = io.BytesIO()
    Figure(figsize=(width_in, height_in)).savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def test_png_info_reads_size_and_resolution():
    info = rep.png_info(_png(14.0, 4.4))
    assert (info.width, info.height) == (2100, 660)
    assert info.dpi == pytest.approx(150.0, abs=0.01)  # pHYs stores pixels per metre
    assert info.drawn_size() == (1344, 422)
    with pytest.raises(ValueError, match="'x.png' is not a PNG"):
        rep.png_info(b"GIF89a....", "x.png")


def test_html_figures_keep_their_drawn_size_and_scroll():
    blocks = [rep.heading("R"), rep.figure("wide.png", "wide"), rep.figure("small.png")]
    page = rep.render_html(blocks, {"wide.png": _png(14.0, 4.4), "small.png": _png(7.0, 4.6)})
    imgs = re.findall(r"<img [^>]*>", page)
    assert len(imgs) == 2
    assert 'style="width: 100%; height: auto; max-width: 2100px; min-width: 1344px"' in imgs[0]
    assert 'style="width: 100%; height: auto; max-width: 1050px; min-width: 672px"' in imgs[1]
    assert page.count('<div class="scroll"><img ') == 2
    style = page[page.index("<style>"):page.index("</style>")]
    assert re.search(r"figure \.scroll \{ overflow-x: auto; \}", style)
    assert "max-width: 100%" not in style  # nothing shrinks a figure to the column
    for external in ("http:", "https:", "<script", "<link", "url("):
        assert external not in page


# ------------------------------------------------------------------------------------------
# The study's report text
# ------------------------------------------------------------------------------------------

def _results(data: str = "digits", device: str = "cpu: cpu") -> dict:
    """A results.json document with real claim objects (judged on constructed numbers)."""
    opt = [{"seed": k, "num": 256, "flagged": 1.0} for k in range(3)]
    claims = [judge_copies(opt, controls=[Control("held-out", "negative",
                                                  [{"num": 300, "flagged": 0.0}])])]
    cf = {"sigma_min": 0.002,
          "empirical": {"gap_max": 0.0735, "gap_max_se": 0.003, "gap_at_sigma_min": 0.0730,
                        "peak_sigma": 0.36},
          "gaussian": {"gap_max": 0.016, "gap_max_se": 0.01, "gap_at_sigma_min": 1e-5,
                       "peak_sigma": 2.3}}
    return {"data": data, "num_train": 512, "num_val": 300, "dim": 64, "seeds": [0, 1, 2],
            "device": device, "jax_version": "0.x", "jaxgap_version": "0.x",
            "criteria_version": 2, "claims": claims, "closed_form": cf,
            "regimes": {"cells": [{"train_size": 512, "step": 4000, "no_copying": True,
                                   "copy_excess": 0.0, "interval": [-0.01, 0.01],
                                   "seeds_supporting": 3, "seeds": 3,
                                   "gap_peak_height": 0.03}],
                        "statements": ["N = 512: samples stay at the held-out baseline up "
                                       "to step 4000"]},
            "memorization_onset": [{"shows": "slope 0.6", "note": "n", "reference": "B"}],
            "disclosure": {"defaults": "d", "tried_before": "t", "controls": "c",
                           "flips": ["f"]},
            "stage_seconds": {"closed_form": 1.0, "sweep": None}, "total_seconds": 1.0,
            "stages_skipped": ["sweep"]}


def _report(device: str = "cpu: cpu", data: str = "digits", results: dict | None = None):
    figures = [name for _, name, _ in FIGURES]
    results = _results(data, device) if results is None else results
    blocks = report_blocks(results, default_config(data), figures)
    return blocks, rep.render_markdown(blocks)


def test_device_line_says_cpu_once():
    assert device_text("cpu: cpu") == "CPU"
    assert device_text("gpu: NVIDIA H200") == "NVIDIA H200 (gpu)"
    assert device_text("1 x NVIDIA H200 (gpu)") == "1 x NVIDIA H200 (gpu)"
    md = _report()[1]
    assert "Device CPU, JAX" in md and "cpu: cpu" not in md


def test_loss_scale_is_stated_under_the_claims_table():
    blocks, _ = _report()
    first = next(i for i, b in enumerate(blocks) if b.kind == "table")
    note = blocks[first + 1]
    assert note.kind == "paragraph" and note.text.startswith("Loss scale:")
    assert "|D(x0 + sigma eps, sigma) - x0|^2 / d" in note.text
    assert "mapped to [-1, 1]" in note.text and "no weighting over sigma" in note.text
    other = _report(data="gaussian")[0]
    assert "[-1, 1]" not in other[first + 1].text  # not claimed for data not scaled so


def test_claims_table_shows_intervals_seeds_controls_and_the_criteria_version():
    blocks, md = _report()
    table = next(b for b in blocks if b.kind == "table")
    assert table.header[:5] == ("claim", "supported", "estimate [95% interval]",
                                "seeds supporting", "controls")
    row = table.rows[0]
    assert row[1] == "yes" and row[3] == "3/3"
    assert re.fullmatch(r"1 \[[0-9.]+, [0-9.]+\]", row[2]), row[2]
    assert row[4] == "held-out (negative): not supported"
    assert "criteria (version 2, `jaxgap/study/criteria.toml`" in md
    assert "makes three claims: (1) diffusion models memorize in training" in md


def test_phase_map_comes_first_and_each_figure_follows_its_section():
    blocks, md = _report()
    pos = {b.image: i for i, b in enumerate(blocks) if b.kind == "figure"}
    heads = {b.text: i for i, b in enumerate(blocks) if b.kind == "heading"}
    assert min(pos, key=pos.get) == "phase_map.png"
    assert heads["Claims"] < pos["phase_map.png"] < heads["Closed-form denoisers"] < pos[
        "gap_closed_form.png"] < heads["Training (first seed)"] < pos["gap_over_training.png"]
    assert pos["toy_fit.png"] > heads["Toy model (first seed)"]
    assert "N = 512: samples stay at the held-out baseline up to step 4000." in md
    assert heads["Disclosure"] > heads["The five factors"] > pos["toy_fit.png"]
    table = next(b for b in blocks if b.kind == "table" and b.header[0] == "denoiser")
    assert [row[0] for row in table.rows] == ["empirical", "gaussian"]


def test_factors_not_run_say_which_command_runs_them():
    """A run without --full (no factor rows): each of the five factors' sections says so."""
    blocks, md = _report()
    heads = [b.text for b in blocks if b.kind == "heading"]
    assert heads.index("The five factors") < heads.index("Guidance")
    assert md.count("Not run: `jaxgap reproduce --full` runs this factor") == 5
    done = _results()
    done["factors"] = [{"id": "factor_guidance", "claim": "guidance: c", "supported": False,
                        "interval": [-0.1, 0.1], "estimate": 0.0, "seeds_supporting": 0,
                        "seeds": 3, "controls": [], "measured": "m"}]
    md = _report(results=done)[1]
    assert md.count("Not run: `jaxgap reproduce --full` runs this factor") == 4

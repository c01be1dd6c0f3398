"""jaxgap reproduce: a real SIGKILL and --resume, the outputs, errors, and the claims logic."""

import base64
import dataclasses
import io
import json
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from jaxgap import cli
from jaxgap.denoisers import EmpiricalDenoiser
from jaxgap.metrics import field_sharpness
from jaxgap.report import report as rep
from jaxgap.report.plots import plot_gap_curves
from jaxgap.study import (
    STAGES,
    ClosedFormResult,
    CurveSummary,
    StageResult,
    StudyConfig,
    default_config,
)
from jaxgap.study.config import settings_diff
from jaxgap.study.judgement import regimes

PNG = b"\x89PNG\r\n\x1a\n"
FIGURES = ("phase_map.png", "memorization.png", "gap_closed_form.png", "gap_over_training.png",
           "samples_network.png", "domain.png", "toy_fit.png")


def _repro(*args):
    return [sys.executable, "-m", "jaxgap", "reproduce", "--quick", *args]


def _start_and_kill(args, ready):
    """Start ``jaxgap reproduce --quick ARGS``, SIGKILL it as soon as ``ready()`` holds."""
    proc = subprocess.Popen(_repro(*args), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not ready():
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"


def _metric_rows(path):
    return len(path.read_text().splitlines()) if path.exists() else 0


NEGATIVE_REAL_IN_QUICK = ("untrained", "structureless", "optimal", "evaluated twice",
                          "held-out")
"""Negative controls that are what their names say in the quick run (the memorizing network
is not: 400 steps of the small network on 8 images copy nothing, so it is reported, not
asserted; the default run's trains the default network 4000 steps on 128 images)."""


@pytest.mark.slow
def test_quick_run_killed_resumes_and_writes_every_output(tmp_path):
    out = tmp_path / "run"
    rows = out / "sweep" / "groups" / "g000" / "rows.jsonl"
    # Killed inside the sweep stage (after its first evaluations), then resumed there.
    _start_and_kill(["--out", str(out)], lambda: _metric_rows(rows) >= 4)
    assert (out / "closed_form.json").exists() and not (out / "sweep.json").exists()
    for name in (p.name for p in out.iterdir()):  # final names hold complete files only
        if name.endswith(".json"):
            json.loads((out / name).read_text())

    res = subprocess.run(_repro("--out", str(out), "--resume"), capture_output=True,
                         text=True, timeout=400)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert "[1/6] closed-form gap curves: skipped (done)" in lines
    for i in range(2, 7):
        assert any(re.match(rf"\[{i}/6\] .*: done in [0-9.]+ s$", ln) for ln in lines), lines
    assert "report.html" in lines[-1]
    assert not list(out.glob(".*.tmp")), "temporary files left behind"

    results = json.loads((out / "results.json").read_text())
    assert results["stages_skipped"] == ["closed_form"]
    assert list(results["stage_seconds"]) == list(STAGES)
    assert results["seeds"] == [0, 1, 2] and results["criteria_version"] == 3
    claims = {c["id"]: c for c in results["claims"]}
    assert set(claims) == {"gap_peak", "gap_grows", "copying", "copies", "domain",
                           "generalization", "smoothing"}
    for c in claims.values():  # the claims schema of issue 16
        assert {"claim", "criterion", "criteria_version", "measured", "interval",
                "seeds_supporting", "seeds", "supported", "controls"} <= set(c)
        assert isinstance(c["supported"], bool) and len(c["interval"]) == 2
        assert c["controls"], c["id"]
        for x in c["controls"]:
            assert x["kind"] in ("negative", "positive") and isinstance(x["supported"], bool)
            if not x["as_required"]:
                assert not c["supported"] and x["name"] in c["measured"]
    # The real negative controls of the quick run come out not supported.
    negatives = [(c["id"], x) for c in claims.values() for x in c["controls"]
                 if x["kind"] == "negative"]
    real = [(cid, x) for cid, x in negatives if any(w in x["name"]
                                                   for w in NEGATIVE_REAL_IN_QUICK)]
    assert len(real) >= 8
    for cid, x in real:
        assert x["supported"] is False, (cid, x["name"], x["measured"])
    # Audit: the step-0 network does not pass the peak claim; the optimal denoiser copies.
    assert claims["gap_peak"]["controls"][0]["name"] == "untrained network (step 0)"
    assert claims["copies"]["supported"] is True
    # Per-regime verdicts of the phase map, and the disclosure.
    cells = results["regimes"]["cells"]
    assert {(c["train_size"], c["step"]) for c in cells} >= {(64, 400), (8, 200)}
    assert {"defaults", "tried_before", "controls", "flips"} <= set(results["disclosure"])
    for name in FIGURES:
        assert (out / name).read_bytes().startswith(PNG), name
    md = (out / "report.md").read_text()
    assert md.index("](phase_map.png)") < md.index("](gap_closed_form.png)")
    for name in FIGURES:
        assert f"]({name})" in md
    for c in claims.values():
        assert c["measured"].replace("|", "\\|") in md
    html = (out / "report.html").read_text()
    srcs = re.findall(r'src="([^"]*)"', html)
    assert len(srcs) == len(FIGURES)
    for src in srcs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG)
    assert "href=" not in html and "<script" not in html and "<link" not in html
    assert [c["id"] for c in results["factors"]] == ["factor_time", "factor_data_size"]
    assert "Not run: `jaxgap reproduce --full`" in md

    # --full --resume adds the factor study to the finished run: three sweeps, three rows.
    res = subprocess.run(_repro("--full", "--out", str(out), "--resume"), capture_output=True,
                         text=True, timeout=400)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert sum(": skipped (done)" in ln for ln in lines) == 6
    full = json.loads((out / "results.json").read_text())
    assert full["claims"] == results["claims"]
    factors = {c["id"]: c for c in full["factors"]}
    assert list(factors) == ["factor_time", "factor_data_size", "factor_model_size",
                             "factor_condition", "factor_guidance"]
    for c in factors.values():
        assert c["controls"][0]["kind"] == "negative" and c["seeds"] == 3
        assert c["controls"][0]["supported"] is False  # untrained networks: no effect
    md = (out / "report.md").read_text()
    for name in ("factor_sizes.png", "factor_conditions.png", "factor_guidance.png"):
        assert (out / name).read_bytes().startswith(PNG) and f"]({name})" in md
    assert "Not run" not in md


def _err(capsys, argv):
    code = cli.main(argv)
    err = capsys.readouterr().err
    return code, err


def test_non_empty_out_without_resume_and_bad_arguments_exit_2(tmp_path, capsys):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x.txt").write_text("keep")
    some_file = tmp_path / "file"
    some_file.write_text("x")
    cases = [
        (["reproduce", "--quick", "--out", str(busy)], "--resume"),
        (["reproduce", "--seed", "-1", "--out", str(tmp_path / "a")], "--seed"),
        (["reproduce", "--bogus", "--out", str(tmp_path / "a")], "--bogus"),
        (["reproduce", "--out", str(some_file)], "is a file"),
        (["reproduce", "--quick", "--data", "nosuch", "--out", str(tmp_path / "b")],
         "nosuch"),
    ]
    for argv, word in cases:
        code, err = _err(capsys, argv)
        assert code == 2, (argv, err)
        assert len(err.strip().splitlines()) == 1 and word in err, (argv, err)
        assert "Traceback" not in err
    assert (busy / "x.txt").read_text() == "keep" and sorted(busy.iterdir()) == [busy / "x.txt"]
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    # A subprocess too: the real exit status and one stderr line.
    res = subprocess.run(_repro("--out", str(busy)), capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1


def test_resume_with_other_settings_exits_2(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    settings = dataclasses.asdict(default_config(quick=True))
    (out / "settings.json").write_text(json.dumps(settings))
    code, err = _err(capsys, ["reproduce", "--out", str(out), "--resume"])  # not --quick
    assert code == 2 and "other settings" in err and "steps" in err, err
    assert sorted(p.name for p in out.iterdir()) == ["settings.json"]


def test_size_and_data_options_reach_the_settings(tmp_path, capsys):
    """Issue 12: reproduce had no options for sizes or steps and no -D."""
    out = tmp_path / "run"
    out.mkdir()
    quick = default_config(quick=True)
    (out / "settings.json").write_text(json.dumps(quick.to_dict()))
    code, err = _err(capsys, ["reproduce", "--quick", "--steps", "50", "--num-samples", "8",
                              "--train-size", "40", "-D", "num_val=200", "--out", str(out),
                              "--resume"])
    assert code == 2, err
    for name in ("train.steps", "num_samples", "train.train_size",
                 "train.data_options.num_val"):
        assert name in err, (name, err)
    assert default_config(quick=True, steps=50, data_options={"num_val": 200}).train \
        .data_options == (("num_val", 200),)
    code, err = _err(capsys, ["reproduce", "-D", "seed=3", "--out", str(tmp_path / "x")])
    assert code == 2 and "--seed" in err
    # --overwrite on a bad data name: the old folder is left as it was
    code, err = _err(capsys, ["reproduce", "--quick", "--data", "nosuch", "--overwrite",
                              "--out", str(out)])
    assert code == 2 and "nosuch" in err
    assert sorted(p.name for p in out.iterdir()) == ["settings.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


# ------------------------------------------------------------------------------------------
# Settings and typed stage results
# ------------------------------------------------------------------------------------------

LEGACY_QUICK = {  # settings.json of a jaxgap 0.1 quick run (ReproduceConfig, flat)
    "data": "digits", "quick": True, "seed": 0, "train_size": 64, "val_size": 128,
    "steps": 400, "batch_size": 64, "lr": 0.001, "width": 64, "depth": 2, "eval_every": 100,
    "ckpt_every": 100, "num_sigmas": 10, "num_noise": 1, "eval_num_noise": 1,
    "num_samples": 48, "sample_steps": 8, "num_bootstrap": 200, "fit_grid": 6,
    "fit_refine": 2}


def test_config_holds_train_config_and_reads_old_settings():
    cfg = default_config(quick=True)
    assert cfg.train.steps == 400 and cfg.train.eval_val_size == 128 and cfg.data == "digits"
    assert cfg.seed_list() == [0, 1, 2] and default_config(seed=4).seed_list() == [4, 5, 6, 7, 8]
    assert cfg.steps_of("memorize") == 200 and cfg.steps_of("noise") == 100
    assert default_config(quick=True, noise_steps=7).steps_of("noise") == 7
    assert StudyConfig.from_dict(cfg.to_dict()) == cfg
    old = StudyConfig.from_dict(LEGACY_QUICK)  # 0.1's flat settings still read
    assert old.train == dataclasses.replace(cfg.train, eval_every=100) and old.seeds == 5
    assert {"seeds", "memorize_size"} <= set(settings_diff(LEGACY_QUICK, cfg))
    assert settings_diff(cfg.to_dict(), cfg) == []
    for bad in ({"num_samples": 0}, {"seeds": 0}, {"memorize_size": 1}, {"noise_steps": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            default_config(**bad)
    with pytest.raises(ValueError, match="eval_sigmas"):
        default_config(num_sigmas=2)  # the old name of the grid size still works
    with pytest.raises(ValueError, match="overrides"):
        default_config(bogus=1)


def test_stage_results_round_trip_through_json():
    summary = CurveSummary(0.5, 0.09, 0.004, 1e-5, 2e-6)
    curve = {"sigmas": [0.002, 0.5], "train": [0.0, 0.1], "val": [0.1, 0.2],
             "gap": [0.1, float("nan")], "gap_se": [0.01, 0.02]}
    results = [
        ClosedFormResult({"empirical": curve}, 0.002, {"empirical": summary}, seconds=1.5),
        StageResult({"folder": "sweep", "onset": [{"slope": 0.5}]}, seconds=2.0),
    ]
    for r in results:
        back = type(r).from_json(r.to_json())
        assert back.to_json() == r.to_json()
        assert json.loads(r.to_json())["seconds"] == r.seconds
    assert results[1].from_json(results[1].to_json()).doc["onset"] == [{"slope": 0.5}]


def _copy_extra(size, step, seed, flagged):
    return {"train_size": size, "step": step, "seed": seed, "half": 0,
            "extra": {"copies": {"num": 256, "ratio_rule": flagged, "flagged": flagged,
                                 "base_num": 300, "base_ratio_rule": 0.0,
                                 "base_flagged": 0.0}}}


def test_regimes_say_where_copying_starts():
    extras = [_copy_extra(512, step, seed, f) for seed in range(3)
              for step, f in ((2000, 0.0), (4000, 0.0), (8000, 0.1))]
    extras += [_copy_extra(128, step, seed, f) for seed in range(3)
               for step, f in ((1000, 0.2), (2000, 0.6))]
    samples = [{"train_size": e["train_size"], "step": e["step"], "seed": e["seed"]}
               for e in extras]
    reg = regimes(samples, extras, [])
    verdicts = {(c["train_size"], c["step"]): c["no_copying"] for c in reg["cells"]}
    assert verdicts == {(128, 1000): False, (128, 2000): False, (512, 2000): True,
                        (512, 4000): True, (512, 8000): False}
    assert reg["statements"] == [
        "N = 128: samples exceed the held-out baseline from the first sampled step (1000) on",
        "N = 512: samples stay at the held-out baseline up to step 4000; from step 8000 on "
        "they copy more than held-out images do"]


def test_field_sharpness_against_closed_forms():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(6, 5)).astype(np.float32)
    sig = np.array([1e-3, 0.1], np.float32)
    # Linear fields: the secant slope is |a| everywhere (float32 rounding only).
    for a in (1.0, -0.25):
        out = field_sharpness(lambda x, s, a=a: a * x, train, sig, num_steps=33)
        assert out.shape == (2, 6)
        np.testing.assert_allclose(out, abs(a), rtol=1e-5)
    # The optimal denoiser of two points at tiny sigma jumps inside one of 33 steps.
    two = np.array([[0.0, 0.0], [3.0, 4.0]], np.float32)
    out = field_sharpness(EmpiricalDenoiser(two), two, np.array([1e-3, 100.0], np.float32))
    np.testing.assert_allclose(out[0], 33.0, rtol=1e-5)
    # At sigma = 100 D* is nearly the mean: slope ~ |y1 - y2|^2 / (4 sigma^2) = 6.25e-4.
    np.testing.assert_allclose(out[1], 25.0 / (4 * 100.0**2), rtol=1e-2)
    with pytest.raises(ValueError, match="train"):
        field_sharpness(lambda x, s: x, train[:1], sig)
    with pytest.raises(ValueError, match="sigmas"):
        field_sharpness(lambda x, s: x, train, np.array([0.0]))


# ------------------------------------------------------------------------------------------
# Report pieces
# ------------------------------------------------------------------------------------------

def _png_bytes():
    buf = io.BytesIO()
    plot_gap_curves({"a": {"sigmas": [0.1, 1.0, 10.0], "train": [0, 0, 0],
                           "val": [1, 2, 0], "gap": [1, 2, 0], "gap_se": [0.1, 0.1, 0.1]},
                     "b": {"sigmas": [0.2, 2.0], "train": [0, 0], "val": [1, 1],
                           "gap": [1, 1]}}, buf, title="t")
    return buf.getvalue()


def test_render_html_embeds_images_and_escapes_text():
    png = _png_bytes()
    assert png.startswith(PNG)
    blocks = [rep.heading("A <b> & `x`", 1), rep.paragraph("see `f(x) < 1`"),
              rep.table(["k", "v|w"], [["1", "a|b"]]), rep.figure("g.png", "cap")]
    html = rep.render_html(blocks, {"g.png": png})
    src = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(src) == 1 and base64.b64decode(src[0]) == png
    assert "<h1>A &lt;b&gt; &amp; <code>x</code></h1>" in html
    assert "<code>f(x) &lt; 1</code>" in html
    md = rep.render_markdown(blocks)
    assert "| k | v\\|w |" in md and "| 1 | a\\|b |" in md and "![cap](g.png)" in md
    with pytest.raises(ValueError, match="images"):
        rep.render_html(blocks, {})
    with pytest.raises(ValueError, match="PNG"):
        rep.render_html(blocks, {"g.png": b"GIF89a"})
    with pytest.raises(ValueError, match="rows"):
        rep.table(["a", "b"], [["1"]])
    with pytest.raises(ValueError, match="curves\\['bad'\\]"):
        plot_gap_curves({"bad": {"sigmas": [1.0]}}, io.BytesIO())


def test_write_files_replaces_nothing_when_a_writer_fails(tmp_path):
    (tmp_path / "a.txt").write_text("old")

    def boom(f):
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        rep.write_files(str(tmp_path), {"a.txt": rep.text_writer("new"), "b.txt": boom})
    assert (tmp_path / "a.txt").read_text() == "old" and not (tmp_path / "b.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
    rep.write_files(str(tmp_path), {"a.txt": rep.text_writer("new"),
                                    "b.txt": lambda f: f.write(b"x")})
    assert (tmp_path / "a.txt").read_text() == "new" and (tmp_path / "b.txt").exists()
    assert rep.finite_or_none([1.0, float("inf"), {"x": float("nan")}]) == [
        1.0, None, {"x": None}]

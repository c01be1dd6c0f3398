"""jaxgap reproduce: a real SIGKILL and --resume, the outputs, errors, and the claims logic."""

import base64
import copy
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
    CLAIM_CRITERIA,
    ClosedFormResult,
    Criteria,
    CurveSummary,
    StudyConfig,
    ToyField,
    ToyResult,
    TrainResult,
    default_config,
    evaluate_claims,
)
from jaxgap.study.config import settings_diff

PNG = b"\x89PNG\r\n\x1a\n"
FIGURES = ("gap_closed_form.png", "gap_over_training.png", "samples_empirical.png",
           "samples_network.png", "samples_toy_model.png", "domain.png", "toy_fit.png")


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


def test_quick_run_killed_twice_resumes_and_writes_every_output(tmp_path):
    out = tmp_path / "run"
    metrics = out / "train" / "metrics.jsonl"
    # Kill 1: inside the training stage (after its step-100 evaluation of 400 steps).
    _start_and_kill(["--out", str(out)], lambda: _metric_rows(metrics) >= 2)
    assert (out / "closed_form.json").exists() and not (out / "train.json").exists()
    # Kill 2: the resumed run, as soon as the training stage has finished.
    _start_and_kill(["--out", str(out), "--resume"], lambda: (out / "train.json").exists())
    train_doc = json.loads((out / "train.json").read_text())
    assert train_doc["resumed"] is True
    assert [s for s, _ in train_doc["gap_max_by_step"]] == [0, 100, 200, 300, 400]
    assert (out / "gap_closed_form.png").exists() and (out / "gap_over_training.png").exists()
    for name in ("results.json", "report.md", "report.html", "toy.json"):
        assert not (out / name).exists(), name
    for name in (p.name for p in out.iterdir()):  # final names hold complete files only
        if name.endswith(".json"):
            json.loads((out / name).read_text())

    res = subprocess.run(_repro("--out", str(out), "--resume"), capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert "[1/5] closed-form gap curves: skipped (done)" in lines
    assert "[2/5] train the network: skipped (done)" in lines
    for i in (3, 4, 5):
        assert any(re.match(rf"\[{i}/5\] .*: done in [0-9.]+ s$", ln) for ln in lines), lines
    assert "report.html" in lines[-1]
    assert not list(out.glob(".*.tmp")), "temporary files left behind"

    results = json.loads((out / "results.json").read_text())
    assert results["stages_skipped"] == ["closed_form", "train"]
    assert set(results["stage_seconds"]) == {"closed_form", "train", "sample", "domain", "toy"}
    claims = results["claims"]
    assert len(claims) == len(CLAIM_CRITERIA)
    for c in claims:
        assert {"claim", "measured", "supported"} <= set(c)
        assert isinstance(c["supported"], bool) and c["claim"] and c["measured"]
    for name in FIGURES:
        assert (out / name).read_bytes().startswith(PNG), name
    md = (out / "report.md").read_text()
    for name in FIGURES:
        assert f"]({name})" in md
    for c in claims:
        assert c["measured"].replace("|", "\\|") in md
    html = (out / "report.html").read_text()
    srcs = re.findall(r'src="([^"]*)"', html)
    assert len(srcs) == len(FIGURES)
    for src in srcs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG)
    assert "href=" not in html and "<script" not in html and "<link" not in html
    # The measured numbers in the table are the run's: memorized fractions of stage 3.
    sample = json.loads((out / "sample.json").read_text())
    assert results["memorization"] == sample["memorization"]
    emp = results["memorization"]["empirical"]["memorized_fraction"]
    assert f"optimal denoiser {emp:.3g}" in claims[2]["measured"]
    # Sample quality (issue 12): every sampler against held-out data, real training images
    # as the baseline, in pixels and classifier features (digits has labels).
    quality = results["quality"]
    assert quality == sample["quality"]
    assert list(quality["sets"]) == ["real train (baseline)", "empirical", "network",
                                     "toy_model"]
    for row in quality["sets"].values():
        for space in ("pixels", "features"):
            assert set(row[space]) >= {"precision", "recall", "density", "coverage", "frechet"}
    assert "Sample quality against" in md


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
# Claims on constructed numbers
# ------------------------------------------------------------------------------------------

SUPPORTED = {
    "training": {"first_step": 500, "gap_max_first": 0.04, "gap_max_first_se": 0.003,
                 "last_step": 3000, "gap_max_last": 0.09, "gap_max_last_se": 0.004,
                 "peak_sigma": 0.5, "gap_at_sigma_min": 1e-5},
    "closed_form": {"sigma_min": 0.002,
                    "empirical": {"gap_max": 0.0735, "gap_at_sigma_min": 0.0730,
                                  "peak_sigma": 0.36}},
    "memorization": {
        "empirical": {"memorized_fraction": 1.0, "memorized_fraction_se": 0.0},
        "network": {"memorized_fraction": 0.02, "memorized_fraction_se": 0.01},
        "toy_model": {"memorized_fraction": 0.1, "memorized_fraction_se": 0.02}},
    "domain": {"network": {"farther_sigmas": [0.002, 0.5, 2.0]}},
    "fit": {"delta": 0.3},
    "toy_field": {"sigma": 0.002, "sharpness_empirical": 33.0, "sharpness_toy": 1.2,
                  "toy_gap_at_sigma_min": 0.001},
}

# (claim id, path into the numbers, new value): each breaks exactly that claim.
BREAKERS = [
    ("gap_grows", ("training", "gap_max_last"), 0.046),  # +0.006 < 2 se = 0.01
    ("gap_grows", ("training", "last_step"), 500),  # one evaluation after step 0
    ("gap_peak", ("training", "peak_sigma"), 0.01),  # < 10 sigma_min
    ("gap_peak", ("training", "gap_at_sigma_min"), 0.05),  # > 0.5 x max
    ("gap_peak", ("closed_form", "empirical", "gap_at_sigma_min"), 0.05),  # < 0.9 x max
    ("copying", ("memorization", "empirical", "memorized_fraction"), 0.85),
    ("copying", ("memorization", "network", "memorized_fraction"), 0.2),
    ("domain", ("domain", "network", "farther_sigmas"), [0.002, 0.05, 20.0]),
    ("smoothing", ("fit", "delta"), 0.0),
    ("smoothing", ("memorization", "toy_model", "memorized_fraction"), 0.98),
    ("smoothing", ("toy_field", "toy_gap_at_sigma_min"), 0.05),
    ("smoothing", ("toy_field", "sharpness_toy"), 20.0),
]


def test_claims_supported_on_numbers_that_meet_every_criterion():
    claims = evaluate_claims(SUPPORTED)
    assert [c["id"] for c in claims] == list(CLAIM_CRITERIA)
    assert all(c["supported"] is True for c in claims)
    grows = claims[0]["measured"]
    assert "0.04" in grows and "0.09" in grows and "step 3000" in grows
    assert "(0.5, 2)" in claims[3]["measured"]  # the sigmas in the range, ascending
    numbers = copy.deepcopy(SUPPORTED)
    numbers["domain"]["noisy_val"] = {"farther_sigmas": [2.0, 0.002]}
    domain = evaluate_claims(numbers)[3]
    assert domain["supported"] and "validation states are above the band too at 1 of" in \
        domain["measured"]


@pytest.mark.parametrize("cid,path,value", BREAKERS)
def test_claims_not_supported_when_one_number_fails(cid, path, value):
    numbers = copy.deepcopy(SUPPORTED)
    node = numbers
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    claims = {c["id"]: c for c in evaluate_claims(numbers)}
    assert claims[cid]["supported"] is False
    assert all(c["supported"] for k, c in claims.items() if k != cid)


def test_criteria_hold_every_threshold():
    claims = {c["id"]: c for c in evaluate_claims(SUPPORTED, Criteria(copy_high=1.01))}
    assert claims["copying"]["supported"] is False and ">= 1.01" in claims["copying"][
        "criterion"]
    assert all(c["supported"] for k, c in claims.items() if k != "copying")
    assert Criteria().texts() == CLAIM_CRITERIA


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
    assert StudyConfig.from_dict(cfg.to_dict()) == cfg
    assert StudyConfig.from_dict(LEGACY_QUICK) == cfg
    assert settings_diff(LEGACY_QUICK, cfg) == [] == settings_diff(cfg.to_dict(), cfg)
    assert {"train.steps", "quick", "num_samples"} <= set(settings_diff(LEGACY_QUICK,
                                                                        default_config()))
    with pytest.raises(ValueError, match="num_samples"):
        default_config(num_samples=0)
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
        TrainResult(True, 5, 100, 0.04, 0.003, 400, 0.09, 0.004, 0.5, 1e-5,
                    [[0, 0.01], [100, 0.04]], curve),
        ToyResult(0.3, 1e-4, [0.002, 0.5], {"toy_model": [1.0, 2.0]},
                  {"toy_model": [1.0, 1.5]}, summary, ToyField(0.002, 33.0, 1.0, 1.0, 5.0, 0.0),
                  seconds=2.0),
    ]
    for r in results:
        back = type(r).from_json(r.to_json())
        assert back.to_json() == r.to_json()
        assert json.loads(r.to_json())["seconds"] == r.seconds
    toy = type(results[2]).from_json(results[2].to_json())
    assert toy.field.sharpness_empirical == 33.0 and toy.toy_curve == summary
    assert results[1].numbers()["gap_max_by_step"] == [[0, 0.01], [100, 0.04]]
    assert "final_curve" not in results[1].numbers()


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

"""``jaxgap sample``: closed-form and trained denoisers, written files, one-line errors."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from jaxgap import cli

SMALL = ["--num", "16", "--steps", "6"]
MEMORIZATION_KEYS = (
    "command", "denoiser", "data", "num", "steps", "method", "seed", "num_train", "num_val",
    "dim", "threshold", "memorized_fraction", "memorized_fraction_se", "num_bootstrap",
    "copy_ratio_mean", "copy_ratio_median", "mean_distance_to_train", "mean_distance_to_val",
    "closer_to_train", "domain_exit_sigmas", "stage_seconds", "elapsed_s", "device",
)
SETS = ("noisy_train", "noisy_val", "trajectories")


def _one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("jaxgap: error: "), err
    assert "Traceback" not in err
    return lines[0]


def _sample(out, *extra, denoiser="empirical"):
    return ["sample", "--denoiser", str(denoiser), *extra, "--out", str(out)]


@pytest.fixture(scope="module")
def empirical_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample") / "emp"
    assert cli.main(_sample(out, "--data", "digits", *SMALL)) == 0
    return out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny trained run folder (``jaxgap train`` output)."""
    from jaxgap.train import TrainConfig, train_and_evaluate

    path = tmp_path_factory.mktemp("train") / "run"
    config = TrainConfig(train_size=32, batch_size=8, steps=4, eval_every=2, ckpt_every=4,
                         eval_sigmas=3, width=16, depth=1)
    train_and_evaluate(config, path, progress=False)
    return path


def test_empirical_writes_results_and_memorizes(empirical_run, capsys):
    out = empirical_run
    assert sorted(os.listdir(out)) == ["domain.json", "domain.png", "memorization.json",
                                       "quality.json", "samples.npz", "samples.png"]
    # copies of training digits score like real training digits (the baseline)
    quality = json.loads((out / "quality.json").read_text())["quality"]
    base, copies = quality["sets"]["real train (baseline)"], quality["sets"]["samples"]
    for space in ("pixels", "features"):
        assert copies[space]["precision"] >= base[space]["precision"] - 0.15, space
    doc = json.loads((out / "memorization.json").read_text())
    for key in MEMORIZATION_KEYS:
        assert key in doc, key
    assert (doc["denoiser"], doc["data"], doc["num"], doc["steps"], doc["method"],
            doc["seed"]) == ("empirical", "digits", 16, 6, "heun", 0)
    assert doc["threshold"] == pytest.approx(1 / 3)
    # The empirical optimal denoiser returns training points, even with 6 Heun steps.
    assert doc["memorized_fraction"] >= 0.9
    assert doc["copy_ratio_median"] < 1 / 3
    assert doc["mean_distance_to_train"] < 1e-3 < doc["mean_distance_to_val"]
    assert doc["closer_to_train"] == 1.0

    with np.load(out / "samples.npz") as z:
        assert z["samples"].shape == (16, 64)
        assert z["sigma"].shape == (7,) and z["sigma"][-1] == 0
        assert z["x"].shape == (7, 16, 64) and z["denoised"].shape == (6, 16, 64)
        np.testing.assert_array_equal(z["samples"], z["x"][-1])
        sigma = z["sigma"]

    dom = json.loads((out / "domain.json").read_text())
    assert tuple(dom["sets"]) == SETS
    np.testing.assert_allclose(dom["sigmas"], sigma[:-1], rtol=1e-6)  # the sampler's grid
    assert dom["quantiles"] == pytest.approx([0.1, 0.5, 0.9])
    for name in SETS:
        s = dom["sets"][name]
        assert s["num_states"] == 16
        for stat in ("normalized_nn_distance", "max_weight", "effective_count"):
            assert np.shape(s[stat]) == (6, 3)
    assert len(dom["trajectories_outside_noisy_train"]) == 6
    for name in ("samples.png", "domain.png"):
        png = (out / name).read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 5_000


def test_gaussian_does_not_copy(tmp_path, capsys):
    out = tmp_path / "gauss"
    assert cli.main(_sample(out, *SMALL, denoiser="gaussian")) == 0  # --data: digits
    doc = json.loads((out / "memorization.json").read_text())
    assert doc["denoiser"] == "gaussian" and doc["data"] == "digits"
    assert doc["memorized_fraction"] <= 0.1
    assert doc["copy_ratio_mean"] > 0.5
    assert (out / "samples.png").exists() and (out / "domain.png").exists()
    text = capsys.readouterr().out
    assert "memorized (copy ratio < 1/3)" in text and "+-" in text
    assert "trajectories vs noisy train" in text
    assert "samples.npz" in text and "domain.png" in text
    # Issue 12: poor samples said "memorized 0.000" and nothing about their quality. The
    # Gaussian's samples are blurry digits: far fewer fall inside the real-data manifold than
    # real training digits do (docs/sample_quality.md: 0.38 against 0.97 at 300 samples).
    quality = json.loads((out / "quality.json").read_text())["quality"]
    base, gauss = quality["sets"]["real train (baseline)"], quality["sets"]["samples"]
    assert base["num"] == gauss["num"] == 16 and quality["num_reference"] == 300
    assert quality["classifier_accuracy"] > 0.9
    assert gauss["pixels"]["precision"] < base["pixels"]["precision"] - 0.3
    assert gauss["pixels"]["density"] < 0.5 * base["pixels"]["density"]
    assert "sample quality against 300 held-out" in text


def test_non_image_data_and_options(tmp_path):
    out = tmp_path / "pts"
    # Shapes as in test_trained_run_folder (train [32, 64], val [300, 64], 16 samples), so
    # the compiled metric programs are shared.
    args = _sample(out, "--data", "gaussian", "-D", "num_train=40", "-D", "num_val=300",
                   "--train-size", "32", *SMALL, "--diagnostic-sigmas", "3",
                   "--method", "euler", "--seed", "4", denoiser="gaussian")
    assert cli.main(args) == 0
    assert sorted(os.listdir(out)) == ["domain.json", "domain.png", "memorization.json",
                                       "quality.json", "samples.npz"]  # no image grid
    quality = json.loads((out / "quality.json").read_text())["quality"]
    assert quality["classifier_accuracy"] is None  # no labels: pixels only
    assert all(row["features"] is None for row in quality["sets"].values())
    doc = json.loads((out / "memorization.json").read_text())
    assert (doc["num_train"], doc["dim"], doc["method"], doc["seed"]) == (32, 64, "euler", 4)
    assert doc["image_shape"] is None
    dom = json.loads((out / "domain.json").read_text())
    with np.load(out / "samples.npz") as z:
        np.testing.assert_allclose(dom["sigmas"], z["sigma"][[0, 2, 5]], rtol=1e-6)
    assert dom["sets"]["noisy_val"]["num_states"] == 16  # subsampled to --num


def test_trained_run_folder(run_dir, tmp_path, capsys):
    out = tmp_path / "net"
    # --data equal to the run's is accepted
    assert cli.main(_sample(out, "--data", "digits", *SMALL, denoiser=run_dir)) == 0
    doc = json.loads((out / "memorization.json").read_text())
    assert doc["denoiser"] == "network" and doc["run_dir"] == str(run_dir)
    assert (doc["data"], doc["num_train"], doc["data_seed"]) == ("digits", 32, 0)
    assert doc["run_config"]["train_size"] == 32
    assert 0.0 <= doc["memorized_fraction"] <= 1.0
    assert (out / "samples.png").exists() and (out / "domain.json").exists()
    assert "digits / " in capsys.readouterr().out


@pytest.mark.parametrize("args, needle", [
    (["--num", "0"], "--num"),
    (["--num", "-3"], "--num"),
    (["--steps", "0"], "--steps"),
    (["--steps", "1"], "--steps"),
    (["--method", "rk4"], "invalid choice: 'rk4'"),
    (["--s-churn", "5"], "--s-churn"),
    (["--steps", "4", "--diagnostic-sigmas", "9"], "--diagnostic-sigmas"),
    (["--train-size", "5000"], "--train-size"),
    (["--data", "imagenet"], "--data"),
    (["--denoiser", "optimal"], "no such folder"),
])
def test_bad_arguments(tmp_path, capsys, args, needle):
    out = tmp_path / "out"
    assert cli.main(["sample", *args, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert needle in _one_error_line(captured.err)
    assert captured.out == ""
    assert not out.exists()


def test_bad_run_folders(run_dir, tmp_path, capsys):
    out = tmp_path / "out"

    def error(denoiser, *extra) -> str:
        assert cli.main(_sample(out, "--num", "4", "--steps", "3", *extra,
                                denoiser=denoiser)) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        return _one_error_line(captured.err)

    plain = tmp_path / "plain"
    plain.mkdir()
    assert "without config.json" in error(plain)
    assert "was trained on 'digits'" in error(run_dir, "--data", "gaussian")
    assert "--train-size" in error(run_dir, "--train-size", "64")
    # issue 14: an unconditional run takes neither a condition nor a guidance weight
    assert "--condition: the run" in error(run_dir, "--condition", "class")
    assert "--guidance: expected a conditional denoiser" in error(run_dir, "--guidance", "2")

    no_ckpt = tmp_path / "no_ckpt"
    shutil.copytree(run_dir, no_ckpt)
    shutil.rmtree(no_ckpt / "checkpoints")
    assert "no checkpoint" in error(no_ckpt)
    assert not (no_ckpt / "checkpoints").exists()  # not created by the attempt

    corrupt = tmp_path / "corrupt"
    shutil.copytree(run_dir, corrupt)
    for root, _, files in os.walk(corrupt / "checkpoints"):
        for name in files:
            with open(os.path.join(root, name), "wb") as f:
                f.write(b"\xff\x00 not a checkpoint \xfe" * 4)
    assert "cannot load the network" in error(corrupt)
    assert not out.exists()


def test_dimension_mismatch(run_dir, tmp_path, capsys, monkeypatch):
    import jax.numpy as jnp

    from jaxgap import train
    from jaxgap.denoisers import GaussianDenoiser

    monkeypatch.setattr(train, "load_denoiser", lambda path, ema=True: GaussianDenoiser(
        jnp.zeros(16), jnp.eye(16)))
    out = tmp_path / "out"
    assert cli.main(_sample(out, "--num", "4", "--steps", "3", denoiser=run_dir)) == 2
    assert "dimension mismatch" in _one_error_line(capsys.readouterr().err)
    assert not out.exists()


def test_unwritable_out(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert cli.main(_sample(blocker / "run", "--num", "4", "--steps", "3")) == 2
    assert "--out" in _one_error_line(capsys.readouterr().err)
    assert sorted(os.listdir(tmp_path)) == ["file"]


def test_methods_match_the_sampler():
    from jaxgap import sampling

    assert tuple(cli.SAMPLE_METHODS) == tuple(sampling.METHODS)


def test_figures_from_files(empirical_run, tmp_path):
    from jaxgap.report import plot_domain_diagnostics, plot_sample_grid

    dom = json.loads((empirical_run / "domain.json").read_text())
    plot_domain_diagnostics(dom, tmp_path / "d.png", title="read back")  # metadata ignored
    assert (tmp_path / "d.png").read_bytes().startswith(b"\x89PNG")
    x = np.zeros((3, 64))
    plot_sample_grid(x, x, (8, 8, 1), tmp_path / "g.png", max_pairs=2)
    assert (tmp_path / "g.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="image_shape"):
        plot_sample_grid(x, x, (8, 4, 1), tmp_path / "g.png")
    with pytest.raises(ValueError, match="neighbors"):
        plot_sample_grid(x, x[:2], (8, 8, 1), tmp_path / "g.png")
    with pytest.raises(ValueError, match="sets"):
        plot_domain_diagnostics({"sigmas": [1.0], "quantiles": [0.5], "sets": {}},
                                tmp_path / "d.png")


def test_error_as_a_real_process(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-m", "jaxgap", "sample", "--denoiser", "empirical",
                           "--num", "0", "--out", str(out)],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2
    assert "--num" in _one_error_line(proc.stderr)
    assert proc.stdout == ""
    assert not out.exists()


def test_channels_first_images_and_scale_notes(tmp_path, capsys):
    """Issue 12: a [n, 3, H, W] npz worked in `jaxgap gap` with a raw warning, then failed in
    `jaxgap sample` ("image_shape: expected (H, W, C)"); float images in [0, 1] were used
    unscaled without a word. Now both are detected, converted and stated as notes."""
    rng = np.random.default_rng(0)
    path = tmp_path / "nchw.npz"
    np.savez(path, x=rng.random((40, 3, 4, 5)).astype(np.float32))
    out = tmp_path / "s"
    assert cli.main(_sample(out, "--data", f"npz:{path}", "--num", "8", "--steps", "3",
                            denoiser="gaussian")) == 0
    err = capsys.readouterr().err
    notes = [ln for ln in err.splitlines() if ln.startswith("note: ")]
    assert len(notes) == 2, err
    assert "channels-first" in notes[0] and "-D channels_first=False" in notes[0]
    assert "[0, 1]" in notes[1] and "-D scale=none" in notes[1]
    doc = json.loads((out / "memorization.json").read_text())
    assert doc["image_shape"] == [4, 5, 3] and len(doc["data_notes"]) == 2
    assert (out / "samples.png").exists()


def test_out_policy_protects_run_folders(run_dir, tmp_path, capsys):
    """Issue 12: `jaxgap sample` wrote into any non-empty folder, even a run folder."""
    before = sorted(os.listdir(run_dir))
    assert cli.main(_sample(run_dir, *SMALL, denoiser=run_dir)) == 2
    assert "not empty" in _one_error_line(capsys.readouterr().err)
    assert cli.main(_sample(run_dir.parent, *SMALL, "--overwrite", denoiser=run_dir)) == 2
    assert "would delete the network" in _one_error_line(capsys.readouterr().err)
    assert sorted(os.listdir(run_dir)) == before

"""``--condition`` and ``--guidance`` on ``jaxgap gap``, ``train`` and ``sample``: the
conditional closed forms and networks behind them, what is written, one-line errors."""

import json

import jax
import numpy as np
import pytest

from jaxgap import cli, data

# Small labelled data (the mixture component is the class): 4 conditions, d = 8; train and
# val of one shape share one compiled loss program.
GMM_KW = {"num_train": 64, "num_val": 64, "dim": 8, "num_components": 4}
GMM = ["--data", "gmm", *(a for k, v in GMM_KW.items() for a in ("-D", f"{k}={v}"))]
GAP = ["--num-sigmas", "4", "--num-noise", "1", "--sigma-max", "10"]
SAMPLE = ["--num", "16", "--steps", "6"]


def _one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("jaxgap: error: "), err
    assert "Traceback" not in err
    return lines[0]


def _gmm():
    return data.load("gmm", seed=0, **GMM_KW).with_conditions("class")


def _gap_doc(tmp_path, name, *extra) -> dict:
    out = tmp_path / name
    assert cli.main(["gap", *GMM, *GAP, *extra, "--out", str(out), "-q"]) == 0
    return json.loads((out / "gap.json").read_text())


def _assert_curve(doc, curve, *, rtol, atol):
    for field in ("train", "val"):
        np.testing.assert_allclose(doc[field], np.asarray(getattr(curve, field)), rtol=rtol,
                                   atol=atol, err_msg=field)


@pytest.fixture(scope="module")
def no_quality():
    """Sample quality (a feature classifier per run) is tested in test_cli_sample.py; here
    it is skipped to keep the runs short."""
    import jaxgap.metrics

    mp = pytest.MonkeyPatch()
    mp.setattr(jaxgap.metrics, "measure_quality", lambda *args, **kwargs: None)
    yield
    mp.undo()


def test_gap_condition_is_the_conditional_closed_form(tmp_path):
    from jaxgap import noise
    from jaxgap.denoisers import (
        ConditionalEmpiricalDenoiser,
        ConditionalGaussianDenoiser,
        EmpiricalDenoiser,
    )
    from jaxgap.losses import gap_curve

    ds = _gmm()
    sigmas = noise.log_sigmas(4, 0.002, 10.0)
    key = jax.random.PRNGKey(0)
    cond = dict(train_cond=ds.train_cond, val_cond=ds.val_cond, num_noise=1)

    w1 = _gap_doc(tmp_path, "w1", "--condition", "class")  # --guidance: 1
    assert (w1["condition"], w1["guidance"], w1["num_conditions"]) == ("class", 1.0, 4)
    direct = gap_curve(key, ConditionalEmpiricalDenoiser(ds.train, ds.train_cond), ds.train,
                       ds.val, sigmas, **cond)
    # guided(D, 1) is D itself: the same program on the same noise
    _assert_curve(w1, direct, rtol=1e-6, atol=1e-9)

    w0 = _gap_doc(tmp_path, "w0", "--condition", "class", "--guidance", "0")
    assert w0["guidance"] == 0.0
    plain = gap_curve(key, EmpiricalDenoiser(ds.train), ds.train, ds.val, sigmas, num_noise=1)
    # guided(D, 0) is D(x, sigma, NULL): the empirical denoiser of all points (float32)
    _assert_curve(w0, plain, rtol=1e-4, atol=1e-7)
    # ... and conditioning matters here: the validation losses differ at large sigma
    assert np.max(np.abs(np.subtract(w1["val"], w0["val"]))) > 1e-2

    gauss = _gap_doc(tmp_path, "gauss", "--denoiser", "gaussian", "--condition", "class")
    wiener = gap_curve(key, ConditionalGaussianDenoiser.from_data(ds.train, ds.train_cond),
                       ds.train, ds.val, sigmas, **cond)
    _assert_curve(gauss, wiener, rtol=1e-6, atol=1e-9)


def test_sample_condition_class_copies_its_own_condition(tmp_path, no_quality, capsys):
    from jaxgap import _streams

    out = tmp_path / "s"
    assert cli.main(["sample", *GMM, *SAMPLE, "--condition", "class", "--out", str(out),
                     "-q"]) == 0
    ds = _gmm()
    doc = json.loads((out / "memorization.json").read_text())
    assert (doc["condition"], doc["guidance"], doc["num_conditions"]) == ("class", 1.0, 4)
    with np.load(out / "samples.npz") as z:
        cond, nearest, samples = z["cond"], z["nearest_train_index"], z["samples"]
    # conditions of training points drawn uniformly with the CONDITIONS stream of the key
    index = jax.random.randint(_streams.stream(jax.random.PRNGKey(0), _streams.CONDITIONS),
                               (16,), 0, 64)
    np.testing.assert_array_equal(cond, ds.train_cond[np.asarray(index)])
    assert cond.dtype == np.int32 and len(np.unique(cond)) > 1
    # The conditional empirical denoiser returns training points of the sample's condition;
    # nearest neighbours are searched among ALL training points.
    assert doc["memorized_fraction"] >= 0.9
    np.testing.assert_array_equal(ds.train_cond[nearest], cond)
    assert doc["nearest_train_same_condition"] == 1.0
    dist = np.linalg.norm(samples - ds.train[nearest], axis=1)
    assert np.median(dist) < 1e-2 < doc["mean_distance_to_val"]
    text = capsys.readouterr().out
    assert "condition class (4), w = 1" in text and "own condition: 100.0%" in text


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory):
    """A tiny conditional network trained through the CLI."""
    out = tmp_path_factory.mktemp("train") / "run"
    args = ["train", *GMM, "--condition", "class", "--p-uncond", "0.2", "--guidance", "2",
            "--steps", "4", "--batch-size", "8", "--eval-every", "2", "--ckpt-every", "4",
            "--eval-sigmas", "3", "--width", "16", "--depth", "1", "--out", str(out), "-q"]
    assert cli.main(args) == 0
    return out


def test_train_condition_flags_reach_the_config(conditional_run, capsys):
    config = json.loads((conditional_run / "config.json").read_text())
    assert (config["condition"], config["p_uncond"], config["guidance"]) == ("class", 0.2, 2.0)
    rows = [json.loads(line) for line in
            (conditional_run / "metrics.jsonl").read_text().splitlines()]
    assert rows and all(np.isfinite(r["ema_val"]).all() for r in rows)


def test_sample_from_a_conditional_run(conditional_run, tmp_path, no_quality, capsys):
    out = tmp_path / "net"
    # --condition equal to the run's is accepted; --guidance defaults to the run's (2)
    assert cli.main(["sample", "--denoiser", str(conditional_run), "--condition", "class",
                     *SAMPLE, "--out", str(out), "-q"]) == 0
    doc = json.loads((out / "memorization.json").read_text())
    assert (doc["condition"], doc["guidance"], doc["num_conditions"]) == ("class", 2.0, 4)
    assert doc["denoiser"] == "network" and doc["run_config"]["p_uncond"] == 0.2
    with np.load(out / "samples.npz") as z:
        assert z["cond"].shape == (16,) and np.isfinite(z["samples"]).all()
        assert set(z["cond"].tolist()) <= set(range(4))
    capsys.readouterr()
    assert cli.main(["sample", "--denoiser", str(conditional_run), "--condition", "fine",
                     *SAMPLE, "--out", str(tmp_path / "bad")]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "--condition: the run" in line and "'class'" in line
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("command, args, needle", [
    ("gap", ["--condition", "tiny"], "argument --condition: invalid choice: 'tiny'"),
    ("gap", ["--condition", "class", "--guidance", "nan"],
     "argument --guidance: expected a finite number, got 'nan'"),
    ("gap", ["--condition", "class", "--guidance", "inf"], "argument --guidance"),
    ("gap", ["--guidance", "2"], "--guidance: expected a conditional denoiser"),
    ("gap", ["--data", "gaussian", "--condition", "class"],
     "--condition: expected 'none' for dataset 'gaussian'"),
    ("gap", ["--data", "gmm", "-D", "num_train=3", "--condition", "class"],
     "--condition: 'class' on 3 training points of 'gmm': val_cond"),
    ("sample", ["--condition", "coarse", "--guidance", "-inf"], "argument --guidance"),
    ("sample", ["--guidance", "0.5"], "--guidance: expected a conditional denoiser"),
    ("sample", ["--data", "gaussian", "--condition", "random"],
     "--condition: expected 'none' for dataset 'gaussian'"),
    ("sample", [*GMM, "--condition", "fine", "--train-size", "8"],
     "--condition: 'fine' on 8 training points of 'gmm': val_cond"),
    ("train", ["--condition", "tiny"], "argument --condition: invalid choice: 'tiny'"),
    ("train", ["--condition", "class", "--p-uncond", "1"],
     "argument --p-uncond: expected a number in [0, 1), got '1'"),
    ("train", ["--condition", "class", "--p-uncond", "-0.1"], "argument --p-uncond"),
    ("train", ["--condition", "class", "--p-uncond", "nan"], "argument --p-uncond"),
    ("train", ["--p-uncond", "0.2"], "--p-uncond: expected a conditional network"),
    ("train", ["--guidance", "2"], "--guidance: expected a conditional denoiser"),
    ("train", ["--condition", "class", "--guidance", "nan"], "argument --guidance"),
    ("train", ["--data", "gaussian", "--condition", "class"],
     "--condition: expected 'none' for dataset 'gaussian'"),
    ("train", [*GMM, "--condition", "fine", "--train-size", "8"],
     "--condition: 'fine' on train_size = 8: val_cond"),
])
def test_bad_condition_arguments(tmp_path, capsys, command, args, needle):
    out = tmp_path / "out"
    assert cli.main([command, *args, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert needle in _one_error_line(captured.err)
    assert captured.out == ""
    assert not out.exists()


def test_help_and_choices(capsys):
    for command, flags in (("gap", ("--condition", "--guidance")),
                           ("sample", ("--condition", "--guidance")),
                           ("train", ("--condition", "--p-uncond", "--guidance"))):
        assert cli.main([command, "--help"]) == 0
        text = capsys.readouterr().out
        for flag in flags:
            assert flag in text, (command, flag)
    sub = next(a for a in cli.build_parser()._actions if a.dest == "command")
    for command in ("gap", "sample", "train"):
        action = next(a for a in sub.choices[command]._actions if a.dest == "condition")
        assert tuple(action.choices) == data.GRANULARITIES

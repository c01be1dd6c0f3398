"""The ``jaxgap`` command: happy path in-process, errors in-process and as a real process."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from jaxgap import cli
from jaxgap.losses import GapCurve

# Small and fast: the Gaussian (Wiener) denoiser; train and val of one shape share one compiled
# loss program (so does the npz test's data).
GAUSS = ["--data", "gaussian", "-D", "num_train=100", "-D", "num_val=100", "-D", "dim=8"]
FAST = ["--denoiser", "gaussian", "--num-sigmas", "6", "--num-noise", "1"]


def _gap(out, *extra, data=GAUSS):
    return ["gap", *data, *FAST, "--out", str(out), *extra]


def _one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("jaxgap: error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_gap_writes_results(tmp_path, capsys):
    out = tmp_path / "runs" / "fast"
    assert cli.main(_gap(out, "--seed", "3")) == 0
    assert sorted(os.listdir(out)) == ["gap.csv", "gap.json", "gap.png"]  # no temp files left

    doc = json.loads((out / "gap.json").read_text())
    for key in ("data", "denoiser", "num_train", "num_val", "dim", "num_noise", "seed",
                "peak_sigma", "jax_version", "device", "elapsed_s", *GapCurve._fields):
        assert key in doc, key
    assert (doc["data"], doc["denoiser"], doc["seed"]) == ("gaussian", "gaussian", 3)
    assert (doc["num_train"], doc["num_val"], doc["dim"], doc["num_noise"]) == (100, 100, 8, 1)
    assert len(doc["sigmas"]) == 6
    np.testing.assert_allclose(doc["sigmas"][0], 0.002, rtol=1e-6)
    np.testing.assert_allclose(doc["sigmas"][-1], 80.0, rtol=1e-6)
    np.testing.assert_allclose(doc["gap"], np.subtract(doc["val"], doc["train"]), rtol=1e-5,
                               atol=1e-9)
    assert doc["peak_sigma"] == doc["sigmas"][int(np.argmax(doc["gap"]))]

    with open(out / "gap.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == list(GapCurve._fields)
    assert len(rows) - 1 == 6
    np.testing.assert_allclose([float(r[0]) for r in rows[1:]], doc["sigmas"], rtol=1e-12)

    png = (out / "gap.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000

    text = capsys.readouterr().out
    assert "sigma" in text and "<- largest gap" in text
    assert f"at sigma = {doc['peak_sigma']:.4g}" in text
    table = [ln for ln in text.splitlines() if ln.strip()[:1].isdigit()]
    assert len(table) == 6  # every sigma of a short grid


def test_gap_same_seed_same_curve_and_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(_gap(out)) == 0
    first = json.loads((out / "gap.json").read_text())
    (out / "stale.txt").write_text("from an earlier run")
    # A non-empty folder is refused (issue 12: gap used to write into any folder) ...
    capsys.readouterr()
    assert cli.main(_gap(out)) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "not empty" in line and "--overwrite" in line and "--resume" not in line
    # ... and replaced as a whole with --overwrite.
    assert cli.main(_gap(out, "--overwrite")) == 0
    second = json.loads((out / "gap.json").read_text())
    for f in GapCurve._fields:
        assert first[f] == second[f], f
    assert sorted(os.listdir(out)) == ["gap.csv", "gap.json", "gap.png"]
    assert sorted(os.listdir(tmp_path)) == ["run"]  # no staging folder left beside it


@pytest.mark.parametrize("args, needle", [
    (["--resume"], "--resume: 'jaxgap gap' runs in one go"),
    (["--resume", "--overwrite"], "not allowed with argument"),
])
def test_gap_resume_is_refused(tmp_path, capsys, args, needle):
    out = tmp_path / "run"
    out.mkdir()
    (out / "old.txt").write_text("kept")
    assert cli.main(_gap(out, *args)) == 2
    assert needle in _one_error_line(capsys.readouterr().err)
    assert os.listdir(out) == ["old.txt"]


@pytest.mark.slow
def test_gap_empirical_memorizes(tmp_path):
    out = tmp_path / "emp"
    args = ["gap", "--data", "gaussian", "-D", "num_train=64", "-D", "num_val=64",
            "-D", "dim=8", "--denoiser", "empirical", "--num-sigmas", "4", "--num-noise", "1",
            "--sigma-max", "10", "--out", str(out)]
    assert cli.main(args) == 0
    doc = json.loads((out / "gap.json").read_text())
    assert doc["train"][0] < 1e-8 < doc["val"][0]  # exact recall of training points


def test_failure_while_writing_leaves_no_results(tmp_path, monkeypatch):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("kept")

    def broken(self):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(GapCurve, "to_csv", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        cli.main(_gap(out, "--overwrite"))
    assert os.listdir(out) == ["notes.txt"]  # the old contents stay when --overwrite fails
    assert sorted(os.listdir(tmp_path)) == ["run"]  # and the staging folder is gone
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RuntimeError, match="disk on fire"):
        cli.main(_gap(empty))
    assert os.listdir(empty) == []  # gap.json was staged, then removed


@pytest.mark.parametrize("args, needle", [
    (["--denoiser", "nonsense"], "invalid choice: 'nonsense'"),
    (["--num-sigmas", "0"], "--num-sigmas"),
    (["--num-sigmas", "six"], "expected an integer"),
    (["--num-noise", "0"], "--num-noise"),
    (["--sigma-min", "-1"], "--sigma-min"),
    (["--sigma-min", "5", "--sigma-max", "5"], "--sigma-min: expected a value < --sigma-max"),
    (["--data", "imagenet"], "--data: expected one of"),
    (["-D", "colour=red"], "colour"),
])
def test_gap_bad_arguments(tmp_path, capsys, args, needle):
    out = tmp_path / "out"
    assert cli.main(_gap(out, *args)) == 2
    captured = capsys.readouterr()
    assert needle in _one_error_line(captured.err)
    assert captured.out == ""
    assert not out.exists()


def test_no_command_and_help(capsys):
    assert cli.main([]) == 2
    assert "required" in _one_error_line(capsys.readouterr().err)
    assert cli.main(["gap", "--help"]) == 0
    assert "--num-sigmas" in capsys.readouterr().out


def _options(parser):
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():
        for action in p._actions:
            if action.option_strings and action.dest != "help":
                yield name, action


def test_every_option_has_help_and_states_its_default():
    """Issue 12: ``jaxgap train --help`` listed options without help text or defaults."""
    missing, no_default = [], []
    for name, action in _options(cli.build_parser()):
        flag = f"{name} {action.option_strings[-1]}"
        if not (action.help or "").strip():
            missing.append(flag)
        elif (action.default not in (None, False, [], "==SUPPRESS==")
              and "default" not in action.help):
            no_default.append(flag)
    assert not missing, f"options without help: {missing}"
    assert not no_default, f"options whose help does not state the default: {no_default}"
    commands = {name for name, _ in _options(cli.build_parser())}
    # ``jaxgap sweep`` takes its data options from the spec ([sweep] data_options), and a
    # sweep folder (hours of work) is continued with --resume, never overwritten.
    in_spec = {"--data-opt": {"sweep"}, "--overwrite": {"sweep"}}
    for flag in ("--data-opt", "--out", "--overwrite", "--quiet"):
        has = {name for name, a in _options(cli.build_parser()) if flag in a.option_strings}
        assert has == commands - in_spec.get(flag, set()), (flag, commands - has)


def test_progress_is_logged_when_not_on_a_terminal(tmp_path, capsys, monkeypatch):
    """Issue 12: with stderr not a terminal, tqdm's bars are hidden and a long run printed
    nothing; now a line with a rate and the time left is logged every few seconds."""
    from jaxgap import _progress

    monkeypatch.setenv("JAXGAP_PROGRESS_INTERVAL", "0")
    assert cli.main(_gap(tmp_path / "a")) == 0
    lines = capsys.readouterr().err.splitlines()
    assert lines and all(ln.startswith("jaxgap: ") for ln in lines), lines
    assert any("stages" in ln and "left" in ln for ln in lines), lines
    assert cli.main(_gap(tmp_path / "b", "--quiet")) == 0
    assert capsys.readouterr().err == ""

    monkeypatch.setenv("JAXGAP_PROGRESS_INTERVAL", "3600")
    with _progress.bar(100, "demo", unit="step", initial=40) as bar:
        bar.update(30)
        bar.set_postfix(loss="0.5")
    line = capsys.readouterr().err.strip()
    assert line.startswith("jaxgap: demo: 70/100 steps (70%), ") and "left" in line, line
    assert "loss=0.5" in line
    with pytest.raises(ValueError, match="progress: expected"):
        _progress.bar(3, "x", mode="fancy")


def test_missing_and_corrupt_npz(tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(_gap(out, data=["--data", f"npz:{tmp_path / 'nope.npz'}"])) == 2
    assert "nope.npz" in _one_error_line(capsys.readouterr().err)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"\x00garbage, not a zip archive" * 10)
    assert cli.main(_gap(out, data=["--data", f"npz:{bad}"])) == 2
    assert "bad.npz" in _one_error_line(capsys.readouterr().err)
    assert not out.exists()


def test_npz_data(tmp_path):
    rng = np.random.default_rng(0)
    x_train, x_val = (rng.integers(0, 256, size=(100, 2, 4), dtype=np.uint8) for _ in range(2))
    np.savez(tmp_path / "pts.npz", x_train=x_train, x_test=x_val)
    out = tmp_path / "out"
    assert cli.main(_gap(out, data=["--data", f"npz:{tmp_path / 'pts.npz'}"])) == 0
    doc = json.loads((out / "gap.json").read_text())
    assert (doc["num_train"], doc["num_val"], doc["dim"]) == (100, 100, 8)
    assert doc["image_shape"] == [2, 4, 1]


def test_out_under_regular_file(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    for out in (blocker, blocker / "run", blocker / "a" / "b"):
        assert cli.main(_gap(out)) == 2
        assert "--out" in _one_error_line(capsys.readouterr().err)
    assert blocker.read_text() == "not a folder"
    assert sorted(os.listdir(tmp_path)) == ["file"]


def test_out_read_only_folder(tmp_path, capsys, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # root ignores the mode: refuse as the
        real_open, real_mkdir = os.open, os.mkdir      # kernel would for anyone else

        def refuse(real):
            def call(path, *a, **kw):
                if os.path.dirname(os.path.abspath(path)) == str(ro):
                    raise PermissionError(13, "Permission denied", str(path))
                return real(path, *a, **kw)
            return call

        monkeypatch.setattr(os, "open", refuse(real_open))
        monkeypatch.setattr(os, "mkdir", refuse(real_mkdir))
    try:
        assert cli.main(_gap(ro / "run")) == 2
        assert "--out: cannot create" in _one_error_line(capsys.readouterr().err)
        assert cli.main(_gap(ro)) == 2
        assert "not writable" in _one_error_line(capsys.readouterr().err)
        assert os.listdir(ro) == []
    finally:
        ro.chmod(0o755)


def test_error_as_a_real_process(tmp_path):
    bad = tmp_path / "corrupt.npz"
    bad.write_bytes(os.urandom(256))
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    argv = [sys.executable, "-m", "jaxgap", *_gap(out, data=["--data", f"npz:{bad}"])]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2, proc.stderr
    assert "corrupt.npz" in _one_error_line(proc.stderr)
    assert proc.stdout == ""
    assert os.listdir(out) == []  # an existing folder is left as it was: empty

    # argparse's own usage errors keep status 2 and one line, too
    proc = subprocess.run([sys.executable, "-m", "jaxgap", "gap", "--num-noise", "-3", "--out",
                           str(out)], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2
    assert "--num-noise" in _one_error_line(proc.stderr)

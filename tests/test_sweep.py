"""jaxgap sweep: spec checks, closed-form curves, a killed sweep resumed, devices and hosts.

One tiny spec (12 members in one program: 3 seeds x 2 sizes x disjoint halves) is run once
in this process as the reference; a run killed with SIGKILL and resumed and a run on 2
processes x 4 forced CPU devices (8 devices: the member axis padded to 16) must write the
same tables (float32 rounding of differently batched matmuls: 1e-4 relative).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxgap import _streams, cli, noise
from jaxgap.denoisers import ConditionalEmpiricalDenoiser, EmpiricalDenoiser
from jaxgap.losses import gap_curve
from jaxgap.sweep.run import run_sweep, shared_training
from jaxgap.sweep.spec import data_size, load_spec, parse_spec
from jaxgap.sweep.tables import read_csv
from jaxgap.train import TrainConfig, load_data

TINY = {
    "sweep": {"data": "digits", "model": "mlp", "steps": 60, "eval_steps": [0, 30, 60],
              "sample_steps": [60], "num_samples": 16, "sampler_steps": 4, "features": False,
              "num_bootstrap": 20, "seeds": 3, "halves": True, "width": 8, "depth": 1,
              "batch_size": 16, "eval_sigmas": 5, "eval_train_size": 40, "eval_val_size": 40,
              "ckpt_every": 10},
    "grid": {"train_size": [32, 48]},
}
CURVES = ("train", "val", "gap", "gap_se", "ema_train", "ema_val", "ema_gap", "ema_gap_se")
KEYS = ("point", "seed", "half", "step")


def _toml(doc: dict) -> str:
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return repr(v)

    return "".join(f"[{table}]\n" + "".join(f"{k} = {value(v)}\n" for k, v in body.items())
                   for table, body in doc.items())


def _spec_file(tmp_path, doc, name="spec.toml") -> Path:
    path = tmp_path / name
    path.write_text(_toml(doc))
    return path


def _cli(args, env=None, **kw):
    return subprocess.run([sys.executable, "-m", "jaxgap", "sweep", *map(str, args)],
                          capture_output=True, text=True, timeout=600, env=env, **kw)


def sigmas_of(rows):
    return sorted({r["sigma"] for r in rows})


def _same_tables(a: Path, b: Path, *, rtol: float):
    for name, cols in (("losses.csv", CURVES), ("samples.csv", ("memorized", "dist_train",
                                                                 "dist_val", "precision",
                                                                 "base_memorized"))):
        ra, rb = read_csv(a / name), read_csv(b / name)
        assert [tuple(r[k] for k in KEYS) for r in ra] == [tuple(r[k] for k in KEYS) for r in rb]
        for c in cols:
            x = np.array([r[c] for r in ra], np.float64)
            y = np.array([r[c] for r in rb], np.float64)
            np.testing.assert_allclose(y, x, rtol=rtol, atol=1e-7, err_msg=f"{name} {c}")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sweep") / "ref"
    spec = parse_spec(TINY)
    summary = run_sweep(spec, folder, progress=False)
    return folder, summary


# ------------------------------------------------------------------------------------------
# Specifications
# ------------------------------------------------------------------------------------------

def _with(sweep=None, grid=None, drop=()):
    doc = {"sweep": {**TINY["sweep"], **(sweep or {})}, "grid": {**TINY["grid"], **(grid or {})}}
    for table, key in drop:
        doc[table].pop(key)
    return doc


@pytest.mark.parametrize("doc, needle", [
    (_with(grid={"widht": [8]}), "grid.widht: unknown factor"),
    (_with(grid={"train_size": []}), "grid.train_size: expected a non-empty list"),
    (_with(grid={"train_size": [32, 32]}), "grid.train_size: expected distinct values"),
    (_with(grid={"channels": [[8, 16]]}), "grid.channels: changes nothing for model 'mlp'"),
    (_with(grid={"heads": [2, 4]}), "grid.heads: changes nothing for model 'mlp'"),
    (_with(grid={"model_size": ["xs", "xxl"]}), "spec: model_size: expected one of"),
    ({"sweep": {"model": "empirical"}, "grid": {"depth": [1, 2]}},
     "grid.depth: changes nothing for model 'empirical'"),
    ({"sweep": {"model": "gaussian", "lr": 0.1}}, "sweep.lr: changes nothing"),
    (_with(grid={"train_size": [32, 2000]}), "train_size: 2000 training examples needed"),
    (_with(sweep={"eval_steps": [0, 61]}), "sweep.eval_steps: expected steps in [0, steps = 60]"),
    (_with(sweep={"sample_steps": [-1]}), "sweep.sample_steps: expected steps in [0"),
    (_with(sweep={"colour": 1}), "sweep.colour: unknown setting"),
    (_with(sweep={"seeds": 0}), "sweep.seeds"),
    (_with(sweep={"halves": 1}), "sweep.halves: expected true or false"),
    (_with(grid={"lr": [1e-3, -1.0]}), "spec: lr"),
    (_with(grid={"width": [8]}), "grid.width: also fixed in [sweep]"),
    (_with(drop=[("grid", "train_size")]), "sweep.halves: needs train_size"),
    ({"sweep": {"model": "position_error"}, "grid": {"train_size": [64]}},
     "position_error needs"),
    ({"sweep": {"model": "position_error"}, "grid": {"delta": [0.1, -1.0]}},
     "delta: expected a finite number >= 0"),
    (_with(sweep={"delta": 0.1}), "only the position_error model"),
    (_with(grid={"guidance": [0.0, 2.0]}), "grid.guidance: changes nothing for an "
                                           "unconditional model"),
    (_with(grid={"condition": ["class", "label"]}), "spec: condition: expected one of"),
    ({"sweep": {"model": "position_error", "delta": 0.1, "condition": "class"}},
     "position_error model has no conditional form"),
    ({"sweep": {"model": "empirical", "condition": "fine"}, "grid": {"train_size": [64, 20]}},
     "val_cond: expected condition ids carried by some training point"),
])
def test_bad_specs_name_the_entry(doc, needle):
    with pytest.raises(ValueError) as err:
        parse_spec(doc, num_train=data_size)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_partners_only_where_the_second_half_fits():
    spec = parse_spec(_with(grid={"train_size": [32, 600, 1000]}),
                      num_train=lambda c: 1497)
    halves = {(m.config.train_size, m.half) for m in spec.members()}
    assert halves == {(32, 0), (32, 1), (600, 0), (600, 1), (1000, 0)}
    assert "no disjoint second half for train_size [1000]" in spec.notes[0]
    partner = next(m for m in spec.members() if m.half == 1)
    assert partner.config.train_offset == partner.config.train_size  # examples [N, 2N)
    assert partner.config.data_seed == partner.seed != partner.config.seed  # own init


def test_cli_refuses_bad_input_and_writes_nothing(tmp_path, capsys):
    def run(*args):
        rc = cli.main(["sweep", *map(str, args)])
        err = capsys.readouterr().err.strip().splitlines()
        return rc, err

    bad = _spec_file(tmp_path, _with(grid={"widht": [8]}), "bad.toml")
    rc, err = run(bad, "--out", tmp_path / "new")
    assert rc == 2 and len(err) == 1 and "grid.widht: unknown factor" in err[0]
    assert not (tmp_path / "new").exists()
    (tmp_path / "broken.toml").write_text("[sweep\n")
    rc, err = run(tmp_path / "broken.toml", "--out", tmp_path / "new")
    assert rc == 2 and "not valid TOML" in err[0] and not (tmp_path / "new").exists()
    # a folder holding another spec's sweep: refused without and with --resume
    good = _spec_file(tmp_path, TINY, "good.toml")
    other = tmp_path / "other"
    other.mkdir()
    (other / "spec.json").write_text(json.dumps(_with(sweep={"steps": 50,
                                                             "eval_steps": [0, 50],
                                                             "sample_steps": []})))
    before = sorted(p.name for p in other.iterdir())
    rc, err = run(good, "--out", other)
    assert rc == 2 and "already holds a sweep; pass --resume" in err[0]
    rc, err = run(good, "--out", other, "--resume")
    assert rc == 2 and "a different spec" in err[0]
    assert sorted(p.name for p in other.iterdir()) == before
    rc, err = run(good, "--out", tmp_path / "none", "--resume")
    assert rc == 2 and "holds no sweep" in err[0] and not (tmp_path / "none").exists()
    rc, err = run("--plot", tmp_path)
    assert rc == 2 and "holds no sweep" in err[0]


# ------------------------------------------------------------------------------------------
# Closed forms: the curves of the former scripts/sweep.py, groups never recomputed
# ------------------------------------------------------------------------------------------

def test_closed_form_sweep_gives_the_direct_curves(tmp_path):
    doc = {"sweep": {"data": "digits", "model": "empirical", "seeds": [0, 2],
                     "eval_sigmas": 6, "eval_num_noise": 2, "sample_steps": [0],
                     "num_samples": 16, "num_bootstrap": 50, "features": False},
           "grid": {"train_size": [64, 256]}}
    out = tmp_path / "cf"
    run_sweep(parse_spec(doc), out, progress=False)
    rows = read_csv(out / "losses.csv")
    sigmas = noise.log_sigmas(6, 0.002, 80.0)
    for seed in (0, 2):
        ds = load_data(TrainConfig(seed=seed))
        for n in (64, 256):
            key = _streams.stream(jax.random.PRNGKey(seed), _streams.EVAL_NOISE)
            direct = gap_curve(key, EmpiricalDenoiser(ds.train[:n]), ds.train[:n], ds.val,
                               sigmas, num_noise=2)
            mine = [r for r in rows if r["seed"] == seed and r["train_size"] == n]
            assert [r["step"] for r in mine] == [0] * 6 and mine[0]["ema_gap"] is None
            np.testing.assert_allclose([r["sigma"] for r in mine], sigmas, rtol=1e-6)
            for c in ("train", "val", "gap", "gap_se"):
                np.testing.assert_allclose([r[c] for r in mine], np.asarray(getattr(direct, c)),
                                           rtol=1e-5, atol=1e-8, err_msg=c)
    # the optimal denoiser copies its training set; held-out images do not (the baseline)
    samples = read_csv(out / "samples.csv")
    assert len(samples) == 4
    for r in samples:
        assert r["memorized"] >= 0.9 and r["base_memorized"] <= 0.1, r
    # the position-error model at delta = 0 is the optimal denoiser itself
    pe = {"sweep": {"data": "digits", "model": "position_error", "seeds": [0],
                    "eval_sigmas": 6, "eval_num_noise": 2},
          "grid": {"train_size": [64], "delta": [0.0, 0.3]}}
    run_sweep(parse_spec(pe), tmp_path / "pe", progress=False)
    pe_rows = read_csv(tmp_path / "pe" / "losses.csv")
    at0 = [r["gap"] for r in pe_rows if r["delta"] == 0.0]
    ref = [r["gap"] for r in rows if r["seed"] == 0 and r["train_size"] == 64]
    np.testing.assert_allclose(at0, ref, rtol=1e-6, atol=1e-9)
    low = {r["delta"]: r["train"] for r in pe_rows if r["sigma"] == min(sigmas_of(pe_rows))}
    assert low[0.3] > 100 * max(low[0.0], 1e-9)  # model error: no exact recall at low noise
    # a resumed finished sweep recomputes no group
    done = sorted((out / "groups").glob("*/done.json"))
    stamps = [p.stat().st_mtime_ns for p in done]
    run_sweep(parse_spec(doc), out, resume=True, progress=False)
    assert [p.stat().st_mtime_ns for p in done] == stamps
    assert read_csv(out / "losses.csv") == rows


def test_conditional_closed_form_sweep_and_guidance_limits(tmp_path):
    doc = {"sweep": {"data": "digits", "model": "empirical", "seeds": [1], "condition": "class",
                     "eval_sigmas": 4, "eval_num_noise": 1, "train_size": 96,
                     "eval_val_size": 64},
           "grid": {"guidance": [0.0, 1.0]}}
    run_sweep(parse_spec(doc), tmp_path / "c", progress=False)
    rows = read_csv(tmp_path / "c" / "losses.csv")
    ds = load_data(TrainConfig(seed=1, train_size=96, condition="class"))
    key = _streams.stream(jax.random.PRNGKey(1), _streams.EVAL_NOISE)
    sigmas = noise.log_sigmas(4, 0.002, 80.0)
    val, val_cond = ds.val[:64], ds.val_cond[:64]
    direct = {0.0: gap_curve(key, EmpiricalDenoiser(ds.train), ds.train, val, sigmas),
              1.0: gap_curve(key, ConditionalEmpiricalDenoiser(ds.train, ds.train_cond),
                             ds.train, val, sigmas, train_cond=ds.train_cond,
                             val_cond=val_cond)}
    for w, ref in direct.items():
        mine = [r for r in rows if r["guidance"] == w]
        for c in ("train", "val", "gap"):
            np.testing.assert_allclose([r[c] for r in mine], np.asarray(getattr(ref, c)),
                                       rtol=1e-5, atol=1e-8, err_msg=f"w={w} {c}")
    # a class-conditional optimal denoiser knows more: its validation loss is lower
    assert direct[1.0].val[2] < direct[0.0].val[2]


def test_guidance_factor_trains_one_network_per_seed(tmp_path):
    """Members that differ only in w share one trained network, evaluated and sampled at
    each w: at step 0 (zero-initialized class embedding) every w gives the same curve."""
    doc = {"sweep": {**TINY["sweep"], "seeds": [2], "halves": False, "condition": "class",
                     "steps": 20, "eval_steps": [0, 20], "sample_steps": [20]},
           "grid": {"guidance": [0.0, 2.0]}}
    spec = parse_spec(doc)
    trained, views = shared_training([m.config for m in spec.members()])
    assert len(trained) == 1 and views == [(0, 0.0), (0, 2.0)]
    run_sweep(spec, tmp_path / "g", progress=False)
    rows = read_csv(tmp_path / "g" / "losses.csv")
    curve = {(r["guidance"], r["step"]): [] for r in rows}
    for r in rows:
        curve[(r["guidance"], r["step"])].append(r["ema_gap"])
    np.testing.assert_array_equal(curve[(0.0, 0)], curve[(2.0, 0)])
    assert not np.allclose(curve[(0.0, 20)], curve[(2.0, 20)])
    samples = read_csv(tmp_path / "g" / "samples.csv")
    assert sorted(r["guidance"] for r in samples) == [0.0, 2.0]


# ------------------------------------------------------------------------------------------
# Trained ensembles: the reference, a killed sweep, devices and hosts
# ------------------------------------------------------------------------------------------

def test_reference_tables(reference):
    folder, summary = reference
    losses, samples = read_csv(folder / "losses.csv"), read_csv(folder / "samples.csv")
    assert summary["members"] == 12 and summary["groups"] == 1
    assert len(losses) == 12 * 3 * 5 and len(samples) == 12
    assert samples[0]["feat_precision"] is None and samples[0]["precision"] is not None
    assert {r["half"] for r in samples} == {0, 1}
    for r in samples:
        assert 0 <= r["memorized"] <= 1 and r["dist_train"] > 0 and r["base_dist_val"] > 0
        assert (r["pair_relative"] is None) == (r["half"] == 0)
    assert sorted(p.name for p in folder.glob("*.png")) == []  # figures: the CLI's job
    assert json.loads((folder / "sweep.json").read_text())["analyses"]["memorization_onset"]


def _wait_for(path: Path, text: str, proc, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if path.exists() and text in path.read_text():
            return
        time.sleep(0.02)


def test_killed_sweep_resumes_to_the_same_tables(reference, tmp_path):
    spec = _spec_file(tmp_path, TINY)
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "jaxgap", "sweep", str(spec), "--out",
                             str(out), "--quiet"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    _wait_for(out / "groups" / "g000" / "rows.jsonl", '"step": 30', proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL, "the sweep finished before it could be killed"
    assert not (out / "losses.csv").exists()
    run_sweep(load_spec(spec), out, resume=True, progress=False)  # (in this process: faster)
    _same_tables(reference[0], out, rtol=1e-6)


@pytest.mark.slow
def test_two_processes_with_four_devices_each(reference, tmp_path):
    """8 devices over 2 hosts (12 members padded to 16) give the single-device tables."""
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    flags = os.environ.get("XLA_FLAGS", "")
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"{flags} --xla_force_host_platform_device_count=4".strip())
    spec = _spec_file(tmp_path, TINY)
    procs = [subprocess.Popen(
        [sys.executable, "-m", "jaxgap", "sweep", str(spec), "--out", str(tmp_path / f"p{i}"),
         "--coordinator", f"localhost:{port}", "--num-processes", "2", "--process-id", str(i),
         "--quiet"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][1][-3000:] + outs[1][1][-3000:]
    assert not (tmp_path / "p1").exists()  # only process 0 writes
    _same_tables(reference[0], tmp_path / "p0", rtol=1e-4)
    devices = json.loads((tmp_path / "p0" / "sweep.json").read_text())["devices"]
    assert devices["process_count"] == 2 and devices["device_count"] == 8
    assert devices["mesh"] == 8
    assert (tmp_path / "p0" / "memorization.png").stat().st_size > 0  # the CLI plots


def test_load_spec_reads_toml(tmp_path):
    spec = load_spec(_spec_file(tmp_path, TINY))
    assert spec.seeds == (0, 1, 2) and spec.factors == ["train_size"]
    assert len(spec.members()) == 12


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[1] / "docs" / "sweeps")
                                        .glob("*.toml")), ids=lambda p: p.stem)
def test_documented_specs_parse(path):
    """Every spec under docs/sweeps (the documented runs) still parses, as ``jaxgap sweep``
    reads it; the training sizes are checked against the data too, except for conditional
    specs (their check fits k-means conditions once per member: ~1 s each)."""
    spec = load_spec(path)
    assert spec.members(), path.name
    if not any(m.config.conditional for m in spec.members()):
        checked = load_spec(path, num_train=data_size).members()  # (halves without a
        assert checked and all(m in spec.members() for m in checked)  # partner dropped)

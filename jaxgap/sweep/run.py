"""Run a sweep: group its members into ensembles, train them, evaluate, sample, write tables.

Members whose configs share a :func:`jaxgap.ensemble.program_key` (same architecture,
batch, data, schedule) are trained as one ensemble, one compiled program, with the member
axis sharded over a 1-D mesh of every device (every host's, under ``jax.distributed``);
others form further ensembles. Closed-form models are evaluated point by point (their
examples sharded over the mesh). Each group works in ``OUT/groups/gNNN/`` (the ensemble's
orbax checkpoint and rows) and is marked finished by ``done.json`` (its tidy rows), so a
killed sweep resumes inside the group it was running and never recomputes a finished one.
``losses.csv`` and ``samples.csv`` are rewritten atomically after every group. Only process
0 reads and writes ``OUT``; the others follow its decisions (no shared filesystem needed).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import time
from importlib import metadata
from pathlib import Path

import jax
import numpy as np
from jax.experimental import multihost_utils

from jaxgap import _io, _mc, _progress, _streams
from jaxgap import data as _data
from jaxgap import noise as _noise
from jaxgap.denoisers import (
    ConditionalEmpiricalDenoiser,
    ConditionalGaussianDenoiser,
    EmpiricalDenoiser,
    GaussianDenoiser,
    guided,
)
from jaxgap.ensemble import Ensemble, fit, member_data, program_key, to_host
from jaxgap.losses import gap_curve
from jaxgap.metrics import (
    BASELINE,
    measure_memorization,
    measure_quality,
    nearest_neighbors,
    quality_classifier,
    sample_and_measure,
)
from jaxgap.sweep import analysis, tables
from jaxgap.sweep.spec import Member, SweepSpec, data_size
from jaxgap.theory import PositionError
from jaxgap.train import load_data

__all__ = ["LOSSES", "SAMPLES", "SPEC", "SWEEP", "check_folder", "run_sweep", "shared_training"]

SPEC, LOSSES, SAMPLES, SWEEP, GROUPS, DONE = ("spec.json", "losses.csv", "samples.csv",
                                              "sweep.json", "groups", "done.json")
EXTRAS = "extras.json"
CURVE = ("train", "val", "gap", "train_se", "val_se", "gap_se")
QUALITY = ("precision", "recall", "density", "coverage", "frechet")
MEASURES = ("memorized", "memorized_se", "dist_train", "dist_val") + QUALITY + tuple(
    f"feat_{q}" for q in QUALITY)


def loss_columns(spec: SweepSpec) -> list[str]:
    return [*_id_columns(spec), "step", "sigma", *CURVE, *(f"ema_{c}" for c in CURVE)]


def sample_columns(spec: SweepSpec) -> list[str]:
    return [*_id_columns(spec), "step", "num_samples", *MEASURES,
            *(f"base_{m}" for m in MEASURES), "pair_distance", "pair_relative"]


def _id_columns(spec: SweepSpec) -> list[str]:
    factors = spec.factors
    return ["point", "seed", "half", "model", *factors,
            *([] if "train_size" in factors else ["train_size"])]


def check_folder(spec: SweepSpec, out, *, resume: bool) -> None:
    """Refuse an output folder that holds something else, before anything is written."""
    out = Path(out)
    old = out / SPEC
    if resume:
        if not old.exists():
            raise ValueError(f"out: --resume given but {out} holds no sweep ({SPEC}); drop "
                             "--resume to start one there")
        if json.loads(old.read_text()) != json.loads(spec.to_json()):
            raise ValueError(f"out: {out} holds a sweep of a different spec; --resume "
                             "continues only the same spec (choose another --out)")
    elif out.exists() and any(out.iterdir()):
        what = "a sweep" if old.exists() else "other files"
        raise ValueError(f"out: {out} already holds {what}; pass --resume to continue the "
                         "same spec or choose another --out")


class _Cache:
    """Per-seed datasets and feature classifiers, per-member held-out baselines."""

    def __init__(self, spec: SweepSpec):
        self.spec, self.full, self.clf, self.base = spec, {}, {}, {}

    def dataset(self, m: Member):
        """The member's whole dataset (its split's seed is the sweep seed)."""
        key = (m.config.data, m.config.data_options, m.seed)
        if key not in self.full:
            self.full[key] = _data.load(m.config.data, seed=m.seed,
                                        **dict(m.config.data_options))
        return self.full[key]

    def classifier(self, m: Member, key):
        k = (m.config.data, m.config.data_options, m.seed)
        if k not in self.clf:
            self.clf[k] = (quality_classifier(key, self.dataset(m)) if self.spec.features
                           else None)
        return self.clf[k]

    def baseline(self, m: Member, ds, key) -> dict:
        """Held-out images measured as samples are: copying of the member's training set,
        distances to it and to the other held-out images."""
        k = (m.config.data, m.config.data_options, m.seed, m.config.train_size,
             m.config.train_offset)
        if k not in self.base:
            mem = measure_memorization(_streams.stream(key, _streams.MEMORIZATION), ds.val,
                                       ds.train, ds.val, num_bootstrap=self.spec.num_bootstrap)
            s = mem.summary()
            others = np.asarray(nearest_neighbors(ds.val, ds.val, k=2).dist[:, 1], np.float64)
            self.base[k] = {"memorized": s["memorized_fraction"],
                            "memorized_se": s["memorized_fraction_se"],
                            "dist_train": s["mean_distance_to_train"],
                            "dist_val": float(np.mean(others))}
        return self.base[k]


def _quality_row(q: dict | None, name: str) -> dict:
    out = {}
    if q is None:
        return out
    entry = q["sets"][name]
    for prefix, part in (("", "pixels"), ("feat_", "features")):
        if entry[part] is not None:
            out.update({prefix + k: entry[part][k] for k in QUALITY})
    return out


def _measure(spec, cache, members, denoisers, datasets, step=0, extra=None) -> list[dict]:
    """Sample every member and measure its samples and the held-out baseline (and, with
    ``extra``, whatever ``extra(step, member, denoiser, dataset, run)`` returns, as the row's
    ``"extra"``)."""
    rows, drawn = [], {}
    for i, (m, den, ds) in enumerate(zip(members, denoisers, datasets, strict=True)):
        if m is None:
            continue
        key = _streams.stream(jax.random.PRNGKey(m.seed), _streams.SAMPLING)
        run = sample_and_measure(key, den, ds.train, ds.val, num=spec.num_samples,
                                 num_steps=spec.sampler_steps, cond=_sample_conds(key, m, ds,
                                                                                  spec),
                                 num_bootstrap=spec.num_bootstrap,
                                 name=f"point {m.point} seed {m.seed} half {m.half}")
        samples = np.asarray(run.samples)
        drawn[(m.point, m.seed, m.half)] = samples
        s = run.memorization.summary()
        q = measure_quality(key, {"samples": samples}, cache.dataset(m),
                            classifier=cache.classifier(m, key), features=spec.features)
        row = {"member": i, "num_samples": spec.num_samples,
               "memorized": s["memorized_fraction"], "memorized_se": s["memorized_fraction_se"],
               "dist_train": s["mean_distance_to_train"], "dist_val": s["mean_distance_to_val"],
               **_quality_row(q, "samples")}
        row.update({f"base_{k}": v for k, v in cache.baseline(m, ds, key).items()})
        row.update({f"base_{k}": v for k, v in _quality_row(q, BASELINE).items()})
        if extra is not None:
            row["extra"] = extra(step, m, den, ds, run)
        rows.append(row)
    for row in rows:
        m = members[row["member"]]
        partner = drawn.get((m.point, m.seed, 0)) if m.half == 1 else None
        if partner is not None:
            mine = drawn[(m.point, m.seed, 1)]
            paired = np.linalg.norm(mine - partner, axis=1).mean()
            cross = np.linalg.norm(mine[:, None] - partner[None], axis=-1)
            unpaired = (cross.sum() - np.trace(cross)) / (cross.size - len(cross))
            row.update(pair_distance=float(paired), pair_relative=float(paired / unpaired))
    return rows


def _sample_conds(key, m: Member, ds, spec: SweepSpec):
    """A conditional model's sample conditions: those of training points drawn uniformly
    (the training set's condition frequencies); None for an unconditional model."""
    if not m.config.conditional:
        return None
    pick = jax.random.randint(_streams.stream(key, _streams.CONDITIONS), (spec.num_samples,),
                              0, ds.num_train)
    return np.asarray(ds.train_cond)[np.asarray(pick)]


def _tidy(spec, members, rows) -> tuple[list[dict], list[dict], list[dict]]:
    """Rows of ``fit`` (or of the closed forms) as rows of the two tables, and the
    ``extra`` measurements of the sample rows (with the rows' ids)."""
    losses, samples, extras = [], [], []
    for r in rows:
        m = members[r["member"]]
        if m is None:  # padding of the member axis
            continue
        ident = {"point": m.point, "seed": m.seed, "half": m.half, "model": spec.model,
                 **m.factors, "train_size": m.config.train_size}
        if r["kind"] == "loss":
            for k, sigma in enumerate(r["sigmas"]):
                row = {**ident, "step": r["step"], "sigma": sigma}
                for c in CURVE:
                    row[c] = r[c][k]
                    row["ema_" + c] = r["ema_" + c][k] if "ema_" + c in r else None
                losses.append(row)
        else:
            samples.append({**ident, "step": r["step"],
                            **{k: v for k, v in r.items()
                               if k not in ("kind", "member", "step", "extra")}})
            if "extra" in r:
                extras.append({**ident, "step": r["step"], "extra": r["extra"]})
    return losses, samples, extras


def _closed_form(m: Member, ds, model: str):
    if m.config.conditional:
        den = (ConditionalEmpiricalDenoiser(ds.train, ds.train_cond) if model == "empirical"
               else ConditionalGaussianDenoiser.from_data(ds.train, ds.train_cond))
        return guided(den, m.config.guidance)
    if model == "empirical":
        return EmpiricalDenoiser(ds.train)
    if model == "gaussian":
        return GaussianDenoiser.from_data(ds.train)
    return PositionError(ds.train, m.delta)


def _groups(spec: SweepSpec, num_train) -> list[list[Member]]:
    """Members by program: ensembles of one program key, or closed forms by grid point."""
    groups: dict = {}
    for m in spec.members():
        if spec.trained:
            key = program_key(m.config, m.config.train_size or num_train(m.config))
        else:
            key = m.point
        groups.setdefault(key, []).append(m)
    return list(groups.values())


def _run_group(spec, members, folder: Path, *, mesh, progress, cache, lead, desc, extra):
    n_dev = 1 if mesh is None else mesh.devices.size
    if not spec.trained:
        rows = []
        sigmas = _noise.log_sigmas(spec.base.eval_sigmas, spec.base.sigma_min,
                                   spec.base.sigma_max)
        dens, sets = [], []
        for i, m in enumerate(members):
            ds = load_data(m.config)
            den = _closed_form(m, ds, spec.model)
            key = _streams.stream(jax.random.PRNGKey(m.seed), _streams.EVAL_NOISE)
            tc = vc = None
            if m.config.conditional:
                tc = ds.train_cond[: m.config.eval_train_size]
                vc = ds.val_cond[: m.config.eval_val_size]
            curve = gap_curve(key, den, ds.train[: m.config.eval_train_size],
                              ds.val[: m.config.eval_val_size], sigmas, train_cond=tc,
                              val_cond=vc, num_noise=m.config.eval_num_noise, mesh=mesh)
            curve = to_host(curve._asdict())
            rows.append({"kind": "loss", "step": 0, "member": i,
                         "sigmas": np.asarray(sigmas, np.float64).tolist(),
                         **{c: np.asarray(curve[c], np.float64).tolist() for c in CURVE}})
            dens.append(den)
            sets.append(ds)
        if 0 in spec.sample_steps and lead:
            rows += [{"kind": "sample", "step": 0, **r}
                     for r in _measure(spec, cache, members, dens, sets, 0, extra)]
        return rows
    configs, views = shared_training([m.config for m in members])
    pad = (-len(configs)) % n_dev
    configs += [configs[-1]] * pad
    data = member_data(configs)
    ds0 = data.datasets[0]
    ens = Ensemble.create(configs, dim=ds0.dim, image_shape=ds0.image_shape,
                          classes=data.classes)

    def on_sample(step, host):
        dens = [ens.denoiser(host, i, guidance=w) for i, w in views]
        return _measure(spec, cache, members, dens, [data.datasets[i] for i, _ in views], step,
                        extra)

    # the sweep folder was checked: a group's checkpoints are this spec's
    return fit(ens, data, folder, eval_steps=spec.eval_steps, sample_steps=spec.sample_steps,
               on_sample=on_sample, mesh=mesh, resume=True, progress=progress, desc=desc,
               views=views)


def shared_training(configs) -> tuple[list, list[tuple[int, float]]]:
    """Members that differ only in their guidance weight train the same network: the
    configs to train (first occurrences, in order) and, per member, its ``(trained index,
    guidance)`` view."""
    trained, index, views = [], {}, []
    for c in configs:
        key = dataclasses.replace(c, guidance=1.0)
        if key not in index:
            index[key] = len(trained)
            trained.append(c)
        views.append((index[key], float(c.guidance)))
    return trained, views


def _versions() -> dict:
    out = {}
    for pkg in ("jaxgap", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def run_sweep(spec: SweepSpec, out, *, resume: bool = False, mesh=None,
              progress: bool | str | None = True, extra=None) -> dict:
    """Run (or resume) a sweep into ``out``; returns the content of ``sweep.json``.

    Args:
      spec: the checked specification (:func:`jaxgap.sweep.load_spec`).
      out: the sweep folder.
      resume: continue a killed sweep of the same spec (finished groups are kept).
      mesh: a 1-D mesh of the devices to use (None: one device).
      progress: a :func:`jaxgap._progress.bar` mode.
      extra: optional ``(step, member, denoiser, dataset, run) -> dict`` called for every
        sampled member (``run``: its :class:`~jaxgap.metrics.SamplerRun`); the JSON-ready
        dicts are written, with the members' ids and step, to ``extras.json`` (how
        ``jaxgap reproduce`` measures noisy copies, trajectory domains and field sharpness
        of every network).
    """
    out = Path(out)
    lead = jax.process_index() == 0
    if lead:
        check_folder(spec, out, resume=resume)
    t0 = time.perf_counter()
    groups = _groups(spec, data_size)
    if lead:
        (out / GROUPS).mkdir(parents=True, exist_ok=True)
        _io.write_text(out / SPEC, spec.to_json())
    done = np.array([(out / GROUPS / f"g{g:03d}" / DONE).exists() if lead else False
                     for g in range(len(groups))], np.int32)
    if jax.process_count() > 1:
        done = np.asarray(multihost_utils.broadcast_one_to_all(done))
    cache = _Cache(spec)
    timings = {}
    all_losses, all_samples, all_extras = [], [], []
    with _progress.bar(len(groups), f"sweep of {len(spec.members())} members",
                       mode=progress if lead else False, unit="group") as bar:
        for g, members in enumerate(groups):
            folder = out / GROUPS / f"g{g:03d}"
            if done[g]:
                doc = json.loads((folder / DONE).read_text()) if lead else {}
            else:
                start = time.perf_counter()
                rows = _run_group(spec, members, folder, mesh=mesh, progress=progress,
                                  cache=cache, lead=lead,
                                  desc=f"group {g + 1}/{len(groups)} ({len(members)} members)",
                                  extra=extra)
                losses, samples, extras = _tidy(spec, list(members), rows)
                doc = {"members": len(members), "seconds": time.perf_counter() - start,
                       "losses": losses, "samples": samples, "extras": extras}
                if lead:
                    folder.mkdir(parents=True, exist_ok=True)
                    _io.write_text(folder / DONE, json.dumps(doc))
            if lead:
                timings[f"g{g:03d}"] = {"members": doc["members"], "seconds": doc["seconds"]}
                all_losses += doc["losses"]
                all_samples += doc["samples"]
                all_extras += doc.get("extras", [])
                tables.write_csv(out / LOSSES, all_losses, loss_columns(spec))
                tables.write_csv(out / SAMPLES, all_samples, sample_columns(spec))
                if all_extras:
                    _io.write_text(out / EXTRAS, json.dumps(all_extras))
            bar.update(1)
    summary = {}
    if lead:
        summary = {
            "spec": spec.raw, "factors": spec.factors, "members": len(spec.members()),
            "groups": len(groups), "versions": _versions(),
            "devices": {"text": _mc.device_text(), "device_count": jax.device_count(),
                        "process_count": jax.process_count(),
                        "mesh": None if mesh is None else int(mesh.devices.size)},
            "timings": {"seconds": time.perf_counter() - t0, "groups": timings,
                        "finished": datetime.datetime.now(datetime.UTC).isoformat(
                            timespec="seconds")},
            "analyses": analysis.summarize(all_losses, all_samples, spec.factors,
                                           margin=spec.onset_margin),
        }
        _io.write_text(out / SWEEP, json.dumps(summary, indent=2, default=float))
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("jaxgap sweep done")
    return summary

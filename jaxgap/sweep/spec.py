"""Sweep specifications: a TOML file naming the fixed settings, a grid of factors and seeds.

.. code-block:: toml

    [sweep]
    data = "digits"
    model = "mlp"            # or "unet", "dit", "empirical", "gaussian", "position_error"
    steps = 16000
    eval_steps = [0, 1000, 2000, 4000, 8000, 12000, 16000]
    sample_steps = [4000, 8000, 16000]   # where samples are drawn and memorization measured
    num_samples = 256
    seeds = 4                # seeds 0..3, or a list of seeds
    halves = true            # also train each (point, seed) on the disjoint second half
    width = 256              # any other TrainConfig field: a fixed value
    [grid]                   # the Cartesian product of these lists
    train_size = [128, 256, 512, 1024]
    width = [128, 256]

A point of the grid and a seed give one :class:`~jaxgap.train.TrainConfig` (a closed-form
model: its training set and evaluation settings), exactly what ``jaxgap train`` would run
with those values. :func:`load_spec` checks everything that can be checked before any
work: unknown names, empty or repeated lists, factors that change nothing for the model,
training sets larger than the data, steps outside ``[0, steps]``.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import tomllib
from pathlib import Path
from typing import Any, NamedTuple

from jaxgap.train import ARCH_FIELDS, TrainConfig, load_data

__all__ = ["CLOSED_FORMS", "MODELS", "Member", "SweepSpec", "data_size", "load_spec",
           "parse_spec"]

PARTNER_SEED = 1_000_000
"""The disjoint-halves partner of seed ``s`` trains with seed ``s + PARTNER_SEED``
(initialization, data order, noise) on the split of seed ``s``; it samples from seed ``s``'s
noise, as its half-0 partner does."""
NETS = tuple(ARCH_FIELDS)
CLOSED_FORMS = ("empirical", "gaussian", "position_error")
MODELS = NETS + CLOSED_FORMS
SWEEP_KEYS = {
    "data": str, "model": str, "seeds": (int, list), "eval_steps": list,
    "sample_steps": list, "num_samples": int, "sampler_steps": int, "num_bootstrap": int,
    "halves": bool, "delta": (int, float), "onset_margin": (int, float), "features": bool,
}
"""``[sweep]`` keys besides the :class:`~jaxgap.train.TrainConfig` fields."""
TRAIN_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)} - {"seed", "model", "data_seed"}
DATA_FIELDS = {"data", "data_options", "train_size", "train_offset", "eval_sigmas",
               "sigma_min", "sigma_max", "eval_num_noise", "eval_train_size", "eval_val_size",
               "condition", "guidance"}
"""The fields a closed-form model depends on (its training set, its conditions, its
evaluation)."""


class Member(NamedTuple):
    """One trained or evaluated model of a sweep: a grid point, a seed, a half.

    Attributes:
      point: index of the grid point.
      seed: the seed.
      half: 0, or 1 for the disjoint-halves partner (examples ``[N, 2N)`` of the same
        split, its own initialization and noise: seed ``seed + PARTNER_SEED``).
      factors: ``{factor: value}`` of the grid point.
      config: the member's :class:`~jaxgap.train.TrainConfig`.
      delta: the position error of ``position_error`` (else None).
    """

    point: int
    seed: int
    half: int
    factors: dict
    config: TrainConfig
    delta: float | None


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """A parsed, checked sweep specification (see the module docstring).

    Attributes:
      raw: the TOML document as read (``{"sweep": {...}, "grid": {...}}``).
      model: the model kind.
      base: the fixed :class:`~jaxgap.train.TrainConfig` fields.
      grid: ``{factor: [values]}`` in the file's order.
      seeds: the seeds.
      eval_steps, sample_steps: sorted steps.
      num_samples, sampler_steps, num_bootstrap: the samples drawn at each sample step.
      halves: add the disjoint-halves partner members.
      features: measure sample quality in a feature classifier's space too (labelled data).
      delta: fixed position error (``position_error`` without a ``delta`` factor).
      onset_margin: the margin of the memorization-onset analysis.
      no_partner: ``(point, seed)`` pairs whose disjoint second half does not fit in the
        data (no partner member; see ``notes``).
      notes: what the checks noticed, for the user and ``sweep.json``.
    """

    raw: dict
    model: str
    base: TrainConfig
    grid: dict
    seeds: tuple
    eval_steps: tuple
    sample_steps: tuple
    num_samples: int
    sampler_steps: int
    num_bootstrap: int
    halves: bool
    features: bool
    delta: float | None
    onset_margin: float
    no_partner: frozenset = frozenset()
    notes: tuple = ()

    @property
    def factors(self) -> list[str]:
        """The grid's factor names."""
        return list(self.grid)

    @property
    def trained(self) -> bool:
        return self.model in NETS

    def points(self) -> list[dict]:
        """The grid points, ``{factor: value}``, in the Cartesian product's order."""
        names = list(self.grid)
        return [dict(zip(names, combo, strict=True))
                for combo in itertools.product(*(self.grid[n] for n in names))]

    def members(self) -> list[Member]:
        """Every (point, seed, half) with its config; partners where ``2N`` examples fit."""
        out = []
        for p, values in enumerate(self.points()):
            fields = {k: (tuple(v) if k == "channels" else v) for k, v in values.items()
                      if k != "delta"}
            delta = values.get("delta", self.delta)
            for seed in self.seeds:
                config = dataclasses.replace(self.base, seed=seed, **fields)
                out.append(Member(p, seed, 0, values, config, delta))
                if self.halves and (p, seed) not in self.no_partner:
                    n = config.train_size
                    out.append(Member(p, seed, 1, values, dataclasses.replace(
                        config, seed=seed + PARTNER_SEED, data_seed=seed,
                        train_offset=config.train_offset + n), delta))
        return out

    def to_json(self) -> str:
        """The specification as canonical JSON (what a resumed sweep must match)."""
        return json.dumps(self.raw, indent=2, sort_keys=True)


def data_size(config: TrainConfig) -> int:
    """The training examples the config's data holds (the ``num_train`` check of
    :func:`parse_spec`); a conditional config whose own training set fits is loaded whole,
    so a validation condition that none of its training examples carries fails here."""
    n = load_data(dataclasses.replace(config, train_size=None, train_offset=0)).num_train
    if config.conditional and config.train_offset + (config.train_size or 0) <= n:
        load_data(config)
    return n


def _fail(msg: str):
    raise ValueError(msg)


def _steps(value, name: str, steps: int) -> tuple:
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool)
                                              for v in value):
        _fail(f"{name}: expected a list of integers, got {value!r}")
    if len(set(value)) != len(value):
        _fail(f"{name}: expected distinct steps, got {value!r}")
    bad = [v for v in value if not 0 <= v <= steps]
    if bad:
        _fail(f"{name}: expected steps in [0, steps = {steps}], got {bad}")
    return tuple(sorted(value))


def parse_spec(doc: dict, *, num_train: Any = None) -> SweepSpec:
    """Check a sweep document (the parsed TOML) and return its :class:`SweepSpec`.

    Args:
      doc: ``{"sweep": {...}, "grid": {...}}``.
      num_train: a callable ``seed -> training examples of the data`` (or None: not
        checked), to refuse training sets larger than the data.

    Raises:
      ValueError: one line naming the bad entry.
    """
    if not isinstance(doc, dict) or set(doc) - {"sweep", "grid"}:
        _fail(f"spec: expected the tables [sweep] and [grid], got "
              f"{sorted(doc) if isinstance(doc, dict) else type(doc).__name__}")
    sweep, grid = dict(doc.get("sweep", {})), dict(doc.get("grid", {}))
    model = sweep.get("model", "mlp")
    if model not in MODELS:
        _fail(f"sweep.model: expected one of {', '.join(MODELS)}, got {model!r}")
    for key, value in sweep.items():
        if key in SWEEP_KEYS:
            if not isinstance(value, SWEEP_KEYS[key]) or isinstance(value, bool) != (
                    SWEEP_KEYS[key] is bool):
                _fail(f"sweep.{key}: expected {_type_name(SWEEP_KEYS[key])}, got {value!r}")
        elif key not in TRAIN_FIELDS:
            _fail(f"sweep.{key}: unknown setting (expected a TrainConfig field or one of "
                  f"{', '.join(sorted(SWEEP_KEYS))})")
    for name, values in grid.items():
        if name not in TRAIN_FIELDS | {"delta"}:
            _fail(f"grid.{name}: unknown factor (expected a TrainConfig field other than "
                  "seed and model, or delta)")
        if not isinstance(values, list) or not values:
            _fail(f"grid.{name}: expected a non-empty list of values, got {values!r}")
        if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
            _fail(f"grid.{name}: expected distinct values, got {values!r}")
        if name in sweep:
            _fail(f"grid.{name}: also fixed in [sweep]; give it in one place")
        _check_matters(name, model)
    fixed = {k: v for k, v in sweep.items() if k in TRAIN_FIELDS}
    for name in fixed:
        _check_matters(name, model, where="sweep")
    if "channels" in fixed:
        fixed["channels"] = tuple(fixed["channels"])
    try:
        base = TrainConfig(model=model if model in NETS else "mlp", **fixed).validate()
        for values in (dict(zip(grid, c, strict=True)) for c in itertools.product(*grid.values())):
            fields = {k: (tuple(v) if k == "channels" else v) for k, v in values.items()
                      if k != "delta"}
            dataclasses.replace(base, **fields).validate()
    except (ValueError, TypeError) as err:
        _fail(f"spec: {err}")
    conditions = set(grid.get("condition", [base.condition]))
    for name in ("guidance", "p_uncond"):
        where = "grid" if name in grid else "sweep" if name in sweep else None
        if where and conditions == {"none"}:
            _fail(f"{where}.{name}: changes nothing for an unconditional model (condition = "
                  "'none'); set condition")
    if model == "position_error" and conditions != {"none"}:
        _fail("condition: the position_error model has no conditional form; use empirical "
              "or gaussian")
    seeds = sweep.get("seeds", 1)
    if isinstance(seeds, int):
        if seeds < 1:
            _fail(f"sweep.seeds: expected a count >= 1 or a list of seeds, got {seeds}")
        seeds = tuple(range(seeds))
    else:
        if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                for s in seeds) or len(set(seeds)) != len(seeds):
            _fail(f"sweep.seeds: expected distinct integers >= 0, got {seeds!r}")
        seeds = tuple(seeds)
    steps = base.steps if model in NETS else 0
    default_eval = sorted({0, steps // 4, steps // 2, steps}) if model in NETS else [0]
    eval_steps = _steps(sweep.get("eval_steps", default_eval), "sweep.eval_steps", steps)
    sample_steps = _steps(sweep.get("sample_steps", []), "sweep.sample_steps", steps)
    if not eval_steps:
        _fail("sweep.eval_steps: expected at least one step")
    for key in ("num_samples", "sampler_steps", "num_bootstrap"):
        if key in sweep and sweep[key] < 1:
            _fail(f"sweep.{key}: expected a positive integer, got {sweep[key]}")
    delta = sweep.get("delta")
    if model == "position_error":
        if (delta is None) == ("delta" not in grid):
            _fail("sweep.delta: position_error needs the position error delta, fixed in "
                  "[sweep] or a grid factor (exactly one)")
        for d in grid.get("delta", [delta]):
            if not (isinstance(d, (int, float)) and math.isfinite(d) and d >= 0):
                _fail(f"delta: expected a finite number >= 0, got {d!r}")
    elif delta is not None or "delta" in grid:
        _fail(f"delta: only the position_error model has a position error (model is "
              f"{model!r})")
    spec = SweepSpec(
        raw={"sweep": sweep, "grid": grid}, model=model, base=base, grid=grid, seeds=seeds,
        eval_steps=eval_steps, sample_steps=sample_steps,
        num_samples=sweep.get("num_samples", 256), sampler_steps=sweep.get("sampler_steps", 18),
        num_bootstrap=sweep.get("num_bootstrap", 1000), halves=sweep.get("halves", False),
        features=sweep.get("features", True),
        delta=None if delta is None else float(delta),
        onset_margin=float(sweep.get("onset_margin", 0.05)))
    if spec.halves and any(m.config.train_size is None
                           for m in dataclasses.replace(spec, halves=False).members()):
        _fail("sweep.halves: needs train_size (fixed or a factor): the halves are examples "
              "[0, N) and [N, 2N)")
    if num_train is None:
        return spec
    skipped = set()
    for m in spec.members():
        avail = num_train(m.config)
        need = m.config.train_offset + (m.config.train_size or 0)
        if need > avail and m.half == 0:
            _fail(f"train_size: {need} training examples needed for train_size = "
                  f"{m.config.train_size}, but {m.config.data!r} holds {avail}")
        if need > avail:
            skipped.add((m.point, m.seed, m.config.train_size, avail))
    if not skipped:
        return spec
    sizes = sorted({n for _, _, n, _ in skipped})
    note = (f"sweep.halves: no disjoint second half for train_size {sizes} (2 N exceeds the "
            f"{max(a for *_, a in skipped)} training examples); those points have no partner")
    return dataclasses.replace(spec, no_partner=frozenset((p, s) for p, s, _, _ in skipped),
                               notes=(note,))


def _type_name(t) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
             list: "a list"}
    return " or ".join(names[x] for x in (t if isinstance(t, tuple) else (t,)))


def _check_matters(name: str, model: str, *, where: str = "grid") -> None:
    """Refuse a setting that changes nothing for ``model``."""
    arch = {f for fields in ARCH_FIELDS.values() for f in fields}
    useless = (model in CLOSED_FORMS and name in TRAIN_FIELDS - DATA_FIELDS) or (
        model in NETS and name in arch - set(ARCH_FIELDS[model]))
    if useless:
        _fail(f"{where}.{name}: changes nothing for model {model!r}")


def load_spec(path, *, num_train: Any = None) -> SweepSpec:
    """Read and check a sweep TOML file (:func:`parse_spec`)."""
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text())
    except FileNotFoundError:
        _fail(f"spec: no such file: {path}")
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        _fail(f"spec: {path} is not valid TOML ({err})")
    return parse_spec(doc, num_train=num_train)

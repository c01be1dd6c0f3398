"""The run configuration, :class:`TrainConfig` (re-exported by :mod:`jaxgap.train`)."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

from jaxgap import data as _data
from jaxgap.nets import MODEL_SIZES

__all__ = ["ARCH_FIELDS", "EVAL_SIZE", "TrainConfig"]

ARCH_FIELDS = {"mlp": ("width", "depth"), "unet": ("channels",),
               "dit": ("width", "depth", "heads", "patch")}
"""The architecture fields of each network family (the others must stay None)."""
_LEGACY_ARCH = {"width": 256, "depth": 4, "channels": (32, 64)}
"""Before model sizes every config stored these three (the MLP's and U-Net's defaults): in a
config written then (no ``model_size`` field), a field holding this value is read as None
(the same network, or a field that does not apply to the model)."""

EVAL_SIZE = 2048
"""Default number of training and of validation examples evaluated (the first ones of each
split): evaluating every example of a large set at every sigma costs memory and time while
the standard errors already resolve the gap."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (read only at the entry point).

    Attributes:
      data: a :func:`jaxgap.data.load` name.
      data_options: keywords of :func:`jaxgap.data.load` (``(key, value)`` pairs, e.g.
        ``(("scale", 255),)``; a dict is accepted and stored sorted).
      model: ``"mlp"``, ``"unet"`` or ``"dit"`` (:data:`jaxgap.nets.DENOISER_KINDS`).
      model_size: None (the architecture fields, else the family's defaults: MLP width 256
        x depth 4, U-Net channels (32, 64), DiT width 64 x depth 4) or a rung of
        :data:`jaxgap.nets.MODEL_SIZES` (``"xs"`` ... ``"xl"``, about 4x the parameters per
        rung; :func:`jaxgap.nets.size_kwargs`), which the architecture fields that are set
        override one by one.
      train_size: number of training examples used (``None``: all).
      train_offset: the training examples are ``[train_offset, train_offset + train_size)``
        of the split (0: the first ones; ``train_offset = train_size`` gives the disjoint
        second half of a ``2 * train_size`` prefix).
      steps: optimizer steps.
      batch_size: examples per step (capped at ``train_size``).
      lr, warmup, weight_decay: AdamW with linear warm-up to ``lr`` over ``warmup`` steps.
      ema: EMA decay of the parameters (with the usual ``(1 + t) / (10 + t)`` warm-up).
      p_mean, p_std, sigma_data: EDM log-normal training sigmas and data scale.
      eval_every: steps between evaluations (also at step 0 and at the end).
      ckpt_every: steps between checkpoints (also at the end).
      eval_sigmas, sigma_min, sigma_max: the fixed log grid of the evaluations.
      eval_num_noise: noise draws per example in the evaluations.
      eval_train_size, eval_val_size: training and validation examples evaluated, the first
        ones of each split (``None``: all; default :data:`EVAL_SIZE`).
      width, depth: MLP and DiT size; channels: U-Net channels per level; heads, patch:
        DiT attention heads and patch size (each None: the rung's, else the class default;
        a field that does not apply to ``model`` is refused, see :data:`ARCH_FIELDS`).
      seed: the one seed of the run (data split, init, data order, noise).
      data_seed: the seed of the data split when it differs from ``seed`` (None: ``seed``),
        e.g. a partner network with its own initialization on the other half of a split.
      condition: a :data:`jaxgap.data.GRANULARITIES` name: ``"none"`` trains an
        unconditional network; any other trains a conditional one ``D(x, sigma, cond)`` on
        the condition ids of :func:`jaxgap.data.conditions` at that granularity (computed on
        the whole training split, so nested training sets share one definition).
      p_uncond: probability that a training example's condition is replaced by the null
        condition (classifier-free guidance training: one network serves every ``w``).
      guidance: the guidance weight ``w`` of a conditional network's evaluations
        (:func:`jaxgap.denoisers.guided`: 0 unconditional, 1 conditional, > 1 guided).

    Example:
      >>> TrainConfig(steps=100, width=64).validate().steps
      100
      >>> TrainConfig(ema=1.0).validate()
      Traceback (most recent call last):
      ...
      ValueError: ema: expected a decay in [0, 1), got 1.0
    """

    data: str = "digits"
    data_options: tuple[tuple[str, object], ...] = ()
    model: str = "mlp"
    train_size: int | None = None
    train_offset: int = 0
    steps: int = 2000
    batch_size: int = 128
    lr: float = 1e-3
    warmup: int = 100
    weight_decay: float = 0.0
    ema: float = 0.999
    p_mean: float = -1.2
    p_std: float = 1.2
    sigma_data: float = 0.5
    eval_every: int = 200
    ckpt_every: int = 500
    eval_sigmas: int = 24
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    eval_num_noise: int = 1
    eval_train_size: int | None = EVAL_SIZE
    eval_val_size: int | None = EVAL_SIZE
    model_size: str | None = None
    width: int | None = None
    depth: int | None = None
    channels: tuple[int, ...] | None = None
    heads: int | None = None
    patch: int | None = None
    seed: int = 0
    data_seed: int | None = None
    condition: str = "none"
    p_uncond: float = 0.1
    guidance: float = 1.0

    def __post_init__(self):
        if isinstance(self.data_options, dict):
            object.__setattr__(self, "data_options", tuple(sorted(self.data_options.items())))
        elif isinstance(self.data_options, (list, tuple)):
            object.__setattr__(self, "data_options", tuple(
                tuple(kv) if isinstance(kv, (list, tuple)) else kv for kv in self.data_options))

    def validate(self) -> TrainConfig:
        """Check every field; raise ``ValueError`` naming the first bad one."""
        opts = self.data_options
        if not (isinstance(opts, tuple) and all(isinstance(kv, tuple) and len(kv) == 2
                                                and isinstance(kv[0], str) for kv in opts)):
            raise ValueError(f"data_options: expected (name, value) pairs or a dict, got "
                             f"{opts!r}")
        if any(k == "seed" for k, _ in opts):
            raise ValueError("data_options: the data seed is the run's seed; got seed=...")
        if self.model not in ARCH_FIELDS:
            raise ValueError(f"model: expected one of {', '.join(map(repr, ARCH_FIELDS))}, "
                             f"got {self.model!r}")
        if self.model_size is not None and self.model_size not in MODEL_SIZES:
            raise ValueError(f"model_size: expected one of {', '.join(MODEL_SIZES)} or None, "
                             f"got {self.model_size!r}")
        for name in ("steps", "batch_size", "eval_every", "ckpt_every", "eval_sigmas",
                     "eval_num_noise"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: expected a positive integer, got {v!r}")
        for name in ("width", "depth", "heads", "patch", "channels"):
            v = getattr(self, name)
            if v is None:
                continue
            if name not in ARCH_FIELDS[self.model]:
                users = [m for m, f in ARCH_FIELDS.items() if name in f]
                raise ValueError(f"{name}: applies to model {' or '.join(users)} only, got "
                                 f"{name} = {v!r} with model {self.model!r}")
            values = v if name == "channels" else (v,)
            low = 0 if name == "depth" else 1
            if (name == "channels" and (not isinstance(v, tuple) or not v)) or not all(
                    isinstance(c, int) and not isinstance(c, bool) and c >= low
                    for c in values):
                what = "a tuple of positive integers" if name == "channels" else (
                    "an integer >= 0" if low == 0 else "a positive integer")
                raise ValueError(f"{name}: expected {what} or None, got {v!r}")
        for name in ("train_size", "eval_train_size", "eval_val_size"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"{name}: expected a positive integer or None, got {v!r}")
        if self.data_seed is not None and (isinstance(self.data_seed, bool) or not isinstance(
                self.data_seed, int) or self.data_seed < 0):
            raise ValueError(f"data_seed: expected an integer >= 0 or None, got "
                             f"{self.data_seed!r}")
        if isinstance(self.train_offset, bool) or not isinstance(self.train_offset, int) \
                or self.train_offset < 0:
            raise ValueError(f"train_offset: expected an integer >= 0, got {self.train_offset!r}")
        if self.eval_sigmas < 2:
            raise ValueError(f"eval_sigmas: expected at least 2, got {self.eval_sigmas}")
        for name in ("lr", "sigma_data", "p_std", "sigma_min", "sigma_max"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name}: expected a finite number > 0, got {v!r}")
        if not 0 <= self.ema < 1:
            raise ValueError(f"ema: expected a decay in [0, 1), got {self.ema!r}")
        if self.warmup < 0 or self.weight_decay < 0:
            raise ValueError("warmup, weight_decay: expected values >= 0")
        if self.sigma_min >= self.sigma_max:
            raise ValueError(f"sigma_min: expected < sigma_max = {self.sigma_max}, "
                             f"got {self.sigma_min}")
        if self.condition not in _data.GRANULARITIES:
            raise ValueError(f"condition: expected one of {', '.join(_data.GRANULARITIES)}, "
                             f"got {self.condition!r}")
        if not (isinstance(self.p_uncond, (int, float)) and 0 <= self.p_uncond < 1):
            raise ValueError(f"p_uncond: expected a probability in [0, 1), got "
                             f"{self.p_uncond!r}")
        if not (isinstance(self.guidance, (int, float)) and math.isfinite(self.guidance)):
            raise ValueError(f"guidance: expected a finite number, got {self.guidance!r}")
        return self

    @property
    def conditional(self) -> bool:
        """Whether the run trains a conditional network (``condition != "none"``)."""
        return self.condition != "none"

    def to_json(self) -> str:
        doc = dataclasses.asdict(self)
        doc["data_options"] = dict(self.data_options)
        return json.dumps(doc, indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"config: unknown fields {unknown}")
        d = dict(d)
        if d.get("channels") is not None:
            d["channels"] = tuple(d["channels"])
        if "model_size" not in d:
            for name, old in _LEGACY_ARCH.items():
                if d.get(name) == old:
                    d[name] = None
        return cls(**d)

"""The study's settings: one frozen :class:`StudyConfig` that holds the network's
:class:`~jaxgap.train.TrainConfig`, read only at the entry point."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

import jax

from jaxgap import _streams, noise
from jaxgap._checks import positive_int
from jaxgap.train import TrainConfig

__all__ = ["QUICK", "STUDY_TRAIN", "StudyConfig", "default_config"]

STUDY_TRAIN = TrainConfig(model="mlp", train_size=512, eval_val_size=300, steps=8000,
                          eval_every=1000, ckpt_every=1000)
"""The default network and its training: the EDM-preconditioned MLP on 512 images."""

QUICK = dict(train_size=64, eval_val_size=128, steps=400, batch_size=64, width=64, depth=2,
             eval_every=200, ckpt_every=100, eval_sigmas=10, num_noise=1, num_samples=64,
             sample_steps=8, num_bootstrap=200, fit_grid=6, fit_refine=2, seeds=3,
             memorize_size=8, memorize_seeds=3, noise_seeds=2, control_seeds=3)
"""The settings that ``quick=True`` (``jaxgap reproduce --quick``) changes."""

# Flat settings.json of jaxgap 0.1 (ReproduceConfig): two names differ from TrainConfig's.
_LEGACY_NAMES = {"val_size": "eval_val_size", "num_sigmas": "eval_sigmas"}


@dataclass(frozen=True)
class StudyConfig:
    """Everything that defines a study run (``jaxgap reproduce``).

    The network, its data and its training are one :class:`~jaxgap.train.TrainConfig`
    (``train``): its ``data``, ``seed`` (data split, network, noise, sampling),
    ``train_size`` (the closed forms and the network share the training set),
    ``eval_val_size`` (validation examples evaluated), and ``eval_sigmas`` with
    ``sigma_min``, ``sigma_max`` (the log grid of every gap curve: closed forms, training
    evaluations, toy-model fit) are the study's too.

    Attributes:
      train: the training stage's configuration.
      quick: the small settings of :func:`default_config` (recorded for the report).
      full: also the factor study (model size, condition granularity, guidance sweeps;
        :mod:`jaxgap.study._factors`).
      num_noise: noise draws per example for the closed-form curves and the fit.
      fit_grid: coarse grid size of the toy-model fit (0 and ``fit_grid - 1`` geometric
        values in ``[0.01, 3]``; None: :func:`~jaxgap.theory.fit_delta`'s default grid).
      fit_refine: golden-section refinements of the fit.
      num_samples: samples per sampler.
      sample_steps: Heun steps (EDM schedule); also the diagnostics' noise levels.
      num_bootstrap: bootstrap resamples of the memorized fractions.
      seeds: the network's seeds (``train.seed``, ``train.seed + 1``, ...), trained as one
        ensemble; each seed has its own data split, network, noise and samples.
      memorize_size: training-set size of the memorizing control (the same network trained
        long on few images).
      memorize_seeds, memorize_steps: its seeds and steps (None: half the network's steps;
        at N = 128 that is 4000 epochs).
      noise_seeds, noise_steps: seeds and steps of the structureless-data control (None: a
        quarter of the network's steps, to fit the time budget).
      control_seeds: seeds of the optimal-denoiser and untrained-network controls.

    Example:
      >>> cfg = default_config("digits", quick=True)
      >>> cfg.train.steps, cfg.num_samples, cfg.data
      (400, 64, 'digits')
    """

    train: TrainConfig = STUDY_TRAIN  # the network, its data, the gap curves' grid
    quick: bool = False
    full: bool = False
    # closed-form curves and the toy-model fit
    num_noise: int = 2
    fit_grid: int | None = None
    fit_refine: int = 6
    # sampling
    num_samples: int = 256
    sample_steps: int = 18
    num_bootstrap: int = 1000
    # seeds and controls
    seeds: int = 5
    memorize_size: int = 128
    memorize_seeds: int = 3
    memorize_steps: int | None = None
    noise_seeds: int = 2
    noise_steps: int | None = None
    control_seeds: int = 3

    @property
    def data(self) -> str:
        """The dataset name (``train.data``)."""
        return self.train.data

    @property
    def seed(self) -> int:
        """The run's one seed (``train.seed``)."""
        return self.train.seed

    def seed_list(self, count: int | None = None) -> list[int]:
        """``count`` (default ``seeds``) consecutive seeds from ``train.seed``."""
        return list(range(self.seed, self.seed + (self.seeds if count is None else count)))

    @property
    def factor_size(self) -> int:
        """Training-set size of the factor sweeps (``full``): ``memorize_size`` (the
        memorizing regime), at least 64 so that every class of a labelled dataset has
        training points under every condition granularity."""
        return max(self.memorize_size, 64)

    def steps_of(self, control: str) -> int:
        """Training steps of a control (``"memorize"`` or ``"noise"``)."""
        value = getattr(self, f"{control}_steps")
        default = self.train.steps // (2 if control == "memorize" else 4)
        return max(1, default) if value is None else value

    def sigmas(self) -> jax.Array:
        """``[K]`` the log grid of every gap curve (``train.eval_sigmas`` levels)."""
        return noise.log_sigmas(self.train.eval_sigmas, self.train.sigma_min,
                                self.train.sigma_max)

    def eval_key(self) -> jax.Array:
        """The key of every gap curve: the training evaluations' (common random numbers)."""
        return _streams.stream(jax.random.PRNGKey(self.seed), _streams.EVAL_NOISE)

    def sample_key(self) -> jax.Array:
        """The sampling key: every sampler starts from the same noise."""
        return _streams.stream(jax.random.PRNGKey(self.seed), _streams.SAMPLING)

    def validate(self) -> StudyConfig:
        """Check every field; raise ``ValueError`` naming the first bad one."""
        if not isinstance(self.train, TrainConfig):
            raise ValueError(f"train: expected a TrainConfig, got {type(self.train).__name__}")
        if not isinstance(self.train.data, str) or not self.train.data:
            raise ValueError(f"data: expected a dataset name, got {self.train.data!r}")
        self.train.validate()
        positive_int(self.seed, "seed", minimum=0)
        positive_int(self.train.eval_sigmas, "eval_sigmas", minimum=3)
        for name, low in (("train_size", 2), ("eval_val_size", 2)):
            if getattr(self.train, name) is not None:
                positive_int(getattr(self.train, name), name, minimum=low)
        minimum = dict(sample_steps=2, num_bootstrap=2, fit_refine=0, memorize_size=2)
        for name in ("num_noise", "num_samples", "sample_steps", "num_bootstrap", "fit_refine",
                     "seeds", "memorize_size", "memorize_seeds", "noise_seeds",
                     "control_seeds"):
            positive_int(getattr(self, name), name, minimum=minimum.get(name, 1))
        for name in ("memorize_steps", "noise_steps"):
            if getattr(self, name) is not None:
                positive_int(getattr(self, name), name)
        if self.fit_grid is not None:
            positive_int(self.fit_grid, "fit_grid", minimum=2)
        return self

    def to_dict(self) -> dict:
        """Plain JSON values (``train`` nested), as written to ``settings.json``."""
        doc = json.loads(json.dumps(dataclasses.asdict(self)))
        doc["train"] = json.loads(self.train.to_json())
        return doc

    @classmethod
    def from_dict(cls, doc: dict) -> StudyConfig:
        """The config of a :meth:`to_dict` document, or of jaxgap 0.1's flat
        ``settings.json`` (``ReproduceConfig``'s fields)."""
        doc = dict(doc)
        if "train" in doc:
            train = TrainConfig.from_dict(doc.pop("train"))
        else:  # 0.1: the training fields were copied into the study's
            train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
            flat = {_LEGACY_NAMES.get(k, k): v for k, v in doc.items()}
            train = TrainConfig.from_dict({k: v for k, v in flat.items() if k in train_fields})
            doc = {k: v for k, v in flat.items() if k not in train_fields}
        unknown = sorted(set(doc) - {f.name for f in dataclasses.fields(cls)} - {"train"})
        if unknown:
            raise ValueError(f"config: unknown fields {unknown}")
        return cls(train=train, **doc)


def _flat(doc: Any, prefix: str = "") -> dict:
    """``{"train.steps": 400, "quick": True, ...}`` of a nested settings document."""
    if not isinstance(doc, dict):
        return {prefix.rstrip("."): doc}
    out = {}
    for k, v in doc.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
    return out


def settings_diff(old: Any, config: StudyConfig) -> list[str]:
    """The settings (``train.steps``, ``quick``, ...) in which a stored ``settings.json``
    document differs from ``config``; empty when it holds the same run."""
    if isinstance(old, dict):
        try:
            old = StudyConfig.from_dict(old).to_dict()
        except (ValueError, TypeError):
            pass  # compared as it is: every field it lacks or holds differently is named
    new, old = _flat(config.to_dict()), _flat(old)
    return sorted(k for k in new.keys() | old.keys() if old.get(k, ...) != new.get(k, ...))


def default_config(data: str = "digits", *, quick: bool = False, seed: int = 0,
                   full: bool = False, **overrides: Any) -> StudyConfig:
    """The study's settings: the default run (<= 15 min on 2 CPU cores) or ``quick``.

    The quick run is a smoke test of the whole pipeline (about a minute on 2 cores): a
    small network trained briefly, few samples; its claims table is computed the same way,
    so it shows what so little training does, not the paper's claims.

    Args:
      data: a :func:`jaxgap.data.load` name.
      quick: the small settings.
      full: also the factor study (``jaxgap reproduce --full``).
      seed: the run's seed.
      **overrides: any :class:`StudyConfig` or :class:`~jaxgap.train.TrainConfig` field
        (the latter are set on ``train``).

    Example:
      >>> default_config(seed=3, steps=100).train.steps
      100
    """
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    fields: dict[str, Any] = dict(QUICK) if quick else {}
    fields.update({_LEGACY_NAMES.get(k, k): v for k, v in overrides.items()})
    train = dataclasses.replace(STUDY_TRAIN, data=data, seed=seed,
                                **{k: v for k, v in fields.items() if k in train_fields})
    study = {k: v for k, v in fields.items() if k not in train_fields}
    allowed = {f.name for f in dataclasses.fields(StudyConfig)} - {"train", "quick", "full"}
    unknown = sorted(set(study) - allowed)
    if unknown:
        raise ValueError(f"overrides: unknown fields {unknown}")
    return StudyConfig(train=train, quick=bool(quick), full=bool(full), **study).validate()

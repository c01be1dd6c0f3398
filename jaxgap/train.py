"""Train EDM score networks and record the generalization gap over training time.

The run folder holds ``config.json`` (the frozen :class:`TrainConfig`), ``metrics.jsonl``
(one JSON object per evaluation: per-sigma train/val losses and gap for the raw and the EMA
weights, plus the training loss) and ``checkpoints/`` (orbax: parameters, EMA, optimizer
state, step and the running training-loss sums), so a run can be inspected and resumed.

Everything random is a function of ``(seed, step)``: the data order of an epoch is a
permutation drawn from ``fold_in(data_key, epoch)``, the noise of step ``t`` from
``fold_in(train_key, t)``, and every evaluation uses the same key (common random numbers
across training time). A run killed at any point and resumed from its last checkpoint
therefore writes the same ``metrics.jsonl`` rows as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import nnx

from jaxgap import _io, _progress, _streams
from jaxgap import data as _data
from jaxgap import noise as _noise
from jaxgap._config import ARCH_FIELDS, EVAL_SIZE, TrainConfig
from jaxgap._jit import step_jit
from jaxgap._runfolder import (
    CHECKPOINTS,
    append_jsonl,
    checkpoint_manager,
    pure_state,
    read_jsonl,
    restore_state,
)
from jaxgap.denoisers import NULL, guided
from jaxgap.losses import curve_peak, gap_curve
from jaxgap.nets import DiTDenoiser, MLPDenoiser, UNetDenoiser, make_denoiser

__all__ = ["ARCH_FIELDS", "CHECKPOINTS", "CONFIG", "EVAL_SIZE", "METRICS", "VALUE_FIELDS", "Step",
           "TrainConfig", "append_jsonl", "batch_indices", "build_model", "checkpoint_manager",
           "describe_model", "edm_loss", "evaluated", "hyper", "init_state", "last_checkpoint",
           "load_config", "load_data", "load_denoiser", "make_optimizer", "make_step",
           "num_classes", "over_leaves", "pure_state", "read_jsonl", "read_metrics",
           "restore_state", "step_body", "train_and_evaluate"]

CONFIG = "config.json"
METRICS = "metrics.jsonl"

# ---------------------------------------------------------------------------------------
# Pieces: data, model, optimizer, one jit-compiled step
# ---------------------------------------------------------------------------------------

def load_data(config: TrainConfig):
    """The run's dataset, cut to ``train_size`` examples from ``train_offset``, with its
    condition ids when the run is conditional; raises ValueError if the examples exceed the
    training split or a validation condition has no training example."""
    seed = config.seed if config.data_seed is None else config.data_seed
    ds = _data.load(config.data, seed=seed, **dict(config.data_options))
    if config.conditional:
        ds = ds.with_conditions(config.condition)
    offset = config.train_offset
    size = ds.num_train - offset if config.train_size is None else config.train_size
    if offset + size > ds.num_train or size < 1:
        what = "train_size" if offset == 0 else "train_offset + train_size"
        raise ValueError(f"{what}: expected at most {ds.num_train} (the training examples of "
                         f"{ds.name!r}), got {offset + size if size >= 1 else offset}")
    if size < ds.num_train:
        ds = ds.with_train_size(size, offset=offset)
    return ds.check_conditions()


def num_classes(config: TrainConfig, ds) -> int:
    """The condition count of the run's network (0: unconditional)."""
    return ds.num_conditions if config.conditional else 0


def build_model(config: TrainConfig, dim: int, image_shape, classes: int = 0):
    """The untrained network of the run (deterministic given the seed); ``classes > 0``: a
    conditional network over that many conditions (and a null one)."""
    if config.model == "unet" and image_shape is None:
        raise ValueError(f"model: 'unet' needs image data; {config.data!r} has no image "
                         "shape (use --model mlp or dit)")
    arch = {name: getattr(config, name) for name in ARCH_FIELDS[config.model]}
    return make_denoiser(config.model, dim, image_shape, seed=config.seed, num_classes=classes,
                         model_size=config.model_size, sigma_data=config.sigma_data, **arch)


def describe_model(config: TrainConfig) -> str:
    """The network in words, e.g. ``"MLP width 256, depth 4"`` or ``"DiT size s"`` (a field
    left None reads as the rung's, or without a rung as the family's default)."""
    cls, name = {"mlp": (MLPDenoiser, "MLP"), "unet": (UNetDenoiser, "U-Net"),
                 "dit": (DiTDenoiser, "DiT")}[config.model]
    defaults = inspect.signature(cls.__init__).parameters
    parts = []
    for k in ARCH_FIELDS[config.model]:
        v = getattr(config, k)
        if v is None and config.model_size is None:
            v = defaults[k].default
        if v is not None:
            parts.append(f"{k} {'-'.join(map(str, v)) if k == 'channels' else v}")
    head = name + (f" size {config.model_size}" if config.model_size else "")
    return head + (" " + ", ".join(parts) if parts else "")


VALUE_FIELDS = ("lr", "weight_decay", "ema", "p_mean", "p_std", "p_uncond", "guidance")
"""The :class:`TrainConfig` fields that enter the training step as traced values: members
of an ensemble (:mod:`jaxgap.ensemble`) may differ in them and still share one program."""


def hyper(config: TrainConfig) -> dict:
    """The step's value-only hyper-parameters (:data:`VALUE_FIELDS`) as float32 scalars."""
    return {name: jnp.asarray(getattr(config, name), jnp.float32) for name in VALUE_FIELDS}


def make_optimizer(config: TrainConfig, hp: dict | None = None) -> optax.GradientTransformation:
    """AdamW with a linear warm-up to ``lr`` (``weight_decay = 0``: Adam).

    ``hp`` (:func:`hyper`, possibly traced) overrides the config's ``lr`` and
    ``weight_decay``; the state's structure does not depend on their values."""
    hp = hyper(config) if hp is None else hp
    schedule = optax.warmup_constant_schedule(0.0, hp["lr"], max(config.warmup, 1))
    return optax.adamw(schedule, weight_decay=hp["weight_decay"])


def init_state(config: TrainConfig, dim: int, image_shape, classes: int = 0):
    """``(graphdef, optimizer, state)`` of a fresh run: the untrained network (conditional
    over ``classes`` conditions when > 0, see :func:`num_classes`) split into its graph and
    parameters, and the checkpointed training state (EMA = parameters)."""
    graphdef, params = nnx.split(build_model(config, dim, image_shape, classes))
    tx = make_optimizer(config)
    state = dict(params=params, ema=jax.tree.map(jnp.copy, params), opt_state=tx.init(params),
                 step=jnp.asarray(0, jnp.int32), loss_sum=jnp.asarray(0.0, jnp.float32),
                 loss_count=jnp.asarray(0, jnp.int32))
    return graphdef, tx, state


def edm_loss(model, x0, key, *, p_mean, p_std, sigma_data, cond=None, p_uncond=0.0):
    r"""EDM training loss of a batch (Karras et al. 2022, eq. 8, per dimension).

    .. math:: \mathbb{E}\,\lambda(\sigma)\,\frac{1}{d}\,|D(x_0 + \sigma\epsilon, \sigma) - x_0|^2,
        \quad \ln\sigma \sim N(P_{mean}, P_{std}^2).

    With ``cond [B]`` (a conditional network), each example's condition is replaced by the
    null condition with probability ``p_uncond`` (classifier-free guidance training).
    """
    k_sigma, k_eps = jax.random.split(key)
    sigma = _noise.sample_lognormal_sigmas(k_sigma, (x0.shape[0],), p_mean=p_mean, p_std=p_std)
    eps = jax.random.normal(k_eps, x0.shape, x0.dtype)
    if cond is None:
        out = model(x0 + sigma[:, None] * eps, sigma)
    else:
        drop = jax.random.bernoulli(jax.random.fold_in(key, 1), p_uncond, cond.shape)
        out = model(x0 + sigma[:, None] * eps, sigma, jnp.where(drop, NULL, cond))
    weight = _noise.edm_loss_weight(sigma, sigma_data)
    return jnp.mean(weight * jnp.mean((out - x0) ** 2, axis=-1))


def batch_indices(data_key, step, n, batch: int, capacity: int | None = None):
    """Example indices of ``step``: epoch-wise permutations drawn from ``(data_key, epoch)``.

    The permutation of ``[0, n)`` sorts the examples by a hash of ``(data_key, epoch,
    index)``, so it does not depend on ``capacity``: ``n`` may be traced (an ensemble member's
    own training-set size) with the examples padded to ``capacity >= n`` rows, and a member
    draws the batches of a single run on its ``n`` examples.

    Args:
      data_key: the run's data-order key.
      step: the training step (int or traced).
      n: number of training examples (int or traced), ``>= batch``.
      batch: examples per step (static).
      capacity: the padded number of rows (static; default ``n``).

    Example:
      >>> key = jax.random.PRNGKey(0)
      >>> first_epoch = [batch_indices(key, t, 6, 2) for t in range(3)]  # 3 steps per epoch
      >>> sorted(np.concatenate(first_epoch).tolist())
      [0, 1, 2, 3, 4, 5]
      >>> bool(jnp.all(batch_indices(key, 1, 6, 2, capacity=10) == first_epoch[1]))
      True
    """
    capacity = int(n) if capacity is None else capacity
    per_epoch = n // batch
    epoch, pos = step // per_epoch, step % per_epoch
    epoch_key = jax.random.fold_in(data_key, epoch)
    index = jnp.arange(capacity, dtype=jnp.int32)
    bits = jax.vmap(lambda i: jax.random.bits(jax.random.fold_in(epoch_key, i)))(index)
    # padding rows last, then the hash (the index breaks ties): a permutation of [0, n) first
    _, _, perm = jax.lax.sort(((index >= n).astype(jnp.int32), bits, index), num_keys=3)
    return jax.lax.dynamic_slice_in_dim(perm, pos * batch, batch)


def step_body(graphdef, config: TrainConfig, batch: int):
    """The training step as a pure function ``(state, train_x, train_c, n, base_key, hp) ->
    (state, loss)`` (not compiled): :func:`make_step` jit-compiles it for one run and
    :mod:`jaxgap.ensemble` maps it over the members of an ensemble.

    ``train_x [capacity, d]`` holds the ``n`` training examples first (``n`` may be traced;
    rows beyond it are padding, never drawn) and ``train_c [capacity]`` their condition ids
    (None: an unconditional network); ``base_key`` is ``PRNGKey(seed)``, whose named
    streams give the data order and the noise; ``hp`` the value-only hyper-parameters of
    :func:`hyper` (traced: lr, weight decay, EMA decay, ``p_mean``, ``p_std``,
    ``p_uncond``)."""

    def loss_fn(params, x0, c0, key, hp):
        return edm_loss(nnx.merge(graphdef, params), x0, key, p_mean=hp["p_mean"],
                        p_std=hp["p_std"], sigma_data=config.sigma_data, cond=c0,
                        p_uncond=hp["p_uncond"])

    def body(state, train_x, train_c, n, base, hp):
        data_key = _streams.stream(base, _streams.DATA_ORDER)
        train_key = _streams.stream(base, _streams.TRAIN_NOISE)
        step = state["step"]
        index = batch_indices(data_key, step, n, batch, train_x.shape[0])
        c0 = None if train_c is None else train_c[index]
        loss, grads = jax.value_and_grad(loss_fn)(state["params"], train_x[index], c0,
                                                  jax.random.fold_in(train_key, step), hp)
        tx = make_optimizer(config, hp)
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        decay = jnp.minimum(hp["ema"], (1.0 + step) / (10.0 + step))
        ema = jax.tree.map(lambda e, p: decay * e + (1 - decay) * p, state["ema"], params)
        new = dict(params=params, ema=ema, opt_state=opt_state, step=step + 1,
                   loss_sum=state["loss_sum"] + loss, loss_count=state["loss_count"] + 1)
        return new, loss

    return body


def over_leaves(fn, treedef):
    """``fn(state, *args) -> (state, aux)`` as ``(leaves, *args) -> (leaves, aux)``, where
    ``leaves`` is the state's flat leaf list under ``treedef`` (not compiled)."""

    def flat(leaves, *args):
        new, aux = fn(jax.tree.unflatten(treedef, leaves), *args)
        new_leaves, new_def = jax.tree.flatten(new)
        if new_def != treedef:  # a bug in a step body, not bad input
            raise AssertionError(f"the step changed the state's structure: {new_def}")
        return new_leaves, aux

    return flat


class Step:
    """A compiled training step: ``step(state) -> (state, loss)`` on the state dict.

    A training loop keeps the state as its flat leaf list between steps: ``leaves =
    step.flatten(state)``, then ``leaves, loss = step.flat(leaves)`` per step, and
    ``step.unflatten(leaves)`` only to evaluate or checkpoint. Flattening and rebuilding the
    ``nnx.State``s of a state dict costs Python time on every call (about 0.7 ms, a quarter
    of the MLP ``xs`` step on digits; ``docs/unet_speed.md``), which XLA:CPU does not hide.

    ``build(treedef) -> flat`` makes the flat step for the state's structure; it runs at the
    first :meth:`flatten` (a state of another structure is then a ``ValueError``).
    """

    def __init__(self, build):
        self._build = build
        self.treedef = None
        self._flat = None

    def flatten(self, state) -> list:
        """The state's leaves (the first call fixes the structure and builds the step)."""
        leaves, treedef = jax.tree.flatten(state)
        if self.treedef is None:
            self.treedef, self._flat = treedef, self._build(treedef)
        elif treedef != self.treedef:
            raise ValueError("state: expected the structure of the state this step was first "
                             f"called with, got {treedef}")
        return leaves

    def flat(self, leaves: list):
        """One step on the flat state: ``leaves -> (leaves, loss)``."""
        if self._flat is None:
            raise ValueError("leaves: call flatten(state) first (it fixes the state's structure)")
        return self._flat(leaves)

    def unflatten(self, leaves: list):
        """The state dict of a leaf list from :meth:`flatten` or :meth:`flat`."""
        return jax.tree.unflatten(self.treedef, leaves)

    def __call__(self, state):
        leaves, loss = self.flat(self.flatten(state))
        return self.unflatten(leaves), loss


def make_step(graphdef, tx, config: TrainConfig, train_x, batch: int, train_c=None) -> Step:
    """One jit-compiled training step (a :class:`Step`: ``state -> (state, loss)``, and its
    flat form for loops). ``tx``, the optimizer of :func:`init_state`, is rebuilt inside the
    step from the config's values; ``train_c``: the examples' condition ids of a
    conditional network."""
    del tx
    body = step_body(graphdef, config, batch)
    args = (train_x, train_c, jnp.asarray(train_x.shape[0], jnp.int32),
            jax.random.PRNGKey(config.seed), hyper(config))

    def build(treedef):
        step_fn = step_jit(over_leaves(body, treedef))
        return lambda leaves: step_fn(leaves, *args)

    return Step(build)


def evaluated(config: TrainConfig, network):
    """What a run's evaluations measure: the network itself, or a conditional network
    guided with the config's weight (:func:`jaxgap.denoisers.guided`)."""
    return guided(network, config.guidance) if config.conditional else network


# ---------------------------------------------------------------------------------------
# Run folder: config, metrics, checkpoints
# ---------------------------------------------------------------------------------------
def _check_run_folder(workdir: Path, config: TrainConfig, resume: bool) -> None:
    if resume and not workdir.is_dir():
        raise ValueError(f"out: --resume given but {workdir} does not exist; drop --resume to "
                         "start a new run there")
    cfg_path = workdir / CONFIG
    if cfg_path.exists():
        try:
            old = TrainConfig.from_dict(json.loads(cfg_path.read_text()))
        except (ValueError, TypeError) as err:
            raise ValueError(f"out: {cfg_path} is not a jaxgap training config ({err})") from err
        if old != config:
            diff = sorted(k for k in dataclasses.asdict(config)
                          if getattr(old, k) != getattr(config, k))
            raise ValueError(f"out: {workdir} holds a run with a different config "
                             f"(differs in {', '.join(diff)}); choose another --out")
    if not resume and ((workdir / CHECKPOINTS).exists() or (workdir / METRICS).exists()):
        raise ValueError(f"out: {workdir} already holds a run; pass --resume to continue "
                         "it or choose another --out")


def _evaluate(key, model_of, state, train_x, val_x, sigmas, num_noise, conds):
    row = {}
    for prefix, params in (("", state["params"]), ("ema_", state["ema"])):
        curve = gap_curve(key, model_of(params), train_x, val_x, sigmas, num_noise=num_noise,
                          train_cond=conds[0], val_cond=conds[1])
        row[prefix + "train"] = np.asarray(curve.train, np.float64).tolist()
        row[prefix + "val"] = np.asarray(curve.val, np.float64).tolist()
        row[prefix + "gap"] = np.asarray(curve.gap, np.float64).tolist()
        row[prefix + "gap_se"] = np.asarray(curve.gap_se, np.float64).tolist()
    return row


def train_and_evaluate(config: TrainConfig, workdir, *, resume: bool = False,
                       progress: bool | str | None = True) -> dict:
    """Train, evaluate the per-sigma gap every ``eval_every`` steps, checkpoint; resumable.

    Ctrl-C (``KeyboardInterrupt``) stops the run cleanly: the state after the last finished
    step is checkpointed (unless it already is) before the interrupt is raised again, so
    ``resume=True`` continues from there and writes the same rows as an uninterrupted run.

    Args:
      config: the run's :class:`TrainConfig`.
      workdir: the run folder (created).
      resume: continue from the last checkpoint in ``workdir``.
      progress: True or None: a tqdm bar on a terminal, a log line every few seconds
        otherwise (with steps/s and the time left); False: nothing (see
        :func:`jaxgap._progress.bar` for the modes).

    Returns:
      A summary dict: final ``step``, ``resumed_from`` (the restored step, 0 for a fresh
      run), the ``last`` metrics row, ``peak_sigma_ema`` (where the final EMA gap peaks) and
      ``eval_sizes`` (training and validation examples evaluated).
    """
    config = config.validate()
    workdir = Path(workdir)
    ds = load_data(config)
    _check_run_folder(workdir, config, resume)
    # the network is built before anything is written: an architecture that does not fit
    # the data (a patch size, an image shape) leaves no run folder behind
    graphdef, tx, state = init_state(config, ds.dim, ds.image_shape, num_classes(config, ds))
    workdir.mkdir(parents=True, exist_ok=True)
    _io.write_text(workdir / CONFIG, config.to_json())

    manager = checkpoint_manager(workdir)
    start = 0
    latest = manager.latest_step()
    if latest is not None:  # resume is set: _check_run_folder refused a run folder without it
        state = restore_state(manager, state, latest)
        start = int(state["step"])
    metrics_path = workdir / METRICS
    rows = read_jsonl(metrics_path, upto=start if latest is not None else -1)
    _io.write_text(metrics_path, "".join(json.dumps(r) + "\n" for r in rows))

    train_x = jnp.asarray(ds.train)
    eval_train = train_x[: config.eval_train_size]
    val_x = jnp.asarray(ds.val[: config.eval_val_size])
    train_c = jnp.asarray(ds.train_cond) if config.conditional else None
    conds = (None, None) if train_c is None else (
        train_c[: config.eval_train_size], jnp.asarray(ds.val_cond[: config.eval_val_size]))
    batch = min(config.batch_size, ds.num_train)
    step_fn = make_step(graphdef, tx, config, train_x, batch, train_c)
    sigmas = _noise.log_sigmas(config.eval_sigmas, config.sigma_min, config.sigma_max)
    eval_key = _streams.stream(jax.random.PRNGKey(config.seed), _streams.EVAL_NOISE)
    model_of = lambda p: evaluated(config, nnx.merge(graphdef, p))  # noqa: E731

    def evaluate_and_log(state):
        step = int(state["step"])
        count = int(state["loss_count"])
        row = {"step": step, "sigmas": np.asarray(sigmas, np.float64).tolist(),
               "train_loss": float(state["loss_sum"]) / count if count else None}
        row.update(_evaluate(eval_key, model_of, state, eval_train, val_x, sigmas,
                             config.eval_num_noise, conds))
        append_jsonl(metrics_path, [row])
        return row, dict(state, loss_sum=jnp.zeros_like(state["loss_sum"]),
                         loss_count=jnp.zeros_like(state["loss_count"]))

    saved = {latest} if latest is not None else set()

    def checkpoint(state):
        step = int(state["step"])
        manager.save(step, args=ocp.args.StandardSave(pure_state(state)), force=True)
        manager.wait_until_finished()
        saved.add(step)

    last_row = rows[-1] if rows else None
    # The loop holds the state as its flat leaf list (``Step``); ``safe`` is the one after
    # the last fully finished step (its evaluation and checkpoint done): the one an
    # interrupt checkpoints.
    safe = None
    try:
        if start == 0:
            last_row, state = evaluate_and_log(state)
        leaves = safe = step_fn.flatten(state)
        with _progress.bar(config.steps, f"train {config.model}", mode=progress, unit="step",
                           initial=start) as bar:
            for step in range(start, config.steps):
                _progress.check_interrupt()
                leaves, loss = step_fn.flat(leaves)
                now = step + 1
                if now % config.eval_every == 0 or now == config.steps:
                    last_row, state = evaluate_and_log(step_fn.unflatten(leaves))
                    leaves = step_fn.flatten(state)
                if now % config.ckpt_every == 0 or now == config.steps:
                    checkpoint(step_fn.unflatten(leaves))
                safe = leaves
                if now % 10 == 0 or now == config.steps:
                    bar.set_postfix(loss=f"{float(loss):.4f}")
                    bar.update(now - bar.n)
    except KeyboardInterrupt:
        safe = state if safe is None else step_fn.unflatten(safe)
        step = int(safe["step"])
        if step > 0 and step not in saved:  # at step 0 a resumed run simply starts afresh
            try:
                checkpoint(safe)
            except BaseException as err:  # a second Ctrl-C, a full disk: keep the older one
                print(f"jaxgap: could not checkpoint step {step} ({type(err).__name__}); "
                      f"--resume continues from step {max(saved, default=0)}",
                      file=sys.stderr)
        manager.close()
        raise
    manager.close()
    peak = None
    if last_row and np.any(np.isfinite(np.asarray(last_row["ema_gap"], np.float64))):
        peak = curve_peak(last_row["sigmas"], last_row["ema_gap"])[0]
    return {"step": config.steps, "resumed_from": start, "last": last_row,
            "peak_sigma_ema": peak, "workdir": str(workdir),
            "eval_sizes": {"train": int(eval_train.shape[0]), "val": int(val_x.shape[0]),
                           "num_train": ds.num_train, "num_val": ds.num_val}}


def last_checkpoint(run_dir) -> int | None:
    """The step of the newest checkpoint in a run folder (None: none yet)."""
    path = Path(run_dir) / CHECKPOINTS
    if not path.is_dir():
        return None
    manager = checkpoint_manager(Path(run_dir))
    try:
        return manager.latest_step()
    finally:
        manager.close()


def load_config(run_dir) -> TrainConfig:
    """The :class:`TrainConfig` saved in a run folder."""
    path = Path(run_dir) / CONFIG
    if not path.exists():
        raise ValueError(f"run_dir: no {CONFIG} in {run_dir} (not a jaxgap training run)")
    try:
        return TrainConfig.from_dict(json.loads(path.read_text())).validate()
    except (json.JSONDecodeError, TypeError) as err:
        raise ValueError(f"run_dir: {path} is not a valid config ({err})") from err


def load_denoiser(run_dir, *, ema: bool = True, step: int | None = None):
    """The trained network of a run folder, as a denoiser ``D(x, sigma)`` (a conditional run:
    ``D(x, sigma, cond)``, unguided; see :func:`jaxgap.denoisers.guided`).

    Args:
      run_dir: a folder written by :func:`train_and_evaluate`.
      ema: the EMA weights (default) or the raw ones.
      step: a checkpointed step (default: the latest).
    """
    config = load_config(run_dir)
    ds = load_data(config)
    graphdef, _, template = init_state(config, ds.dim, ds.image_shape, num_classes(config, ds))
    manager = checkpoint_manager(Path(run_dir))
    step = manager.latest_step() if step is None else step
    if step is None:
        raise ValueError(f"run_dir: no checkpoint in {Path(run_dir) / CHECKPOINTS}")
    state = restore_state(manager, template, step)
    manager.close()
    return nnx.merge(graphdef, state["ema" if ema else "params"])


def read_metrics(run_dir) -> list[dict]:
    """All evaluation rows of a run folder."""
    return read_jsonl(Path(run_dir) / METRICS)

"""Ensembles: ``E`` networks of one architecture trained as one compiled program.

The members' training states (parameters, EMA, optimizer state, step, running loss) are
stacked on a leading member axis, and one jit-compiled step maps
:func:`jaxgap.train.step_body`, the single run's step, over that axis with ``jax.vmap``
(on accelerators and device meshes, and for the MLP and the DiT). On one CPU device, U-Net
members instead take turns in one compiled single-member program (see
:meth:`Ensemble.make_step`): XLA:CPU runs their vmapped step (grouped convolutions) at a
fraction of the single run's speed per member.
Each member is a full :class:`~jaxgap.train.TrainConfig`: its own seed (data split,
initialization, data order, noise), its own training subset (``train_size`` examples from
``train_offset``: nested prefixes, disjoint halves) and its own value-only hyper-parameters
(:data:`jaxgap.train.VALUE_FIELDS`: learning rate, weight decay, EMA decay, ``p_mean``,
``p_std``), which enter the step as traced values. The members' training sets are padded to
the largest; a member draws its batches from its own ``n`` examples only
(:func:`jaxgap.train.batch_indices` does not depend on the padding). Everything else (the
architecture, the batch, the warm-up, the data) is shared: :func:`program_key` names what
must agree.

Member ``i`` therefore follows the trajectory of :func:`jaxgap.train.train_and_evaluate` with
``configs[i]`` (to float32 rounding: the batched matmuls may round differently), and its
gap curves use that run's evaluation key and noise (common random numbers over training
time and across members of one seed).

The member axis can be sharded over a 1-D device mesh (:func:`shard`, one or many hosts);
:func:`fit` runs the loop: evaluations, samples, one orbax checkpoint of the whole ensemble,
exact resume after a kill.

Example:
  >>> from jaxgap import data
  >>> from jaxgap.train import TrainConfig
  >>> config = TrainConfig(width=16, depth=1, batch_size=8)
  >>> members = [dataclasses.replace(config, seed=s, train_size=n)
  ...            for s, n in ((0, 16), (1, 16), (0, 32))]
  >>> ens = Ensemble.create(members, dim=64)
  >>> d = member_data(members)
  >>> d.train.shape, d.n.tolist()
  ((3, 32, 64), [16, 16, 32])
  >>> state, loss = ens.make_step(d)(ens.state)
  >>> loss.shape, int(state["step"][1])
  ((3,), 1)
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxgap import _io, _progress, _streams
from jaxgap import noise as _noise
from jaxgap._jit import step_jit
from jaxgap._mc import default_batch_size
from jaxgap.denoisers import guided
from jaxgap.losses import per_example_loss
from jaxgap.train import (
    VALUE_FIELDS,
    Step,
    TrainConfig,
    append_jsonl,
    checkpoint_manager,
    evaluated,
    hyper,
    init_state,
    load_data,
    num_classes,
    over_leaves,
    pure_state,
    read_jsonl,
    restore_state,
    step_body,
)

__all__ = ["ROWS", "Ensemble", "MemberData", "fit", "member", "member_data", "program_key",
           "shard", "stack", "to_host"]

ROWS = "rows.jsonl"

MEMBER_FIELDS = ("seed", "data_seed", "train_size", "train_offset") + VALUE_FIELDS
"""The :class:`~jaxgap.train.TrainConfig` fields in which members of one ensemble may
differ; every other field is shared (one program)."""


IN_TURNS_ON_CPU = ("unet",)
"""The networks whose ensemble members take turns on one CPU device (:meth:`Ensemble.make_step`)."""


def _one_cpu(mesh) -> bool:
    """No mesh and a CPU backend: where the members run one after another (step and
    evaluation)."""
    return mesh is None and jax.devices()[0].platform == "cpu"


def stack(trees: Sequence[Any]) -> Any:
    """Pytrees of one structure stacked on a new leading (member) axis."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def member(tree: Any, i: int) -> Any:
    """Member ``i`` of a stacked pytree (the leading axis removed)."""
    return jax.tree.map(lambda x: x[i], tree)


def program_key(config: TrainConfig, num_train: int) -> TrainConfig:
    """What members of one ensemble share: the config with :data:`MEMBER_FIELDS` reset and
    ``batch_size`` the effective batch ``min(batch_size, num_train)``.

    Two configs (with their training-set sizes) can be members of one ensemble, one compiled
    program, exactly when their keys are equal.
    """
    reset = {name: getattr(TrainConfig, name) for name in MEMBER_FIELDS}
    return dataclasses.replace(config, batch_size=min(config.batch_size, num_train), **reset)


def shard(tree: Any, mesh) -> Any:
    """Host arrays with a leading member axis as global arrays sharded over a 1-D ``mesh``
    (every process passes the same values; ``mesh=None``: plain device arrays).

    The member axis must be a multiple of the mesh size (pad the members first)."""
    if mesh is None:
        return jax.tree.map(jnp.asarray, tree)
    axis = mesh.axis_names[0]

    def put(x):
        x = np.asarray(x)
        spec = P(axis, *([None] * (x.ndim - 1)))
        return jax.make_array_from_callback(x.shape, NamedSharding(mesh, spec),
                                            lambda idx: x[idx])

    return jax.tree.map(put, tree)


def to_host(tree: Any) -> Any:
    """Numpy copies of a pytree's arrays, gathered from every process when they span
    other hosts' devices (a collective: every process must call it)."""

    def get(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(x)

    return jax.tree.map(get, tree)


class MemberData(NamedTuple):
    """The members' data, padded to common shapes (host arrays).

    Attributes:
      train: ``[E, capacity, d]`` each member's training examples first, zeros after.
      n: ``[E]`` int32, each member's number of training examples.
      eval_n: ``[E]`` training examples evaluated (the first ``min(eval_train_size, n)``).
      val: ``[E, v, d]`` each member's validation examples evaluated.
      datasets: the members' :class:`~jaxgap.data.Dataset` (cut to their training subset).
      train_cond: ``[E, capacity]`` int32 condition ids of the training examples (zeros
        after), or None for unconditional members.
      val_cond: ``[E, v]`` int32 condition ids of the validation examples, or None.
      classes: the number of conditions of the members' networks (0: unconditional).
    """

    train: np.ndarray
    n: np.ndarray
    eval_n: np.ndarray
    val: np.ndarray
    datasets: tuple
    train_cond: np.ndarray | None = None
    val_cond: np.ndarray | None = None
    classes: int = 0


def member_data(configs: Sequence[TrainConfig]) -> MemberData:
    """Load every member's dataset (:func:`jaxgap.train.load_data`) and pad them to common
    shapes; raises ValueError when their dimensions or validation sizes differ."""
    sets = [load_data(c) for c in configs]
    dims = {ds.dim for ds in sets}
    vals = [ds.val[: c.eval_val_size] for ds, c in zip(sets, configs, strict=True)]
    if len(dims) > 1 or len({v.shape[0] for v in vals}) > 1:
        raise ValueError(f"configs: the members' data differ in dimension or validation "
                         f"size ({sorted(dims)}, {sorted({v.shape[0] for v in vals})}); "
                         "they cannot share one program")
    n = np.array([ds.num_train for ds in sets], np.int32)
    capacity = int(n.max())
    train = np.zeros((len(sets), capacity, sets[0].dim), np.float32)
    for i, ds in enumerate(sets):
        train[i, : ds.num_train] = ds.train
    eval_n = np.array([min(c.eval_train_size or k, k) for c, k in zip(configs, n, strict=True)],
                      np.int32)
    classes = {num_classes(c, ds) for c, ds in zip(configs, sets, strict=True)}
    if len(classes) > 1:
        raise ValueError(f"configs: the members' condition counts differ ({sorted(classes)}); "
                         "they cannot share one program")
    train_cond = val_cond = None
    if configs[0].conditional:
        train_cond = np.zeros((len(sets), capacity), np.int32)
        for i, ds in enumerate(sets):
            train_cond[i, : ds.num_train] = ds.train_cond
        val_cond = np.stack([ds.val_cond[: v.shape[0]] for ds, v in zip(sets, vals,
                                                                          strict=True)])
    return MemberData(train, n, eval_n, np.stack(vals).astype(np.float32), tuple(sets),
                      train_cond, val_cond, classes.pop())


def _masked_mean_se(losses: np.ndarray, count: int):
    """Mean and standard error over the first ``count`` examples of ``[K, n]`` losses."""
    x = np.asarray(losses[:, :count], np.float64)
    se = x.std(axis=1, ddof=1) / np.sqrt(count) if count > 1 else np.full(x.shape[0], np.nan)
    return x.mean(axis=1), se


class Ensemble(NamedTuple):
    """``E`` members of one architecture: their configs, the shared graph, the stacked state.

    Attributes:
      configs: one :class:`~jaxgap.train.TrainConfig` per member (equal outside
        :data:`MEMBER_FIELDS`).
      graphdef: the network's graph (shared).
      state: the training state of :func:`jaxgap.train.init_state`, every leaf with a
        leading axis of size ``E``.
    """

    configs: tuple
    graphdef: Any
    state: dict

    @classmethod
    def create(cls, configs, *, dim: int, image_shape: tuple[int, ...] | None = None,
               seeds: Sequence[int] | None = None, classes: int = 0) -> Ensemble:
        """Initialize every member exactly as a single run with its config.

        Args:
          configs: the members' configs, or one config with ``seeds``.
          dim: data dimension ``d``.
          image_shape: the data's image shape (needed by the U-Net).
          seeds: with a single config: one member per seed.
          classes: the condition count of conditional members (``MemberData.classes``).
        """
        if isinstance(configs, TrainConfig):
            if seeds is None:
                seeds = (configs.seed,)
            if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence) or not seeds:
                raise ValueError(f"seeds: expected a non-empty sequence of integers, got "
                                 f"{seeds!r}")
            for s in seeds:
                if isinstance(s, bool) or not isinstance(s, int) or s < 0:
                    raise ValueError(f"seeds: expected integers >= 0, got {s!r}")
            configs = [dataclasses.replace(configs, seed=s) for s in seeds]
        configs = tuple(c.validate() for c in configs)
        if not configs:
            raise ValueError("configs: expected at least one member")
        shared = {program_key(c, 1) for c in configs}
        if len(shared) > 1:
            a, b = list(shared)[:2]
            diff = sorted(f.name for f in dataclasses.fields(a) if getattr(a, f.name)
                          != getattr(b, f.name))
            raise ValueError(f"configs: members may differ only in {', '.join(MEMBER_FIELDS)};"
                             f" these differ too: {', '.join(diff)}")
        inits = [init_state(c, dim, image_shape, classes) for c in configs]
        return cls(configs, inits[0][0], stack([st for _, _, st in inits]))

    @property
    def size(self) -> int:
        """The number of members ``E``."""
        return len(self.configs)

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(c.seed for c in self.configs)

    def member_values(self) -> dict:
        """Per-member host arrays the step takes: ``key [E, 2]`` (``PRNGKey(seed)``) and
        the value-only hyper-parameters ``hp`` (``{name: [E]}``)."""
        keys = np.stack([np.asarray(jax.random.PRNGKey(s)) for s in self.seeds])
        hps = [hyper(c) for c in self.configs]
        return {"key": keys, "hp": {k: np.stack([np.asarray(h[k]) for h in hps])
                                    for k in hps[0]}}

    def batch(self, data: MemberData) -> int:
        """The members' common batch size (``min(batch_size, n)``, equal for all)."""
        batches = {min(c.batch_size, int(k)) for c, k in zip(self.configs, data.n, strict=True)}
        if len(batches) > 1:
            raise ValueError(f"data: the members' batches min(batch_size, train_size) differ "
                             f"({sorted(batches)}); group members of equal batch")
        return batches.pop()

    def make_step(self, data: MemberData, *, mesh=None, layout: str | None = None):
        """One step of every member: a :class:`jaxgap.train.Step`, ``state -> (state, loss
        [E])`` (and ``step.flat`` on the state's leaf list, as :func:`fit` holds it).

        With a mesh, on an accelerator, or for the MLP and the DiT, one jit-compiled
        program steps all members side by side (``jax.vmap`` of
        :func:`jaxgap.train.step_body`). U-Net members on one CPU device without a mesh take
        turns in one jit-compiled single-member program (member ``i`` indexed out of the
        stacked state inside it; one compilation, whatever ``E``), and one small program
        stacks their new states: XLA:CPU runs the vmapped U-Net step (its convolutions
        become grouped convolutions) at two thirds or less of a single run's speed per
        member, while the vmapped MLP step beats single runs and the DiT's is on a par with
        taking turns (``python benchmarks/ensemble.py --model unet --model-size m`` with
        and without ``--layout vmap``; README). The members' results are the same either
        way, to float32 rounding.

        Args:
          data: the members' data (:func:`member_data`).
          mesh: optional 1-D mesh the member axis (of ``state`` too) is sharded over.
          layout: ``"vmap"`` (side by side) or ``"turns"`` (needs ``mesh=None``) to choose
            against the rule above (benchmarks); None: the rule.
        """
        if layout not in (None, "vmap", "turns"):
            raise ValueError(f"layout: expected None, 'vmap' or 'turns', got {layout!r}")
        if layout == "turns" and mesh is not None:
            raise ValueError("layout: 'turns' steps the members on one device; got a mesh too")
        if layout is None:
            in_turns = _one_cpu(mesh) and self.configs[0].model in IN_TURNS_ON_CPU
            layout = "turns" if in_turns else "vmap"
        body = step_body(self.graphdef, self.configs[0], self.batch(data))
        vals = self.member_values()
        args = (data.train, data.train_cond, data.n, vals["key"], vals["hp"])
        if layout == "vmap":
            args = shard(args, mesh)

            def build(treedef):
                step_fn = step_jit(over_leaves(jax.vmap(body), treedef))
                return lambda leaves: step_fn(leaves, *args)

            return Step(build)

        members = [shard(member(args, i), None) for i in range(self.size)]
        index = [jnp.asarray(i, jnp.int32) for i in range(self.size)]

        def build_turns(treedef):
            def one(leaves, i, *member_args):
                new, loss = body(member(jax.tree.unflatten(treedef, leaves), i), *member_args)
                return jax.tree.leaves(new), loss

            one_fn, stack_fn = step_jit(one), jax.jit(stack)
            return lambda leaves: stack_fn([one_fn(leaves, i, *a)
                                            for i, a in zip(index, members, strict=True)])

        return Step(build_turns)

    def make_eval(self, data: MemberData, *, mesh=None, views=None):
        """The members' gap curves, raw and EMA, as in :func:`jaxgap.train.train_and_evaluate`.

        Returns ``evaluate(state) -> [row_0, ..., row_{V-1}]``, each row a dict of per-sigma
        lists ``train, val, gap, train_se, val_se, gap_se`` and the same with ``ema_``,
        plus ``sigmas``. Row ``j`` evaluates view ``views[j] = (i, w)``: member ``i``'s
        network (guided with weight ``w`` when conditional) with its run's key (the
        ``EVAL_NOISE`` stream of its seed) on its first ``eval_n[i]`` training and its
        validation examples. The default views are ``(i, configs[i].guidance)`` for every
        member: one row per member; several views of one member evaluate one trained
        conditional network at several guidance weights.
        """
        c = self.configs[0]
        views = self.check_views(views)
        n_dev = 1 if mesh is None else mesh.devices.size
        padded = views + [views[-1]] * ((-len(views)) % n_dev)
        idx = np.asarray([i for i, _ in padded], np.int32)
        w = np.asarray([v for _, v in padded], np.float32)
        sigmas = _noise.log_sigmas(c.eval_sigmas, c.sigma_min, c.sigma_max)
        width = int(data.eval_n.max())
        graphdef, num_noise = self.graphdef, c.eval_num_noise
        # On one CPU device the members are evaluated one after another inside the program
        # (lax.map: plain matmuls, a single run's batch); elsewhere side by side (vmap: the
        # members' batches together hold what one run's batch holds). The losses do not
        # depend on the batch size (the noise is a function of the example index).
        sequential = _one_cpu(mesh)
        batch = default_batch_size(c.eval_sigmas, num_noise, data.train.shape[-1])
        batch = batch if sequential else max(1, batch // len(padded))

        def one(params, ema, tr, va, key, trc, vac, w):
            k_train, k_val = jax.random.split(key)
            out = []
            for p in (params, ema):
                den = nnx.merge(graphdef, p)
                den = den if trc is None else guided(den, w)
                out.append(per_example_loss(k_train, den, tr, sigmas, cond=trc,
                                            num_noise=num_noise, batch_size=batch))
                out.append(per_example_loss(k_val, den, va, sigmas, cond=vac,
                                            num_noise=num_noise, batch_size=batch))
            return tuple(out)

        def run(params, ema, *rest):
            if len(padded) != self.size or not np.array_equal(idx, np.arange(self.size)):
                params, ema = jax.tree.map(lambda p: p[idx], (params, ema))
            if sequential:
                return jax.lax.map(lambda m: one(*m), (params, ema, *rest))
            return jax.vmap(one)(params, ema, *rest)

        eval_fn = jax.jit(run)
        keys = np.stack([np.asarray(_streams.stream(jax.random.PRNGKey(self.seeds[i]),
                                                    _streams.EVAL_NOISE)) for i in idx])
        trc = None if data.train_cond is None else data.train_cond[idx, :width]
        vac = None if data.val_cond is None else data.val_cond[idx]
        args = shard((data.train[idx, :width], data.val[idx], keys, trc, vac, w), mesh)
        sig = np.asarray(sigmas, np.float64).tolist()

        def evaluate(state):
            losses = to_host(eval_fn(state["params"], state["ema"], *args))
            rows = []
            for j, (i, _) in enumerate(views):
                row = {"sigmas": sig}
                for prefix, lt, lv in (("", losses[0][j], losses[1][j]),
                                       ("ema_", losses[2][j], losses[3][j])):
                    t, t_se = _masked_mean_se(lt, int(data.eval_n[i]))
                    v, v_se = _masked_mean_se(lv, lv.shape[1])
                    row.update({prefix + "train": t, prefix + "val": v, prefix + "gap": v - t,
                                prefix + "train_se": t_se, prefix + "val_se": v_se,
                                prefix + "gap_se": np.sqrt(t_se**2 + v_se**2)})
                rows.append({k: (v if k == "sigmas" else v.tolist()) for k, v in row.items()})
            return rows

        return evaluate

    def check_views(self, views) -> list[tuple[int, float]]:
        """``views`` as a list of ``(member, guidance)`` pairs (None: each member at its
        config's weight); raises ValueError for a member out of range, a non-finite weight,
        or a weight other than 1 on an unconditional member."""
        if views is None:
            return [(i, float(c.guidance)) for i, c in enumerate(self.configs)]
        out = []
        for v in views:
            try:
                i, w = v
                ok = (not isinstance(i, bool) and int(i) == i and 0 <= i < self.size
                      and math.isfinite(float(w)))
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise ValueError(f"views: expected (member in [0, {self.size}), finite "
                                 f"guidance) pairs, got {v!r}")
            if not self.configs[int(i)].conditional and float(w) != 1.0:
                raise ValueError(f"views: member {i} is unconditional; guidance {w} changes "
                                 "nothing (use 1.0)")
            out.append((int(i), float(w)))
        if not out:
            raise ValueError("views: expected at least one (member, guidance) pair")
        return out

    def denoiser(self, state_host: dict, i: int, *, ema: bool = True,
                 guidance: float | None = None):
        """Member ``i``'s network (EMA or raw weights) from a host copy of the state, guided
        when conditional with ``guidance`` (None: its config's weight;
        :func:`jaxgap.train.evaluated`)."""
        ((i, w),) = self.check_views([(i, self.configs[i].guidance if guidance is None
                                       else guidance)])
        params = member(state_host["ema" if ema else "params"], i)
        net = nnx.merge(self.graphdef, jax.tree.map(jnp.asarray, params))
        return evaluated(dataclasses.replace(self.configs[i], guidance=w), net)


def _broadcast(tree):
    """Process 0's value of a pytree of host arrays, on every process."""
    if jax.process_count() == 1:
        return tree
    return to_host(multihost_utils.broadcast_one_to_all(tree))


def fit(ens: Ensemble, data: MemberData, workdir, *, eval_steps: Sequence[int],
        sample_steps: Sequence[int] = (), on_sample=None, mesh=None, resume: bool = False,
        progress: bool | str | None = True, desc: str = "ensemble",
        views=None) -> list[dict]:
    """Train every member for ``steps`` steps, evaluating and sampling on the way; resumable.

    At each step in ``eval_steps`` (0 included if listed) every member's gap curves are
    evaluated (:meth:`Ensemble.make_eval`) and appended to ``workdir/rows.jsonl`` as rows
    ``{"kind": "loss", "step", "member", ...}``; at each step in ``sample_steps``
    ``on_sample(step, state_host)`` (on process 0 only) returns rows to append. The whole
    ensemble is checkpointed (one orbax checkpoint, written by process 0 from host copies of
    the state) after each of these steps, every ``ckpt_every`` steps and at the end. A run
    killed at any point and resumed from its last checkpoint (``resume=True``) appends the
    same rows as an uninterrupted run: every random number is a function of the members'
    seeds and the step.

    Args:
      ens: the ensemble (its state is the starting point of a fresh run).
      data: the members' data (:func:`member_data`).
      workdir: the ensemble's folder (created).
      eval_steps, sample_steps: steps ``<= steps`` after which to evaluate and to sample.
      on_sample: ``(step, state_host) -> [row, ...]`` (rows with a ``member`` field).
      mesh: optional 1-D mesh the member axis is sharded over (``E`` a multiple of its size).
      resume: continue from the last checkpoint (otherwise the folder must hold none).
      progress: a :func:`jaxgap._progress.bar` mode.
      desc: the progress bar's text.
      views: ``(member, guidance)`` pairs the gap curves are evaluated for
        (:meth:`Ensemble.make_eval`; their rows' ``member`` is the view's index); None: one
        per member.

    Returns:
      All rows of ``rows.jsonl`` (on process 0; an empty list elsewhere).
    """
    config = ens.configs[0]
    steps = config.steps
    eval_set, sample_set = set(eval_steps), set(sample_steps)
    bad = sorted(t for t in eval_set | sample_set if not 0 <= t <= steps)
    if bad:
        raise ValueError(f"eval_steps, sample_steps: expected steps in [0, {steps}], got {bad}")
    lead = jax.process_index() == 0
    workdir = Path(workdir)
    rows_path = workdir / ROWS
    manager = None
    latest = None
    if lead:
        workdir.mkdir(parents=True, exist_ok=True)
        manager = checkpoint_manager(workdir, only_this_process=True)
        latest = manager.latest_step()
        if latest is not None and not resume:
            manager.close()
            raise ValueError(f"out: {workdir} already holds checkpoints; resume it or start "
                             "afresh in another folder")
    latest = int(_broadcast(np.int32(-1 if latest is None else latest)))
    state = to_host(ens.state)
    if latest >= 0:
        if lead:
            state = to_host(restore_state(manager, state, latest))
        state = _broadcast(state)
    start = max(latest, 0)
    if lead:
        kept = read_jsonl(rows_path, upto=latest if latest >= 0 else -1)
        _io.write_text(rows_path, "".join(json.dumps(r) + "\n" for r in kept))
    state = shard(state, mesh)
    step_fn = ens.make_step(data, mesh=mesh)
    evaluate = ens.make_eval(data, mesh=mesh, views=views) if eval_set else None
    saved = {latest} if latest >= 0 else set()

    def checkpoint(state_host, t):
        if lead:
            manager.save(t, args=ocp.args.StandardSave(pure_state(state_host)), force=True)
            manager.wait_until_finished()
        saved.add(t)

    def due(t):
        """Whether step ``t`` is evaluated, sampled or checkpointed."""
        return t in eval_set or t in sample_set or t % config.ckpt_every == 0 or t == steps

    def reached(t, state):
        rows = []
        if t in eval_set:
            rows += [{"kind": "loss", "step": t, "member": i, **r}
                     for i, r in enumerate(evaluate(state))]
        host = None
        if t in sample_set and on_sample is not None:
            host = to_host(state)
            if lead:
                rows += [{"kind": "sample", "step": t, **r} for r in on_sample(t, host)]
        if lead and rows:
            append_jsonl(rows_path, rows)
        if t > 0 and due(t):
            checkpoint(to_host(state) if host is None else host, t)

    # the state is held as its flat leaf list between steps (``Step``); ``safe``: the one
    # after the last fully finished step
    leaves = safe = step_fn.flatten(state)
    try:
        if start == 0:
            reached(0, state)
        with _progress.bar(steps, desc, mode=progress if lead else False, unit="step",
                           initial=start) as bar:
            for t in range(start, steps):
                _progress.check_interrupt()
                leaves, loss = step_fn.flat(leaves)
                if due(t + 1):
                    reached(t + 1, step_fn.unflatten(leaves))
                safe = leaves
                if (t + 1) % 10 == 0 or t + 1 == steps:
                    bar.update(t + 1 - bar.n)
    except KeyboardInterrupt:
        safe = step_fn.unflatten(safe)
        t = int(to_host(safe["step"])[0])
        if t > 0 and t not in saved and jax.process_count() == 1:
            try:
                checkpoint(to_host(safe), t)
            except BaseException as err:  # a second Ctrl-C, a full disk: keep the older one
                print(f"jaxgap: could not checkpoint step {t} ({type(err).__name__}); "
                      f"--resume continues from step {max(saved, default=0)}",
                      file=sys.stderr)
        if manager is not None:
            manager.close()
        raise
    if manager is not None:
        manager.close()
    return read_jsonl(rows_path) if lead else []

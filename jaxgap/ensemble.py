"""Ensembles: ``E`` networks of one architecture trained as one compiled program.

The members' training states (parameters, EMA, optimizer state, step, running loss) are
stacked on a leading member axis, and one jit-compiled step maps
:func:`jaxgap.train.step_body`, the single-run step, over that axis with ``jax.vmap``: each
member draws its data order and noise from its own seed's named streams, so member ``i``
follows the same trajectory as a run of :func:`jaxgap.train.train_and_evaluate` with
``seed = seeds[i]`` on the same training set (to float32 rounding: the batched matmuls may
round differently).

This is the first step of the factor-sweep machinery (issue 13): seeds on the member axis,
one training set. Per-member training subsets and hyper-parameters, evaluations,
checkpoints and sharding of the member axis come next.

Example:
  >>> from jaxgap import data
  >>> from jaxgap.train import TrainConfig
  >>> ds = data.load("digits", seed=0).with_train_size(32)
  >>> config = TrainConfig(width=16, depth=1, batch_size=8)
  >>> ens = Ensemble.create(config, seeds=(0, 1, 2), dim=ds.dim)
  >>> step = ens.make_step(ds.train)
  >>> state, loss = step(ens.state)
  >>> loss.shape, int(state["step"][1])
  ((3,), 1)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxgap._checks import positive_int
from jaxgap.train import TrainConfig, init_state, step_body

__all__ = ["Ensemble", "member", "stack"]


def stack(trees: Sequence[Any]) -> Any:
    """Pytrees of one structure stacked on a new leading (member) axis."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def member(tree: Any, i: int) -> Any:
    """Member ``i`` of a stacked pytree (the leading axis removed)."""
    return jax.tree.map(lambda x: x[i], tree)


class Ensemble(NamedTuple):
    """``E`` members of one architecture: the shared graph and optimizer, the stacked state.

    Attributes:
      config: the members' :class:`~jaxgap.train.TrainConfig` (its ``seed`` unused).
      seeds: ``E`` seeds, one per member (initialization, data order, noise).
      graphdef: the network's graph (shared).
      tx: the optimizer (shared).
      state: the training state of :func:`jaxgap.train.init_state`, every leaf with a
        leading axis of size ``E``.
    """

    config: TrainConfig
    seeds: tuple[int, ...]
    graphdef: Any
    tx: Any
    state: dict

    @classmethod
    def create(cls, config: TrainConfig, *, seeds: Sequence[int], dim: int,
               image_shape: tuple[int, ...] | None = None) -> Ensemble:
        """Initialize one member per seed, exactly as a single run with that seed."""
        config = config.validate()
        if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence) or not seeds:
            raise ValueError(f"seeds: expected a non-empty sequence of integers, got {seeds!r}")
        seeds = tuple(positive_int(s, "seeds", minimum=0) for s in seeds)
        inits = [init_state(dataclasses.replace(config, seed=s), dim, image_shape)
                 for s in seeds]
        graphdef, tx, _ = inits[0]
        return cls(config, seeds, graphdef, tx, stack([st for _, _, st in inits]))

    @property
    def size(self) -> int:
        """The number of members ``E``."""
        return len(self.seeds)

    def make_step(self, train_x):
        """One jit-compiled step of every member: ``state -> (state, loss [E])``.

        Args:
          train_x: ``[n, d]`` the training set (shared by the members).
        """
        train_x = jnp.asarray(train_x)
        batch = min(self.config.batch_size, train_x.shape[0])
        body = step_body(self.graphdef, self.tx, self.config, batch, train_x.shape[0])
        step_fn = jax.jit(jax.vmap(body, in_axes=(0, None, 0)))
        keys = jnp.stack([jax.random.PRNGKey(s) for s in self.seeds])
        return lambda state: step_fn(state, train_x, keys)

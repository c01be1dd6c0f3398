"""Ensembles (issue 13, first step): members trained in one program follow their single runs."""

import dataclasses

import jax
import numpy as np
import pytest

from jaxgap import data
from jaxgap.ensemble import Ensemble, member
from jaxgap.train import TrainConfig, init_state, make_step

CONFIG = TrainConfig(width=16, depth=1, batch_size=8, lr=3e-3, warmup=2)
SEEDS = (0, 3, 5)
STEPS = 6


def test_members_follow_their_single_runs():
    ds = data.load("digits", seed=0).with_train_size(32)
    ens = Ensemble.create(CONFIG, seeds=SEEDS, dim=ds.dim)
    assert ens.size == 3
    step = ens.make_step(ds.train)
    state, losses = ens.state, []
    for _ in range(STEPS):
        state, loss = step(state)
        losses.append(np.asarray(loss))
    losses = np.stack(losses)  # [STEPS, E]
    for i, seed in enumerate(SEEDS):
        graphdef, tx, alone = init_state(dataclasses.replace(CONFIG, seed=seed), ds.dim, None)
        one = make_step(graphdef, tx, dataclasses.replace(CONFIG, seed=seed),
                        jax.numpy.asarray(ds.train), 8)
        ref = []
        for _ in range(STEPS):
            alone, loss = one(alone)
            ref.append(float(loss))
        np.testing.assert_allclose(losses[:, i], ref, rtol=2e-5, atol=1e-6)
        mine = member(state, i)
        assert int(mine["step"]) == STEPS
        for name in ("params", "ema"):
            for a, b in zip(jax.tree.leaves(mine[name]), jax.tree.leaves(alone[name]),
                            strict=True):
                np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6,
                                           err_msg=f"member {i} {name}")
    # the members are different networks (their own seeds), not copies
    first = [np.asarray(x) for x in jax.tree.leaves(member(state, 0)["params"])]
    second = [np.asarray(x) for x in jax.tree.leaves(member(state, 1)["params"])]
    assert any(not np.allclose(a, b) for a, b in zip(first, second, strict=True))


@pytest.mark.parametrize("seeds, needle", [((), "seeds"), ((0, -1), "seeds"), ("01", "seeds")])
def test_bad_seeds(seeds, needle):
    with pytest.raises(ValueError, match=needle):
        Ensemble.create(CONFIG, seeds=seeds, dim=4)

"""Every family and size rung trains: the smallest rung for real on digits and on natural
patches, every rung's whole training step (forward, backward, AdamW, EMA) traced on the
digits and the largest on 32x32x3 patches."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgap import train as train_mod
from jaxgap.nets import MODEL_SIZES
from jaxgap.train import TrainConfig, read_metrics, train_and_evaluate

FAMILIES = ("mlp", "unet", "dit")
SHAPES = {"digits": (8, 8, 1), "patches": (32, 32, 3)}


def _traced_loss(config, shape):
    dim = int(np.prod(shape))
    holder = {}

    def init():
        graphdef, _, state = train_mod.init_state(config, dim, shape)
        holder["graphdef"] = graphdef
        return state

    state = jax.eval_shape(init)
    body = train_mod.step_body(holder["graphdef"], config, config.batch_size)
    x = jax.ShapeDtypeStruct((2 * config.batch_size, dim), jnp.float32)
    new, loss = jax.eval_shape(body, state, x, None, jnp.int32(2 * config.batch_size),
                               jax.random.PRNGKey(0), train_mod.hyper(config))
    assert jax.tree.map(lambda a: (a.shape, a.dtype), new) == jax.tree.map(
        lambda a: (a.shape, a.dtype), state)
    return loss


@pytest.mark.parametrize("model", FAMILIES)
def test_every_rung_has_a_training_step(model):
    cases = [(size, "digits") for size in MODEL_SIZES] + [("xl", "patches")]
    for size, data in cases:
        config = TrainConfig(model=model, model_size=size, batch_size=4).validate()
        loss = _traced_loss(config, SHAPES[data])
        assert loss.shape == () and loss.dtype == jnp.float32, (size, data)


@pytest.mark.parametrize("model, data", [(m, d) for m in FAMILIES for d in ("digits", "patches")
                                         if (m, d) != ("dit", "patches")])  # test_train: CLI
def test_smallest_rung_trains(model, data, tmp_path):
    options = {"size": 16} if data == "patches" else {}
    config = TrainConfig(data=data, data_options=options, model=model, model_size="xs",
                         train_size=32, batch_size=8, steps=2, eval_every=2, ckpt_every=2,
                         eval_sigmas=3, eval_train_size=16, eval_val_size=16).validate()
    train_and_evaluate(config, tmp_path / "run", progress=False)
    rows = read_metrics(tmp_path / "run")
    assert [r["step"] for r in rows] == [0, 2]
    assert np.all(np.isfinite(rows[-1]["ema_gap"])) and np.isfinite(rows[-1]["train_loss"])

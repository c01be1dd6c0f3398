"""Tests of the model-size ladders (jaxgap/nets/_sizes.py) and ``make_denoiser(model_size=)``.

Parameter counts are taken on abstract modules (``nnx.eval_shape``: traced, never compiled
nor allocated), so these tests compile nothing.
"""

import math

import numpy as np
import pytest
from flax import nnx

from jaxgap.nets import (
    MODEL_SIZES,
    make_denoiser,
    param_count,
    param_table,
    param_table_markdown,
    size_kwargs,
)
from jaxgap.nets._sizes import formula_count

DIGITS, PATCHES = (8, 8, 1), (32, 32, 3)
KINDS = ("mlp", "unet", "dit")


def _measured(kind, shape, **kwargs):
    dim = math.prod(shape) if isinstance(shape, tuple) else shape
    image_shape = shape if isinstance(shape, tuple) else None
    return param_count(nnx.eval_shape(lambda: make_denoiser(kind, dim, image_shape, **kwargs)))


@pytest.mark.parametrize(("kind", "shape", "kwargs"), [
    ("mlp", DIGITS, {}),  # the defaults
    ("unet", DIGITS, {}),
    ("dit", DIGITS, {}),
    ("mlp", 6, {"width": 10, "depth": 3, "emb_dim": 4}),
    ("unet", (8, 8, 3), {"channels": (8, 12, 12), "blocks_per_level": 2, "emb_dim": 6}),
    ("dit", 12, {"width": 8, "depth": 2, "heads": 4, "patch": 3, "mlp_ratio": 2.5,
                 "emb_dim": 4}),
    ("dit", (4, 8, 3), {"width": 12, "depth": 1, "heads": 3, "patch": 2, "emb_dim": 8}),
])
def test_formula_counts_the_modules(kind, shape, kwargs):
    """The written-out counts the ladders are solved with equal the modules' own."""
    dim = math.prod(shape) if isinstance(shape, tuple) else shape
    image_shape = shape if isinstance(shape, tuple) else None
    assert formula_count(kind, dim, image_shape, kwargs) == _measured(kind, shape, **kwargs)


def test_defaults_unchanged_without_model_size():
    mlp = nnx.eval_shape(lambda: make_denoiser("mlp", 64))
    unet = nnx.eval_shape(lambda: make_denoiser("unet", 64, DIGITS))
    assert (mlp.net.width, mlp.net.depth, mlp.net.embed.emb_dim) == (256, 4, 64)
    assert unet.net.channels == (32, 64) and unet.net.blocks_per_level == 1
    assert (param_count(mlp), param_count(unet)) == (636_864, 127_649)


@pytest.mark.parametrize("shape", [DIGITS, PATCHES])
@pytest.mark.parametrize("kind", KINDS)
def test_ladder_is_about_4x_per_rung(kind, shape):
    dim = math.prod(shape)
    counts = [formula_count(kind, dim, shape, size_kwargs(kind, size, dim, shape))
              for size in MODEL_SIZES]
    ratios = np.array(counts[1:]) / np.array(counts[:-1])
    assert np.all((ratios > 3.0) & (ratios < 5.5)), (counts, ratios)
    if kind == "mlp" and shape == PATCHES:
        # 2 d w weights just to read and write d = 3072 values: the ladder starts at the
        # narrowest MLP (width 8) and still climbs 4x per rung
        assert size_kwargs(kind, "xs", dim, shape)["width"] == 8
        assert 40_000 < counts[0] < 70_000 and 8e6 < counts[-1] < 2e7
    else:
        assert 7_000 < counts[0] < 15_000 and 1e6 < counts[-1] < 4e6, counts


def test_table_is_measured_on_the_modules():
    rows = param_table({"digits": DIGITS}, sizes=("xs", "m"))  # l, xl: slower to trace
    assert [(r.kind, r.model_size) for r in rows] == [(k, s) for k in KINDS for s in ("xs", "m")]
    for row in rows:
        assert row.params == formula_count(row.kind, 64, DIGITS, row.kwargs), row
        assert row.image_shape == DIGITS and row.data == "digits"
    assert formula_count("mlp", 64, DIGITS, size_kwargs("mlp", "l", 64)) == 636_864  # the
    # default MLP is rung l on the digits
    # the markdown form: its doctest (jaxgap/nets/_sizes.py)


def test_rung_keywords():
    assert size_kwargs("dit", "xs", 64, DIGITS) == {"width": 16, "depth": 2, "heads": 2,
                                                    "emb_dim": 16, "patch": 2}
    assert size_kwargs("dit", "xl", 3072, PATCHES)["patch"] == 4
    assert size_kwargs("unet", "xl", 3072, PATCHES)["channels"] == (72, 144, 144)
    # vectors: the MLP and the DiT (feature groups) have ladders, the U-Net has none
    assert size_kwargs("dit", "m", 64)["patch"] == 2
    assert size_kwargs("mlp", "m", 64) == size_kwargs("mlp", "m", 64, DIGITS)
    # U-Net levels the image cannot halve into are dropped
    assert len(size_kwargs("unet", "m", 36, (6, 6, 1))["channels"]) == 2
    odd = size_kwargs("unet", "xl", 49, (7, 7, 1))
    assert len(odd["channels"]) == 1 and _measured("unet", (7, 7, 1), **odd) > 1e6
    # a fresh dict each time
    size_kwargs("mlp", "s", 64)["width"] = 1
    assert size_kwargs("mlp", "s", 64)["width"] == 76


def test_model_size_in_make_denoiser_and_overrides():
    rung = size_kwargs("unet", "s", 64, DIGITS)
    unet = nnx.eval_shape(lambda: make_denoiser("unet", 64, DIGITS, model_size="s"))
    assert unet.net.channels == rung["channels"]
    assert param_count(unet) == formula_count("unet", 64, DIGITS, rung)
    over = nnx.eval_shape(lambda: make_denoiser("unet", 64, DIGITS, model_size="s",
                                                channels=(8, 8), blocks_per_level=None))
    assert over.net.channels == (8, 8) and over.net.blocks_per_level == 1  # None: the rung's
    dit = nnx.eval_shape(lambda: make_denoiser("dit", 3072, PATCHES, model_size="m", depth=1,
                                               patch=8, num_classes=10))
    m = size_kwargs("dit", "m", 3072, PATCHES)
    assert (dit.net.width, dit.net.depth, dit.patch, dit.net.tokens) == (m["width"], 1, 8, 16)
    assert dit.conditional
    mlp = nnx.eval_shape(lambda: make_denoiser("mlp", 64, model_size="xl", width=None,
                                               depth=None))
    assert (mlp.net.width, mlp.net.depth) == (440, 6)


def test_bad_input():
    msg = r"^model_size: expected one of 'xs', 's', 'm', 'l', 'xl', got 'xxl'$"
    with pytest.raises(ValueError, match=msg):
        size_kwargs("mlp", "xxl", 64)
    with pytest.raises(ValueError, match=msg):
        make_denoiser("dit", 64, model_size="xxl")
    with pytest.raises(ValueError, match="^model_size: expected one of .* got 'M'"):
        make_denoiser("mlp", 64, model_size="M")
    with pytest.raises(ValueError, match=r"^image_shape: expected \(H, W, C\) for "
                                         r"kind='unet'.* got None"):
        size_kwargs("unet", "m", 64)
    with pytest.raises(ValueError, match="^image_shape: expected .* for kind='unet', got None"):
        make_denoiser("unet", 64, model_size="m")
    with pytest.raises(ValueError, match="^kind: expected one of 'mlp', 'unet', 'dit', "
                                         "got 'cnn'"):
        size_kwargs("cnn", "m", 64)
    with pytest.raises(ValueError, match="^image_shape: expected a shape with product d = 64"):
        size_kwargs("dit", "m", 64, PATCHES)
    with pytest.raises(ValueError, match="^dim: expected an integer >= 1"):
        size_kwargs("mlp", "m", 0)
    with pytest.raises(ValueError, match="^patch: expected a divisor"):  # an override
        make_denoiser("dit", 64, DIGITS, model_size="xs", patch=3)


def test_readme_table_is_param_table_output():
    """The README's parameter-count table is produced by code, not typed by hand."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    start, end = "<!-- param-table -->\n", "\n<!-- /param-table -->"
    assert start in readme and end in readme
    table = readme[readme.index(start) + len(start): readme.index(end)]
    assert table.strip() == param_table_markdown().strip()

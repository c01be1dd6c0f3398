"""Shared fixtures.

float32 is the default. Tests marked ``x64`` run in their own pytest process with
``JAX_ENABLE_X64=1`` (``make test`` does both); the flag is never toggled inside a test.
"""

import os

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")

X64 = os.environ.get("JAX_ENABLE_X64", "").lower() in ("1", "true", "yes")


def pytest_collection_modifyitems(config, items):
    skip_x64 = pytest.mark.skip(reason="x64 test: run with JAX_ENABLE_X64=1 (make test does)")
    for item in items:
        if "x64" in item.keywords and not X64:
            item.add_marker(skip_x64)


@pytest.fixture
def key():
    return jax.random.PRNGKey(0)

"""Shared fixtures and collection rules of the test suite.

float32 is the default. Tests marked ``x64`` run in their own pytest process with
``JAX_ENABLE_X64=1`` (``make test`` does both); the flag is never toggled inside a test.
Tests marked ``multidevice`` need 8 forced CPU devices: ``tests/test_multidevice.py`` runs
them in a child process and they are deselected everywhere else. Tests marked ``slow`` (the
end-to-end runs of 20-200 s each) are moved to the front of the run: pytest-xdist hands
tests out in order, so the long ones start first and the ~1100 short ones fill both
workers to the end (longest first, the usual way to pack jobs onto workers) instead of one
long run holding the last minutes on one worker while the other sits idle.
``jax_numpy_rank_promotion="raise"`` is set in the repository's top-level ``conftest.py``,
so that it holds for the doctests of ``jaxgap/`` too.
"""

import os
import re

import jax
import pytest

X64 = os.environ.get("JAX_ENABLE_X64", "").lower() in ("1", "true", "yes")
MULTIDEVICE = "--xla_force_host_platform_device_count=8" in os.environ.get("XLA_FLAGS", "")


def pytest_collection_modifyitems(config, items):
    skip_x64 = pytest.mark.skip(reason="x64 test: run with JAX_ENABLE_X64=1 (make test does)")
    kept, deselected = [], []
    for item in items:
        if "multidevice" in item.keywords and not MULTIDEVICE:
            deselected.append(item)  # run by test_multidevice.py::test_in_own_process
            continue
        if "x64" in item.keywords and not X64:
            item.add_marker(skip_x64)
        kept.append(item)
    kept.sort(key=lambda item: "slow" not in item.keywords)  # stable: slow ones first
    if deselected:
        config.hook.pytest_deselected(items=deselected)
    items[:] = kept


@pytest.fixture
def key():
    return jax.random.PRNGKey(0)


@pytest.fixture(scope="session")
def run_bound_env():
    """The environment for a child process whose time goes to running compiled loops, not to
    compiling them (the 1000-step training run, the empirical gap curve of every digit): the
    suite's ``XLA_FLAGS`` with LLVM at ``-O2`` instead of ``-O0``. The top-level
    ``conftest.py`` compiles every test program at ``-O0`` (compilation dominates the suite);
    measured alone, the real training run takes 44 s at ``-O2`` against 65 s at ``-O0``
    (``docs/test_time.md``)."""
    flags = re.sub(r"--xla_backend_optimization_level=\d+", "", os.environ.get("XLA_FLAGS", ""))
    return {**os.environ,
            "XLA_FLAGS": " ".join([*flags.split(), "--xla_backend_optimization_level=2"])}

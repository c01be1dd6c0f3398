"""pytest configuration shared by the test suite (``tests/``) and the doctests of ``jaxgap/``.

Set once per process, before any test or example runs: JAX raises on implicit rank promotion
(``x [n, d] + mean [d]`` must be written ``mean[None, :]``), as in diffrax's and ott's test
suites. ``make test`` runs the doctests with ``pytest --doctest-modules jaxgap``.

The suite's run time is XLA compilation, and its processes (the xdist workers, the command
line runs of the CLI tests, the 8-device child) compile many identical programs. They share
one persistent compilation cache, a temporary folder made by the first process (its path
passed on in ``JAX_COMPILATION_CACHE_DIR``) and removed when that process ends; a program is
compiled once per test run. A cache is only a cache: results do not depend on it.
Compilation itself is made cheaper by ``XLA_FLAGS``: LLVM's optimizations skipped and XLA:CPU's
elemental fusion emitter.
"""

import os
import shutil
import tempfile

if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _CACHE = tempfile.mkdtemp(prefix="jaxgap-tests-xla-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE
else:
    _CACHE = None
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.1")
# LLVM at -O0: XLA's graph optimizations (fusion, layout) are unchanged, only its machine-code
# optimization is skipped; compilation is ~40% faster and the test programs are small. And
# XLA:CPU's older (elemental) emitter for its fusions instead of the MLIR fusion emitters:
# backend compilation ~40% faster (``docs/test_time.md``). Child processes inherit both (tests
# that set XLA_FLAGS append to it).
for _flag in ("--xla_backend_optimization_level=0", "--xla_cpu_use_fusion_emitters=false"):
    if _flag.split("=")[0] not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _flag).strip()

# JAX never writes a program with a host callback to the persistent cache, and every
# in-graph check of jaxgap (``equinox.error_if``, e.g. sigma > 0 inside a denoiser) is one.
# So pytest processes (this one, the xdist workers, the 8-device child) keep equinox's
# default ``raise``, and the other processes the tests start (command-line runs, notebook
# kernels) get ``EQX_ON_ERROR=nan``: their checks become a select with no callback, their
# programs are cached and shared (a resumed run or a second command compiles little). No
# such child is expected to fail a check; the in-graph errors are tested in pytest
# processes. A value set by the user is left alone.
_CHILD_MARK = "JAXGAP_TESTS_CHILD_EQX"
if os.environ.get(_CHILD_MARK) == "1":
    os.environ["EQX_ON_ERROR"] = "raise"
if os.environ.get("EQX_ON_ERROR", "raise") == "raise":
    import equinox  # noqa: E402, F401  (reads EQX_ON_ERROR once, now)

    os.environ.update({"EQX_ON_ERROR": "nan", _CHILD_MARK: "1"})

import jax  # noqa: E402  (after the cache settings it reads)

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs",
                  float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))


def pytest_unconfigure(config):
    if _CACHE is not None and not hasattr(config, "workerinput"):  # the first process
        shutil.rmtree(_CACHE, ignore_errors=True)

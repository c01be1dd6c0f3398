"""pytest configuration shared by the test suite (``tests/``) and the doctests of ``jaxgap/``.

Set once per process, before any test or example runs: JAX raises on implicit rank promotion
(``x [n, d] + mean [d]`` must be written ``mean[None, :]``), as in diffrax's and ott's test
suites. ``make test`` runs the doctests with ``pytest --doctest-modules jaxgap``.
"""

import jax

jax.config.update("jax_numpy_rank_promotion", "raise")

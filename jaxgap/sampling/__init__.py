r"""Samplers of the probability-flow ODE and EDM's stochastic sampler, for any denoiser.

EDM convention (Karras et al., 2022): a state at noise level :math:`\sigma` is
``x_sigma = x0 + sigma * eps``, and the probability-flow ODE that carries the noisy
distributions :math:`p_\sigma` into each other is

.. math:: \frac{dx}{d\sigma} = \frac{x - D(x, \sigma)}{\sigma}
    = -\sigma\, \nabla_x \log p_\sigma(x),

or, in :math:`\log\sigma` (better conditioned: the right-hand side stays of order ``|x|``),

.. math:: \frac{dx}{d\log\sigma} = x - D(x, \sigma).

Entry points:

- :func:`euler`, :func:`heun`: fixed-step solvers of the ODE over an explicit schedule
  ``sigmas [S+1]`` (EDM Algorithm 1; Heun's last step to an exact 0 is an Euler step).
- :func:`edm_stochastic`: EDM Algorithm 2 (Heun with "churn": noise is added before each
  step); with ``s_churn=0`` it equals :func:`heun` exactly.
- :func:`reference_solve`: an error-controlled solution of the same ODE with diffrax, the
  reference against which fixed-step samplers are measured.
- :func:`sample`: draw ``num`` samples from ``N(0, sigma_max^2 I)`` and integrate them over
  EDM's schedule (:func:`jaxgap.noise.karras_sigmas` plus a final 0), jit-compiled once per
  ``(num, dim, method, num_steps)``.

Every solver takes any pytree callable ``D(x, sigma)`` obeying jaxgap's protocol; the
denoiser is called with ``x: [..., d]`` and a scalar ``sigma``. Randomness is per sample:
sample ``i`` uses keys derived from ``fold_in(key, i)`` only, so results do not depend on the
number of samples or the batch size.

Validation happens at the public boundary, outside jit; a failed check raises ``ValueError``
with the message ``"<argument>: expected ..., got ..."``. Inside a caller's ``jit`` the value
checks of traced arguments are skipped (shapes are still checked).

References:
  T. Karras, M. Aittala, T. Aila, S. Laine. Elucidating the Design Space of Diffusion-Based
  Generative Models. NeurIPS 2022 (arXiv:2206.00364), Algorithms 1 and 2, Eq. (4)-(5).
  Y. Song, J. Sohl-Dickstein, D. P. Kingma, A. Kumar, S. Ermon, B. Poole. Score-Based
  Generative Modeling through Stochastic Differential Equations. ICLR 2021 (probability flow).
  P. Kidger. On Neural Differential Equations. PhD thesis, 2021 (diffrax).
"""

from jaxgap.sampling._reference import reference_solve
from jaxgap.sampling._solvers import (
    METHODS,
    Trajectory,
    edm_stochastic,
    euler,
    heun,
    sample,
)

__all__ = [
    "METHODS",
    "Trajectory",
    "edm_stochastic",
    "euler",
    "heun",
    "reference_solve",
    "sample",
]

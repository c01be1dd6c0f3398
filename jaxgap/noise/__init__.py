r"""Noise levels, EDM preconditioning and conversions between diffusion parametrizations.

jaxgap works in the variance-exploding convention of EDM (Karras et al., 2022):

.. math:: x_\sigma = x_0 + \sigma \epsilon, \qquad \epsilon \sim \mathcal{N}(0, I).

This module holds the noise-level grids (:func:`karras_sigmas`, :func:`log_sigmas`), EDM's
preconditioning and loss weight (:func:`edm_precond`, :func:`edm_loss_weight`), its log-normal
training distribution of noise levels (:func:`sample_lognormal_sigmas`,
:func:`lognormal_sigma_density`), and exact conversions from the VP/DDPM and
flow-matching parametrizations. Those write a noisy state as a scaled EDM state,

.. math:: x_t = s(t)\, (x_0 + \sigma(t)\, \epsilon),

(Karras et al., 2022, Eq. 4 and Table 1), so a VP or flow model is used with every jaxgap tool
by evaluating it at ``x_t = scale * x_sigma`` and reading off ``sigma``.

The package holds three modules, re-exported here: ``_grids`` (noise-level grids),
``_edm`` (preconditioning, loss weight, training distribution of sigma) and ``_convert``
(VP/DDPM and flow-matching conversions); import everything from :mod:`jaxgap.noise`.

Validation: hyper-parameters and arrays are checked at the boundary when their values are
concrete; inside ``jit``/``vmap``/``grad`` the value checks are skipped (shapes are still
checked), so every function here can be traced. A failed check raises ``ValueError`` with the
message ``"<argument>: expected ..., got ..."``.

References:
  T. Karras, M. Aittala, T. Aila, S. Laine. Elucidating the Design Space of Diffusion-Based
  Generative Models. NeurIPS 2022 (arXiv:2206.00364).
  J. Ho, A. Jain, P. Abbeel. Denoising Diffusion Probabilistic Models. NeurIPS 2020.
  Y. Lipman, R. T. Q. Chen, H. Ben-Hamu, M. Nickel, M. Le. Flow Matching for Generative
  Modeling. ICLR 2023. X. Liu, C. Gong, Q. Liu. Flow Straight and Fast: Learning to Generate
  and Transfer Data with Rectified Flow. ICLR 2023.
"""

from jaxgap.noise._convert import (
    SigmaScale,
    ddpm_alpha_bar,
    edm_to_flow,
    edm_to_vp,
    flow_to_edm,
    vp_to_edm,
)
from jaxgap.noise._edm import (
    Precond,
    edm_loss_weight,
    edm_precond,
    lognormal_sigma_density,
    sample_lognormal_sigmas,
)
from jaxgap.noise._grids import karras_sigmas, log_sigmas

__all__ = [
    "Precond",
    "SigmaScale",
    "ddpm_alpha_bar",
    "edm_loss_weight",
    "edm_precond",
    "edm_to_flow",
    "edm_to_vp",
    "flow_to_edm",
    "karras_sigmas",
    "log_sigmas",
    "lognormal_sigma_density",
    "sample_lognormal_sigmas",
    "vp_to_edm",
]

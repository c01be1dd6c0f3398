"""What the study measures on every sampled network of its sweeps, beyond the sweep's own
columns (``run_sweep(extra=...)``): the noisy-copy detector on the samples and on the
held-out baseline, and at the final step the trajectories' inference domain, the field's
sharpness on the gap-curve grid and a second evaluation of the gap curve (the control of
"the gap grows"). Every value is JSON-ready, stored in the sweep's ``extras.json``."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxgap import _streams, metrics
from jaxgap.denoisers import EmpiricalDenoiser
from jaxgap.losses import curve_peak, gap_curve
from jaxgap.metrics import NoisyCopyDetector
from jaxgap.study.criteria import Criteria, domain_record
from jaxgap.study.results import jsonable

__all__ = ["Measurer", "copy_record", "sharpness_grid"]

RECHECK = 7919  # the second evaluation's key: fold_in of the evaluation key


def sharpness_grid(sigmas, sigma_min: float, sigma_data: float, crit: Criteria) -> np.ndarray:
    """The gap-curve sigmas at which field sharpness is measured: those where a gap peak
    counts as intermediate (``[low_factor sigma_min, high_factor sigma_data]``)."""
    s = np.sort(np.asarray(sigmas, np.float64))
    keep = (s >= crit.smoothing.low_factor * sigma_min) & (s <= crit.gap_peak.high_factor
                                                             * sigma_data)
    return s[keep]


def copy_record(copies, base, num: int, num_base: int) -> dict:
    """The copying keys of the judges from two :class:`~jaxgap.metrics.NoisyCopies`
    summaries (samples and held-out images)."""
    return {"num": num, "ratio_rule": float(copies["ratio_rule_fraction"]),
            "flagged": float(copies["copy_fraction"]), "base_num": num_base,
            "base_ratio_rule": float(base["ratio_rule_fraction"]),
            "base_flagged": float(base["copy_fraction"])}


class Measurer:
    """The ``extra`` hook of the study's sweeps (see the module docstring).

    Args:
      final_step: the step at which the domain, sharpness and recheck are measured.
      sigmas: ``[K]`` the gap-curve grid.
      sharp_sigmas: the sigmas of the sharpness measurements.
      detail: ``(seed, train_size)`` of the member whose samples and domain diagnostics are
        kept whole (the report's figures); None: none.
      sharp_steps: the steps at which sharpness is measured (default: step 0 and the final).
    """

    def __init__(self, *, final_step: int, sigmas, sharp_sigmas, detail=None,
                 sharp_steps=None):
        self.final_step, self.sigmas = final_step, sigmas
        self.sharp_sigmas = np.asarray(sharp_sigmas, np.float64)
        self.detail = detail
        self.sharp_steps = {0, final_step} if sharp_steps is None else set(sharp_steps)
        self._detectors, self._base, self._optimal = {}, {}, {}

    def _key(self, m, ds) -> tuple:
        return (m.config.data, m.seed, m.config.train_size, m.config.train_offset,
                ds.train.shape)

    def detector(self, m, ds) -> tuple[NoisyCopyDetector, dict, int]:
        """The member's training set's detector and its held-out baseline summary."""
        k = self._key(m, ds)
        if k not in self._detectors:
            det = NoisyCopyDetector(ds.train)
            val = np.asarray(ds.val[:m.config.eval_val_size])
            self._detectors[k] = det
            self._base[k] = (det(val).summary(), int(val.shape[0]))
        return self._detectors[k], *self._base[k]

    def optimal_sharpness(self, m, ds) -> list[float]:
        k = self._key(m, ds)
        if k not in self._optimal:
            self._optimal[k] = _median_sharpness(EmpiricalDenoiser(ds.train), ds.train,
                                                 self.sharp_sigmas)
        return self._optimal[k]

    def __call__(self, step: int, m, den, ds, run) -> dict:
        det, base, num_base = self.detector(m, ds)
        samples = np.asarray(run.samples)
        out = {"copies": copy_record(det(samples).summary(), base, samples.shape[0], num_base)}
        if step in self.sharp_steps and self.sharp_sigmas.size:
            out["sharpness"] = {"sigmas": self.sharp_sigmas.tolist(),
                                "network": _median_sharpness(den, ds.train, self.sharp_sigmas),
                                "optimal": self.optimal_sharpness(m, ds)}
        if step == self.final_step:
            out.update(self._final(m, den, ds, run))
        return out

    def _final(self, m, den, ds, run) -> dict:
        traj = run.trajectory
        sig = np.asarray(traj.sigma, np.float64)[:-1]
        key = _streams.stream(jax.random.PRNGKey(m.seed), _streams.SAMPLING)
        diag = metrics.trajectory_domain(key, EmpiricalDenoiser(ds.train), ds.val, sig,
                                         {"network": np.asarray(traj.x)[:-1]},
                                         num=int(run.samples.shape[0]))
        c = m.config
        eval_key = _streams.stream(jax.random.PRNGKey(m.seed), _streams.EVAL_NOISE)
        curve = gap_curve(jax.random.fold_in(eval_key, RECHECK), den,
                          ds.train[:c.eval_train_size], ds.val[:c.eval_val_size], self.sigmas,
                          num_noise=c.eval_num_noise)
        s, g, e = (np.asarray(getattr(curve, f), np.float64) for f in ("sigmas", "gap",
                                                                         "gap_se"))
        k = curve_peak(s, g, return_index=True)[2]
        out = {"domain": jsonable(domain_record(diag)),
               "recheck": {"gap_max": float(g[k]), "gap_max_se": float(e[k])}}
        if self.detail == (m.seed, m.config.train_size):
            out["detail"] = {"diagnostics": jsonable(diag.to_dict()),
                             "samples": np.asarray(run.samples, np.float64).tolist()}
        return out


def _median_sharpness(den: Callable, train, sigmas) -> list[float]:
    sharp = metrics.field_sharpness(den, train, jnp.asarray(sigmas, jnp.float32))
    return np.median(np.asarray(sharp, np.float64), axis=1).tolist()


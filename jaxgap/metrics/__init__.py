r"""Memorization metrics and inference-domain diagnostics.

Five groups of measurements, all on plain ``[n, d]`` arrays:

- **Nearest neighbours** (:func:`nearest_neighbors`): exact k-nearest neighbours in JAX,
  streamed over chunks of the reference points with one matmul per chunk (memory
  independent of the number of points beyond the data), then re-ranked exactly.
- **Copying** (:func:`copy_ratio`, :func:`memorized_fraction`, :func:`distance_to_sets`):
  the memorization criterion of the literature, "the 1/3 rule": a generated sample ``x``
  counts as a copy of the training set when

  .. math:: \frac{|x - \mathrm{NN}_1(x)|}{|x - \mathrm{NN}_2(x)|} < \frac{1}{3},

  with ``NN_1``, ``NN_2`` its nearest and second-nearest training points.
- **Inference domain** (claim C3 of Kaiser and Kollmann, 2026: intermediate states of
  sampling trajectories lie far from the noisy training samples the model was trained on):
  :func:`normalized_nn_distance`, :func:`posterior_concentration` and
  :func:`domain_diagnostics`, which summarize noisy-train, noisy-val
  (:func:`noisy_states`) and sampler states side by side, per noise level;
  :func:`trajectory_domain`, :func:`domain_exits` and :func:`exit_ranges` for sampler
  trajectories.
- **Shared measurements** of ``jaxgap sample`` and the study
  (:mod:`jaxgap.study`): :func:`measure_memorization` (memorized fraction, copy ratios,
  nearest distances) and :func:`field_sharpness` (how abruptly a denoiser's output jumps
  between neighbouring training points).
- **Sample quality** without an Inception network (:func:`sample_quality`): k-NN precision
  and recall, density and coverage of samples against held-out data, and the Fréchet
  distance (:func:`frechet_distance`), in pixels or the features of a small classifier
  trained on the dataset's labels (:func:`train_feature_classifier`).

References:
  Kaiser and Kollmann, "Diffusion Models Memorize in Training -- and Generalize in
  Inference" (2026). Yoon et al., "Diffusion Probabilistic Models Generalize when They Fail
  to Memorize" (ICML 2023 workshop), the 1/3 rule; Gu et al., "On Memorization in Diffusion
  Models" (2023); Somepalli et al., "Diffusion Art or Digital Forgery?" (CVPR 2023).
"""

from jaxgap.metrics._copying import (
    THRESHOLD,
    Memorization,
    MemorizedFraction,
    SetDistances,
    copy_ratio,
    distance_to_sets,
    measure_memorization,
    memorized_fraction,
)
from jaxgap.metrics._domain import (
    QUANTILES,
    Concentration,
    DomainDiagnostics,
    SetDiagnostics,
    domain_diagnostics,
    domain_exits,
    exit_ranges,
    noisy_states,
    normalized_nn_distance,
    posterior_concentration,
    trajectory_domain,
)
from jaxgap.metrics._features import Classifier, FeatureClassifier, train_feature_classifier
from jaxgap.metrics._field import SEGMENT_STEPS, field_sharpness
from jaxgap.metrics._neighbors import Neighbors, nearest_neighbors
from jaxgap.metrics._noisy_copies import (
    NoisyCopies,
    NoisyCopyDetector,
    noisy_copy_fraction,
    noisy_copy_test,
)
from jaxgap.metrics._quality import (
    SampleQuality,
    frechet_distance,
    gaussian_frechet_distance,
    sample_quality,
)
from jaxgap.metrics._sampler import (
    BASELINE,
    QUALITY_K,
    SamplerRun,
    measure_quality,
    quality_classifier,
    sample_and_measure,
)

__all__ = [
    "BASELINE",
    "QUALITY_K",
    "QUANTILES",
    "SEGMENT_STEPS",
    "THRESHOLD",
    "Classifier",
    "Concentration",
    "DomainDiagnostics",
    "FeatureClassifier",
    "Memorization",
    "MemorizedFraction",
    "Neighbors",
    "NoisyCopies",
    "NoisyCopyDetector",
    "SampleQuality",
    "SamplerRun",
    "SetDiagnostics",
    "SetDistances",
    "copy_ratio",
    "distance_to_sets",
    "domain_diagnostics",
    "domain_exits",
    "exit_ranges",
    "field_sharpness",
    "frechet_distance",
    "gaussian_frechet_distance",
    "measure_memorization",
    "measure_quality",
    "memorized_fraction",
    "nearest_neighbors",
    "noisy_copy_fraction",
    "noisy_copy_test",
    "noisy_states",
    "normalized_nn_distance",
    "posterior_concentration",
    "quality_classifier",
    "sample_and_measure",
    "sample_quality",
    "train_feature_classifier",
    "trajectory_domain",
]

"""The paper's three claims. The study's checks of them, with their pre-registered criteria
and controls, are :mod:`jaxgap.study.criteria` and :mod:`jaxgap.study.judgement` (the
version-1 ``Criteria`` and ``evaluate_claims`` of jaxgap 0.1, whose criteria could not fail,
were removed with criteria version 2)."""

from __future__ import annotations

__all__ = ["PAPER_CLAIMS"]

PAPER_CLAIMS = {
    1: "diffusion models memorize in training",
    2: "model error smooths the field",
    3: "diffusion models generalize in inference",
}
"""The paper's three claims (Kaiser and Kollmann, arXiv 2603.13419), by number: 1. the
optimal denoiser of a finite training set memorizes, and a trained network, which
generalizes at the sample level, overfits the denoising objective progressively (the gap
``L_val - L_train`` grows with training and is largest at intermediate noise levels);
2. in an error-prone toy model the optimal field localizes sharply around training points,
and model error suppresses exact recall, giving a smooth, generalizing field; 3. the
training-time gap does not turn into copying at inference, because intermediate states of
sampling trajectories lie far from the noisy training samples the model was trained on."""

"""Post-hoc fitting on validation, the one place it happens: logit adjustment τ, then a
temperature, then the decision thresholds (image, and group when asked for).

Everything starts from the network's own logits per test-time view (no bias), so fitting twice
gives the same τ, temperature and thresholds, and each step sees the probability that test and
deployment compute (:mod:`medcls.evaluation.probability`): τ is chosen on
``mean_v softmax(z_v − τ log π)``, the temperature on that, the image threshold on the tempered
probability, the group threshold on groups' means of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from medcls.evaluation.calibration import Calibration, choose_threshold, fit_calibration
from medcls.evaluation.logit_adjustment import fit_tau
from medcls.evaluation.probability import view_probs
from medcls.evaluation.settings import EvalSettings
from medcls.metrics.groups import group_mean


@dataclass(frozen=True)
class PosthocFit:
    """``tau`` (``None``: the bias was given, not fitted) and how it was set; ``bias`` ``(K,)``
    or ``(N, K)`` (``-τ · log π``); the fitted ``calibration``; ``probs (N, K)``: the model's
    probability on the fitting images, tempered (what a CSV of them shows)."""

    tau: float | None
    how: str
    bias: np.ndarray
    calibration: Calibration
    probs: np.ndarray


def fit_posthoc(
    view_logits: np.ndarray,
    labels: np.ndarray,
    groups: Sequence[str | None] | None,
    logp_prior: np.ndarray,
    positive: int,
    settings: EvalSettings,
    bias: np.ndarray | None = None,
) -> PosthocFit:
    """Fit on validation ``view_logits (N, V, K)`` / ``labels (N,)`` (``groups [N]``: patients,
    lesions, for a group threshold). ``bias``: keep this logit bias instead of fitting τ (a run
    that does not train). ``logp_prior``: log training prior ``(K,)``, or ``(N, K)`` per image."""
    tau, how = None, "kept"
    if bias is None:
        tau, how = fit_tau(settings.logit_adjustment, logp_prior, view_logits, labels)
        bias = -tau * np.asarray(logp_prior, np.float64)
    probs = view_probs(view_logits, bias) if len(labels) else np.zeros((0, len(bias)))
    cal = Calibration()
    if settings.fits_on_validation and len(labels):
        cal = fit_calibration(probs, labels, positive, settings.calibrate, settings.threshold)
    tempered = cal.apply(probs)
    if settings.group_threshold != "argmax" and groups is not None and len(labels):
        cal = with_group_threshold(cal, tempered, labels, groups, positive, settings)
    return PosthocFit(tau, how, bias, cal, tempered)


def with_group_threshold(cal, probs, labels, groups, positive, settings) -> Calibration:
    """``cal`` plus the threshold ``eval.group_threshold`` picks on the groups' mean
    probabilities ``(G, K)`` (binary only)."""
    if probs.shape[1] != 2:
        return cal
    mean, group_labels, _ = group_mean(probs, np.asarray(labels), groups)
    rule = settings.group_threshold
    threshold = choose_threshold(mean[:, positive], group_labels == positive, rule)
    return Calibration(cal.temperature, cal.threshold, cal.rule, threshold, str(rule))

"""Out-of-fold predictions are cross-fitted: fold k's post-hoc choices come from the other folds."""

from __future__ import annotations

import numpy as np
import pytest

from medcls.evaluation.calibration import fit_calibration
from medcls.evaluation.logit_adjustment import choose_tau
from medcls.evaluation.oof import FoldLogits, cross_fit
from medcls.evaluation.probability import view_probs

SETTINGS = {"logit_adjustment": "tuned", "calibrate": "temperature", "threshold": "youden",
            "group_threshold": "argmax"}  # fmt: skip


def fold(seed: int, n: int = 90, counts=(300, 60)) -> FoldLogits:
    """Two-class validation logits of a model biased toward the frequent class, 2 views."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    prior = np.log(np.asarray(counts) / np.sum(counts))
    z = rng.normal(0, 1.5, (n, 2, 2)) + 2.0 * np.eye(2)[labels][:, None, :] + prior
    paths = [f"f{seed}/{i}.png" for i in range(n)]
    return FoldLogits(z, labels, paths, [None] * n, prior, dict(SETTINGS))


def test_each_folds_choices_are_fitted_on_the_other_folds() -> None:
    folds = [fold(0), fold(1, counts=(200, 100)), fold(2, counts=(400, 40))]
    fit = cross_fit(folds, positive=1)
    for k, held in enumerate(folds):
        rest = [f for j, f in enumerate(folds) if j != k]
        z = np.concatenate([f.logits for f in rest])
        y = np.concatenate([f.labels for f in rest])
        prior = np.concatenate([np.tile(f.logp_prior, (len(f.labels), 1)) for f in rest])
        tau = choose_tau(z, y, prior)  # recomputed from the other folds only
        assert fit.fits[k]["tau"] == pytest.approx(tau)
        cal = fit_calibration(view_probs(z, -tau * prior), y, 1, "temperature", "youden")
        assert fit.fits[k]["temperature"] == pytest.approx(cal.temperature)
        assert fit.fits[k]["threshold"] == pytest.approx(cal.threshold)
        rows = fit.fold == k
        want = cal.apply(view_probs(held.logits, -tau * held.logp_prior))
        np.testing.assert_allclose(fit.probs[rows], want, atol=1e-12)
        np.testing.assert_array_equal(fit.preds[rows], (want[:, 1] >= cal.threshold).astype(int))
        # negative control: the fold's own (in-sample) threshold is another number
        own = view_probs(held.logits, -tau * held.logp_prior)
        in_sample = fit_calibration(own, held.labels, 1, "temperature", "youden").threshold
        assert in_sample != pytest.approx(cal.threshold)
    assert fit.paths == [p for f in folds for p in f.paths]


def test_one_fold_cannot_be_cross_fitted() -> None:
    from medcls.errors import DataError

    with pytest.raises(DataError, match="two folds or more"):
        cross_fit([fold(0)], positive=1)

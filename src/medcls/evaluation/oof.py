"""Out-of-fold predictions of a cross-validation, cross-fitted.

Each fold model fits its logit adjustment, temperature and threshold on its own validation
fold, which is also its out-of-fold set: scored there, those choices are in-sample. Cross-fitting
removes that: fold k's post-hoc choices are fitted on the other folds' validation logits
(each image with its own fold's training prior) and applied to fold k's. What a fold keeps for
this is ``val_logits.npz``: the network's own logits per test-time view on its validation fold.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from medcls.data.records import Record
from medcls.errors import DataError
from medcls.evaluation.posthoc import fit_posthoc
from medcls.evaluation.probability import view_probs
from medcls.evaluation.settings import EvalSettings

POSTHOC_KEYS = ("logit_adjustment", "calibrate", "threshold", "group_threshold")


def write_val_logits(
    path: str, records: Sequence[Record], val: dict, logp_prior: np.ndarray, settings: EvalSettings
) -> str:
    """``val["logits"] (N, V, K)``, ``val["labels"] (N,)`` of ``records`` [N], the training
    prior ``logp_prior (K,)`` and the post-hoc settings they were fitted with."""
    np.savez_compressed(
        path,
        logits=np.asarray(val["logits"], np.float32),
        labels=np.asarray(val["labels"], np.int64),
        paths=np.array([r.path for r in records], dtype=str),
        groups=np.array([r.group or "" for r in records], dtype=str),
        logp_prior=np.asarray(logp_prior, np.float64),
        settings=json.dumps({k: getattr(settings, k) for k in POSTHOC_KEYS}),
    )
    return path


@dataclass
class FoldLogits:
    """One fold's validation logits ``(N, V, K)``, labels, paths, groups, prior, settings."""

    logits: np.ndarray
    labels: np.ndarray
    paths: list[str]
    groups: list[str | None]
    logp_prior: np.ndarray
    settings: dict


def read_val_logits(path: str) -> FoldLogits:
    with np.load(path, allow_pickle=False) as f:
        return FoldLogits(
            f["logits"].astype(np.float64),
            f["labels"],
            [str(p) for p in f["paths"]],
            [str(g) or None for g in f["groups"]],
            f["logp_prior"],
            json.loads(str(f["settings"])),
        )


@dataclass
class CrossFit:
    """Every image's out-of-fold probability ``probs (N, K)`` (tempered) and decision
    ``preds (N,)``, with the post-hoc choices fitted on the *other* folds; ``fold (N,)``: the
    position of the fold it came from."""

    probs: np.ndarray
    preds: np.ndarray
    labels: np.ndarray
    paths: list[str]
    groups: list[str | None]
    fold: np.ndarray
    fits: list[dict]


def cross_fit(folds: Sequence[FoldLogits], positive: int) -> CrossFit:
    """Fold k's τ, temperature and thresholds fitted on the other folds (pooled, each image
    with its own fold's prior), applied to fold k. Needs two folds or more."""
    if len(folds) < 2:
        raise DataError("cross-fitting out-of-fold predictions needs two folds or more")
    settings = EvalSettings.from_cfg(folds[0].settings)
    probs, preds, fits = [], [], []
    for k, held in enumerate(folds):
        rest = [f for j, f in enumerate(folds) if j != k]
        fit = fit_posthoc(
            np.concatenate([f.logits for f in rest]),
            np.concatenate([f.labels for f in rest]),
            [g for f in rest for g in f.groups],
            np.concatenate([np.tile(f.logp_prior, (len(f.labels), 1)) for f in rest]),
            positive,
            settings,
        )
        tau = fit.tau or 0.0
        p = fit.calibration.apply(view_probs(held.logits, -tau * held.logp_prior))
        probs.append(p)
        preds.append(fit.calibration.predict(p, positive))
        fits.append({"tau": tau, **asdict(fit.calibration)})
    return CrossFit(
        np.concatenate(probs),
        np.concatenate(preds),
        np.concatenate([f.labels for f in folds]),
        [p for f in folds for p in f.paths],
        [g for f in folds for g in f.groups],
        np.concatenate([np.full(len(f.labels), k) for k, f in enumerate(folds)]),
        fits,
    )

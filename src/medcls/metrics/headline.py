"""The headline metrics: the rows of every printed test table and of ``metrics_summary.csv``,
in one order."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable

HEADLINE_METRICS = (
    "accuracy",
    "balanced_accuracy",
    "f1_macro",
    "precision_macro",
    "recall_macro",
    "f1_weighted",
    "top2_accuracy",
    "top3_accuracy",
    "auroc_macro",
    "sensitivity",
    "specificity",
    "auroc_positive",
    "sensitivity_at_spec*",  # binary: at each eval.specificities
    "pauc_spec*",  # binary: partial AUC above eval.pauc_min_specificity
    "*_at_threshold",  # binary, eval.threshold: at the threshold chosen on validation
    "ece",
    "ece_calibrated",  # eval.calibrate=temperature: after the temperature fitted on validation
    "nll",
    "nll_calibrated",
)


def headline_names(keys: Iterable[str], prefix: str = "test") -> list[str]:
    """The headline metric names among ``keys`` under ``prefix/`` (bare names when ``prefix``
    is empty), in :data:`HEADLINE_METRICS` order; intervals and per-source keys left out."""
    lead = f"{prefix}/" if prefix else ""
    names = [k[len(lead) :] for k in keys if k.startswith(lead)]
    names = [n for n in names if "/" not in n and "_ci_" not in n]
    out: list[str] = []
    for pattern in HEADLINE_METRICS:
        out += sorted(n for n in names if fnmatch.fnmatchcase(n, pattern) and n not in out)
    return out

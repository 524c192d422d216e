"""Frozen-feature probes: scikit-learn heads on a frozen backbone's features (the MedMNIST+
protocol), ``conf/task/knn.yaml`` and ``conf/task/linear_probe.yaml``.

- ``knn``: :class:`~sklearn.neighbors.KNeighborsClassifier` (``k``, ``metric``, ``weights``) on
  the features as they are.
- ``linear_probe``: :class:`~sklearn.linear_model.LogisticRegression` (``C``, ``max_iter``,
  ``class_weight``) on standardised features (:class:`~sklearn.preprocessing.StandardScaler`
  fitted on the training features).

A list-valued option is a grid: every combination is fitted on the training features and the
one with the best validation ``monitor`` kept. No LightningModule and no network are trained
here: :mod:`medcls.workflows.probe` runs them (``medcls-train task=knn``).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from medcls.errors import DataError
from medcls.metrics.classification import compute_metrics

# name → its options and their defaults (the conf/task files set the same)
# A probe's matrices are thin ((N, D) by (D, K), K a handful of classes): BLAS threads gain
# little there and, on a busy machine, lose much (lbfgs on 800 × 512 features, 2 busy cores:
# 31 s with OpenBLAS's 2 threads, 0.4 s with 1), so the heads fit and predict on one thread.
ONE_BLAS_THREAD = {"limits": 1, "user_api": "blas"}

PROBES: dict[str, dict[str, Any]] = {
    "knn": {"k": 20, "metric": "cosine", "weights": "distance"},
    "linear_probe": {"C": 1.0, "max_iter": 1000, "class_weight": "balanced"},
}


def is_probe(task_cfg: Mapping[str, Any] | None) -> bool:
    """Whether ``conf/task`` is a frozen-feature probe (``knn``, ``linear_probe``)."""
    return str((task_cfg or {}).get("name", "classification")) in PROBES


def probe_grid(task_cfg: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every combination of the probe's options (a list-valued option is a grid), each checked.

    ``{"name": "knn", "k": [5, 10]}`` → ``[{"k": 5, "metric": "cosine", …}, {"k": 10, …}]``."""
    name = str(task_cfg["name"])
    unknown = sorted(set(task_cfg) - {"name", *PROBES[name]})
    if unknown:
        raise DataError(
            f"task.{unknown[0]} is not an option of task={name}: {sorted(PROBES[name])}"
        )
    options = {k: task_cfg.get(k, v) for k, v in PROBES[name].items()}
    values = [v if isinstance(v, list | tuple) else [v] for v in options.values()]
    grid = [dict(zip(options, combo, strict=True)) for combo in itertools.product(*values)]
    for candidate in grid:
        _check(name, candidate)
    return grid


def _check(name: str, o: Mapping[str, Any]) -> None:
    """Bad options stop the run before any feature is computed."""
    if name == "knn":
        if not isinstance(o["k"], int) or o["k"] < 1:
            raise DataError(f"task.k={o['k']!r}: a number of neighbours ≥ 1, or a list of them")
        if o["weights"] not in ("distance", "uniform"):
            raise DataError(f"task.weights={o['weights']!r}: use distance or uniform")
    else:
        if not isinstance(o["C"], int | float) or o["C"] <= 0:
            raise DataError(f"task.C={o['C']!r}: an inverse regularisation > 0, or a list of them")
        if o["class_weight"] not in ("balanced", None):
            raise DataError(f"task.class_weight={o['class_weight']!r}: use balanced or null")


def build_head(name: str, options: Mapping[str, Any]) -> ClassifierMixin:
    """An unfitted scikit-learn classifier for one grid point of probe ``name``."""
    if name == "knn":
        return KNeighborsClassifier(
            n_neighbors=int(options["k"]), metric=options["metric"], weights=options["weights"]
        )
    # standardised features: one C means the same across backbones whose feature scales differ
    return make_pipeline(
        StandardScaler(),
        LogisticRegression(
            C=float(options["C"]),
            max_iter=int(options["max_iter"]),
            class_weight=options["class_weight"],
        ),
    )


def probe_proba(head: ClassifierMixin, x: np.ndarray, num_classes: int) -> np.ndarray:
    """``(N, num_classes)`` float64 probabilities of a fitted head on features ``x (N, D)``; a
    class the training features lacked gets probability 0 (scikit-learn leaves its column out)."""
    out = np.zeros((len(x), num_classes), np.float64)
    if len(x):
        with threadpool_limits(**ONE_BLAS_THREAD):
            out[:, np.asarray(head.classes_, dtype=np.int64)] = head.predict_proba(x)
    return out


def describe(name: str, options: Mapping[str, Any]) -> str:
    """``k-NN (k=10, cosine, distance)`` / ``linear probe (C=1, balanced)``, for the printout."""
    if name == "knn":
        return f"k-NN (k={options['k']}, {options['metric']}, {options['weights']} weights)"
    weights = "balanced classes" if options["class_weight"] else "unweighted"
    return f"linear probe (logistic regression, C={options['C']:g}, {weights})"


@dataclass
class ProbeFit:
    """The kept head, its options, its validation metrics (unprefixed; empty without
    validation images) and every grid point's validation ``monitor`` value."""

    head: ClassifierMixin
    options: dict[str, Any]
    val_metrics: dict[str, float] = field(default_factory=dict)
    scores: list[tuple[dict[str, Any], float]] = field(default_factory=list)


def fit_probe(
    name: str,
    grid: Sequence[dict[str, Any]],
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    class_names: Sequence[str],
    positive: int,
    monitor: str = "balanced_accuracy",
    mode: str = "max",
) -> ProbeFit:
    """Fit every grid point on ``train = (x (N, D), y (N,))`` and keep the best by ``monitor``
    on ``val`` (the first of equals); a single point is fitted and scored on ``val`` alone.

    ``monitor``: a :func:`~medcls.metrics.classification.compute_metrics` key, or ``loss``
    (the mean negative log-likelihood)."""
    x_val, y_val = val
    if len(grid) > 1 and not len(y_val):
        raise DataError(
            f"task={name} with a grid ({len(grid)} settings) chooses on validation, and this "
            "split has none: give one value per option, or a validation part (data.val_fraction)."
        )
    fits = [ProbeFit(_fitted(name, o, *train), dict(o)) for o in grid]
    for fit in fits if len(y_val) else ():
        fit.val_metrics = _score(fit.head, x_val, y_val, class_names, positive)
        if monitor not in fit.val_metrics:
            raise DataError(f"monitor=val/{monitor} is not a probe's validation metric")
    values = np.array([f.val_metrics.get(monitor, np.nan) for f in fits], np.float64)
    sign = 1.0 if mode == "max" else -1.0
    # NaN (e.g. an AUROC a class's absence leaves undefined) never wins
    pick = int(np.argmax(np.where(np.isnan(values), -np.inf, sign * values)))
    best = fits[pick]
    best.scores = [(f.options, float(v)) for f, v in zip(fits, values, strict=True)]
    return best


def _fitted(name: str, options: Mapping[str, Any], x: np.ndarray, y: np.ndarray) -> ClassifierMixin:
    """One grid point fitted on ``x (N, D)``, ``y (N,)``."""
    if name == "knn" and int(options["k"]) > len(y):
        raise DataError(
            f"task.k={options['k']} neighbours, but the training partition has {len(y)} images"
        )
    with threadpool_limits(**ONE_BLAS_THREAD):
        return build_head(name, options).fit(x, y)


def _score(
    head: ClassifierMixin, x: np.ndarray, y: np.ndarray, class_names: Sequence[str], positive: int
) -> dict[str, float]:
    """Validation metrics of a fitted head (unprefixed), ``loss`` = the mean NLL."""
    probs = probe_proba(head, x, len(class_names))
    metrics, _ = compute_metrics(probs, y, class_names, positive)
    metrics["loss"] = float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, None)).mean())
    return metrics

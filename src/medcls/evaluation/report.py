"""One test's predictions → its metrics and files.

Metrics (keys ``test/<metric>``): the full set of :class:`~medcls.metrics.ClassificationMetrics`;
the top-label ECE; for two classes the sensitivity at fixed specificities and the partial AUC;
for every headline metric a bootstrap interval (``<metric>_ci_low`` / ``_ci_high``) that
resamples whole groups (patients, lesions). The same again at group level (``group/``: a group's
images' mean softmax), at CT series level (``series/``, when a patient has several) and per
source of a combined dataset (``test/<source>/<metric>``).

Files: predictions, per-class tables, confusion matrix, scikit-learn's classification report,
the headline metrics with their intervals (``metrics_summary.csv``), ROC / precision–recall /
reliability curves, per-source table, per-subgroup table and forest plot (``eval.subgroups``),
skipped images.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from medcls.data.records import Record
from medcls.evaluation.calibration import Calibration, calibration_note
from medcls.evaluation.classification_report import write_classification_report
from medcls.evaluation.curves import write_curves, write_reliability
from medcls.evaluation.files import (
    plot_confusion_matrix,
    write_per_class,
    write_per_class_markdown,
    write_predictions,
    write_skipped,
)
from medcls.evaluation.predictions import Predictions
from medcls.evaluation.settings import EvalSettings
from medcls.evaluation.subgroups import subgroup_metrics, write_subgroup_files
from medcls.metrics.bootstrap import bootstrap_intervals, group_index
from medcls.metrics.classification import compute_metrics
from medcls.metrics.groups import group_mean
from medcls.metrics.headline import headline_names
from medcls.metrics.sources import source_metrics, write_source_table
from medcls.metrics.weighted import confusion, score_draws

NONE = Calibration()  # nothing fitted: the argmax of the softmax as it is
LEVELS = ("test", "series", "group")  # image (slice), CT series, group (patient, lesion)


@dataclass
class Evaluation:
    """``metrics``: flat ``{"test/auroc_macro": 0.91, "test/auroc_macro_ci_low": ...}``;
    ``files``: every file written (for MLflow)."""

    metrics: dict[str, float] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)


def headline_metrics(
    pred: Predictions,
    settings: EvalSettings,
    groups=None,
    calibration: Calibration = NONE,
) -> dict[str, float]:
    """Point estimates of :func:`~medcls.metrics.weighted.score_draws`' metrics and, with
    ``settings.n_boot``, their intervals (whole ``groups`` resampled; ``None``: images).

    With a fitted ``calibration``: ``ece_calibrated`` / ``nll_calibrated`` after its
    temperature, and ``<metric>_at_threshold`` at its threshold (on the calibrated
    probabilities), from the same draws as the rest.
    """
    probs, labels = np.asarray(pred.probs, np.float64), np.asarray(pred.labels)
    calibrated = calibration.apply(probs)
    max_fpr = 1 - settings.pauc_min_specificity if settings.pauc_min_specificity else None
    args = (pred.positive, settings.specificities, max_fpr, settings.calibration_bins)
    threshold, tempered = calibration.threshold, calibration.temperature is not None

    def score(weights: np.ndarray) -> dict[str, np.ndarray]:
        out = score_draws(probs, labels, weights, *args, None if tempered else threshold)
        if tempered:
            after = score_draws(calibrated, labels, weights, *args, threshold)
            out["ece_calibrated"], out["nll_calibrated"] = after["ece"], after["nll"]
            out.update({k: v for k, v in after.items() if k.endswith("_at_threshold")})
        return out

    out = {k: float(v[0]) for k, v in score(np.ones((1, len(labels)))).items()}
    if settings.n_boot > 0 and len(labels):
        intervals = bootstrap_intervals(
            score, group_index(groups, len(labels)), settings.n_boot, settings.level, settings.seed
        )
        for name, (lo, hi) in intervals.items():
            out[f"{name}_ci_low"], out[f"{name}_ci_high"] = lo, hi
    if calibration.temperature is not None:
        out["temperature"] = calibration.temperature
    if threshold is not None and probs.shape[1] == 2:
        out["decision_threshold"] = threshold
    return out


def _prefixed(prefix: str, values: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}/{k}": v for k, v in values.items()}


def metric_set(
    pred: Predictions,
    settings: EvalSettings,
    base: dict[str, float] | None = None,
    calibration: Calibration = NONE,
) -> tuple[dict[str, float], np.ndarray]:
    """Every metric of ``pred`` (unprefixed) and its ``(K, K)`` confusion matrix. ``base``: the
    :class:`ClassificationMetrics` values already computed (the test step's), else computed;
    they score the argmax of the uncalibrated softmax, as every run does, so runs compare."""
    if base is None:
        values, cm = compute_metrics(pred.probs, pred.labels, pred.class_names, pred.positive)
        cm = cm.numpy()
    else:  # the test step scored these already: only the confusion matrix is left to count
        values, k = dict(base), len(pred.class_names)
        labels = np.asarray(pred.labels)
        cm = confusion(labels, np.asarray(pred.probs).argmax(1), k, np.ones((1, len(labels))))[0]
    extra = headline_metrics(pred, settings, pred.groups, calibration)
    # ClassificationMetrics' values stay as computed; the engine adds ECE, operating points, CIs
    values.update({k: v for k, v in extra.items() if k not in values})
    return values, cm


def group_level(
    pred: Predictions, settings: EvalSettings, calibration: Calibration = NONE, level: str = "group"
) -> dict[str, float]:
    """``<level>/<metric>``: the mean of each unit's images' probabilities (the model's,
    tempered: the order medcls-predict uses) scored as one case, decided by the group threshold
    when one was fitted on validation group means (never the image threshold).

    ``level="group"``: units are the records' groups (patients, lesions; intervals resample
    them). ``"series"``: units are the CT series of each patient (record attribute ``series``,
    from ``data=dicom`` / ``data=nifti``); intervals still resample whole patients, whose series
    are not independent. Empty when no image has such a unit, and the series level also when
    it is the group level again (one series per patient)."""
    if level == "series":
        keys = [r.attributes.get("series") for r in pred.records]
        if len(set(keys)) == len(set(pred.groups)):
            return {}
    else:
        keys = pred.groups
    if not any(k is not None for k in keys):
        return {}
    calibrated = calibration.apply(np.asarray(pred.probs, np.float64))
    gp, gl, ids = group_mean(calibrated, np.asarray(pred.labels), keys)
    parent = {k: r.group for k, r in zip(keys, pred.records, strict=True)}
    units = [
        Record("", int(y), parent.get(u) if level == "series" else None)
        for u, y in zip(ids, gl, strict=True)
    ]
    grouped = Predictions(gp, gl, units, pred.class_names, pred.positive)
    values, _ = metric_set(grouped, settings, calibration=calibration.for_groups())
    return _prefixed(level, values)


def write_summary(path: str, metrics: dict[str, float]) -> str:
    """``metrics_summary.csv``: level (test, series, group), metric, value, ci_low, ci_high."""
    rows = []
    for prefix in LEVELS:
        for name in headline_names(metrics, prefix):
            key = f"{prefix}/{name}"
            rows.append(
                {
                    "level": prefix,
                    "metric": name,
                    "value": metrics[key],
                    "ci_low": metrics.get(f"{key}_ci_low", np.nan),
                    "ci_high": metrics.get(f"{key}_ci_high", np.nan),
                }
            )
    pd.DataFrame(rows).to_csv(path, index=False, float_format="%.6f")
    return path


def evaluate(
    pred: Predictions,
    settings: EvalSettings,
    out_dir: str,
    title: str,
    skipped: Sequence[tuple[str, str]] = (),
    base: dict[str, float] | None = None,
    calibration: Calibration = NONE,
) -> Evaluation:
    """Score ``pred`` (``test/``, ``group/``, per source) and write the report's files in
    ``out_dir``. ``base``: the test step's :class:`ClassificationMetrics` values, if any;
    ``calibration``: the temperature and threshold fitted on validation (medcls-train) or
    stored in the checkpoint (medcls-eval), applied unchanged."""
    values, cm = metric_set(pred, settings, base, calibration)
    metrics = _prefixed("test", values)
    metrics.update(group_level(pred, settings, calibration, "series"))
    metrics.update(group_level(pred, settings, calibration))
    sources = [r.source for r in pred.records]
    by_source = source_metrics(pred.probs, pred.labels, sources, pred.class_names, pred.positive)
    metrics.update(by_source)
    subgroups = None
    if settings.subgroups:
        subgroups, flat = subgroup_metrics(
            pred, settings, lambda sub: headline_metrics(sub, settings, sub.groups)
        )
        metrics.update(flat)

    os.makedirs(out_dir, exist_ok=True)
    names = list(pred.class_names)
    counts = np.bincount(pred.labels, minlength=len(names))
    # the file holds the model's probability as deployed (tempered) and its decision, which
    # medcls-predict reproduces for the same images
    shown = calibration.apply(np.asarray(pred.probs, np.float64))
    files = [
        write_predictions(
            os.path.join(out_dir, "test_predictions.csv"),
            pred.records,
            shown,
            pred.labels,
            names,
            calibration.predict(shown, pred.positive),
        ),
        write_per_class(os.path.join(out_dir, "per_class_metrics.csv"), values, names, counts),
        write_per_class_markdown(
            os.path.join(out_dir, "per_class_metrics.md"), values, names, counts, title
        ),
        plot_confusion_matrix(os.path.join(out_dir, "confusion_matrix.png"), cm, names, title),
        write_skipped(os.path.join(out_dir, "skipped_images.csv"), skipped),
        *write_classification_report(out_dir, pred.probs, pred.labels, names),
        write_summary(os.path.join(out_dir, "metrics_summary.csv"), metrics),
    ]
    if by_source:
        files.append(write_source_table(os.path.join(out_dir, "per_source_metrics.csv"), metrics))
    if subgroups is not None:
        files += write_subgroup_files(out_dir, subgroups, settings.subgroup_min_images, title)
    if settings.curves and len(pred.labels):
        positive = pred.positive if len(names) == 2 else None
        files += write_curves(
            out_dir,
            np.asarray(pred.probs),
            np.asarray(pred.labels),
            names,
            positive,
            values["ece"],
            settings.calibration_bins,
            title,
        )
        if calibration.temperature is not None:  # the reliability after the temperature
            files += write_reliability(
                out_dir,
                calibration.apply(np.asarray(pred.probs, np.float64)),
                np.asarray(pred.labels),
                values["ece_calibrated"],
                settings.calibration_bins,
                f"{title} · T={calibration.temperature:.2f}",
                "reliability_calibrated",
            )
    return Evaluation(metrics, [f for f in files if f])


def source_summary(metrics: dict[str, float]) -> dict[str, str]:
    """The printed summary's ``balanced accuracy by source`` line (nothing with one source)."""
    by_source = {
        k.split("/")[1]: v
        for k, v in metrics.items()
        if k.startswith("test/") and k.count("/") == 2 and k.endswith("/balanced_accuracy")
    }
    if not by_source:
        return {}
    return {"balanced accuracy by source": " · ".join(f"{n} {v:.4f}" for n, v in by_source.items())}


def level_summary(metrics: dict[str, float]) -> dict[str, str]:
    """The printed summary's line for the series and group levels (mean softmax per unit):
    their balanced accuracy and AUROC; nothing when the images have no groups."""
    names = {"series": "per series", "group": "per group (patient, lesion)"}
    out = {}
    for level, title in names.items():
        if f"{level}/balanced_accuracy" in metrics:
            auroc = metrics.get(f"{level}/auroc_positive", metrics.get(f"{level}/auroc_macro"))
            value = f"balanced accuracy {metrics[f'{level}/balanced_accuracy']:.4f}"
            out[title] = value + (f" · AUROC {auroc:.4f}" if auroc is not None else "")
    return out


def calibration_summary(metrics: dict[str, float]) -> dict[str, str]:
    """The printed summary's line for what was fitted on validation (nothing when nothing was)."""
    fitted = Calibration(
        metrics.get("test/temperature"), metrics.get("test/decision_threshold"), ""
    )
    nothing = fitted.temperature is None and fitted.threshold is None
    return {} if nothing else {"fitted on validation": calibration_note(fitted)}

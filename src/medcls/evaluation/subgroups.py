"""For whom: balanced accuracy and AUROC per subgroup (sex, age group, body site …), with
intervals, and the largest gap between subgroups (``eval.subgroups``).

A subgroup's values come from its images' record metadata (``data.metadata_columns``);
``age_group`` is derived from ``age`` (HAM10000) or ``age_approx`` (ISIC) with
``eval.age_bins``. Images without a value form the subgroup ``unknown``, listed but left out
of the gap, as are subgroups smaller than ``eval.subgroup_min_images``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from medcls.data.records import Record
from medcls.errors import DataError
from medcls.evaluation.predictions import Predictions
from medcls.evaluation.settings import EvalSettings
from medcls.metrics.bootstrap import bootstrap_intervals, group_index
from medcls.metrics.classification import auroc_note, metric_safe
from medcls.metrics.weighted import score_draws

AGE_COLUMNS = ("age", "age_approx")
UNKNOWN = "unknown"


def age_group(age: str | None, bins: Sequence[float]) -> str | None:
    """``"<30"``, ``"30–45"`` (30 ≤ age < 45) … ``"≥75"`` for ``bins = (30, 45, 60, 75)``."""
    try:
        value = float(age)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if value != value:  # NaN
        return None
    edges = sorted(float(b) for b in bins)
    if value < edges[0]:
        return f"<{edges[0]:g}"
    for lo, hi in zip(edges, edges[1:], strict=False):
        if lo <= value < hi:
            return f"{lo:g}–{hi:g}"
    return f"≥{edges[-1]:g}"


def subgroup_of(record: Record, attribute: str, bins: Sequence[float]) -> str | None:
    attrs = record.attributes
    if attribute == "age_group":
        return age_group(next((attrs[c] for c in AGE_COLUMNS if c in attrs), None), bins)
    return attrs.get(attribute)


def available_attributes(records: Sequence[Record]) -> set[str]:
    names = {k for r in records for k, _ in r.meta}
    return names | ({"age_group"} if names & set(AGE_COLUMNS) else set())


def check_subgroup_attributes(
    records: Sequence[Record], attributes: Sequence[str], data_cfg: Mapping | None = None
) -> None:
    """Before any training or scoring: every ``eval.subgroups`` attribute is carried by some
    record of the partition that will be scored.

    ``records``: that partition's records (``dm.records_of(<scored partition>)``), not the
    whole dataset: an official test list without metadata would otherwise pass on the training
    images' attributes and be scored as one subgroup "unknown". ``data_cfg`` (``cfg.data``)
    names the partition (``test_partition``) and the metadata files in the message. An empty
    partition is not scored, so it passes.
    """
    have = available_attributes(records)
    missing = [name for name in attributes if name not in have]
    if not records or not missing:
        return
    cfg = data_cfg or {}
    sources = cfg.get("sources") or {}
    entries = [("data", cfg)] + [
        (f"data.sources.{k}", s)
        for k, s in (
            sources.items()
            if isinstance(sources, Mapping)
            else ((s.get("name"), s) for s in sources)
        )
    ]
    files = [f"{p}.metadata_csv={c['metadata_csv']}" for p, c in entries if c.get("metadata_csv")]
    hint = "".join(  # an official test list looked up in the training metadata only
        f"; the images of the official test list {p}.test_csv={c['test_csv']} take theirs from "
        f"{p}.test_metadata_csv, which is not set: set {p}.test_metadata_csv=<the test set's "
        "metadata CSV>"
        for p, c in entries
        if c.get("test_csv") and not c.get("test_metadata_csv")
    )
    raise DataError(
        f"eval.subgroups names {missing[0]!r}, which no image of the "
        f"{cfg.get('test_partition') or 'test'} partition ({len(records)} images, the ones "
        f"scored) carries (their metadata: {sorted(have) or 'none'}). Subgroup attributes come "
        f"from the data.metadata_columns of the metadata file "
        f"({', '.join(files) or 'none is set'}){hint}. Otherwise use one of the attributes "
        "these images carry, or list the CSV column in data.metadata_columns."
    )


def _ordered(values: list[str]) -> list[str]:
    """Subgroup order: ages by their lower bound, others alphabetically, ``unknown`` last."""

    def key(v: str):
        if v == UNKNOWN:
            return (2, 0.0, v)
        digits = v.lstrip("<≥").split("–")[0]
        try:
            return (0, float(digits) - (0.5 if v.startswith("<") else 0), v)
        except ValueError:
            return (1, 0.0, v)

    return sorted(set(values), key=key)


def subgroup_metrics(
    pred: Predictions,
    settings: EvalSettings,
    score_subset: Callable[[Predictions], dict[str, float]],
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Per attribute of ``settings.subgroups`` and subgroup: images, groups, balanced accuracy
    and AUROC (the positive class's for two classes, else macro) with intervals, and ``note``:
    why the AUROC is NaN (a subgroup with images of one class only) or averages fewer classes.

    ``score_subset(pred)`` returns a subset's headline metrics with intervals (the report's
    :func:`~medcls.evaluation.report.headline_metrics`). Returns the table and the flat metrics
    ``subgroup/<attribute>/<subgroup>/<metric>`` and ``subgroup/<attribute>/gap_<metric>``
    with ``gap_<metric>_ci_low`` / ``_ci_high`` (:func:`gap_intervals`). The table's
    ``attrs["gaps"]`` holds the gaps with their intervals (as records), for
    :func:`write_subgroup_files`.
    """
    rows, flat = [], {}
    for attribute in settings.subgroups:
        values = subgroup_values(pred, attribute, settings.age_bins)
        for value in _ordered(list(values)):
            row = _subgroup_row(pred, np.flatnonzero(values == value), score_subset)
            rows.append({"attribute": attribute, "subgroup": value, **row})
            stem = f"subgroup/{metric_safe(attribute)}/{metric_safe(value)}"
            flat.update({f"{stem}/{k}": float(v) for k, v in row.items() if k != "note"})
    table = pd.DataFrame(rows)
    gaps = gap_intervals(pred, settings, largest_gaps(table, settings.subgroup_min_images))
    # records, not a frame: pandas compares attrs when tables are concatenated
    table.attrs["gaps"] = gaps.to_dict("records")
    for gap in gaps.itertuples():
        stem = f"subgroup/{metric_safe(gap.attribute)}/gap_{gap.metric}"
        flat[stem] = float(gap.gap)
        flat[f"{stem}_ci_low"] = float(gap.gap_ci_low)
        flat[f"{stem}_ci_high"] = float(gap.gap_ci_high)
    return table, flat


def subgroup_values(pred: Predictions, attribute: str, bins: Sequence[float]) -> np.ndarray:
    """``(N,)`` object array: each image's subgroup of ``attribute`` (``unknown`` if none)."""
    return np.array([subgroup_of(r, attribute, bins) or UNKNOWN for r in pred.records], object)


def _subgroup_row(
    pred: Predictions, keep: np.ndarray, score_subset: Callable[[Predictions], dict[str, float]]
) -> dict:
    """One table row (without attribute and subgroup) of the images ``keep (n,)``."""
    sub = _subset(pred, keep)
    m = score_subset(sub)
    row: dict = {
        "images": len(keep),
        "groups": len({r.group or f"\0{i}" for i, r in enumerate(sub.records)}),
    }
    for name, key in (("balanced_accuracy", "balanced_accuracy"), ("auroc", _auc_key(pred))):
        for suffix in ("", "_ci_low", "_ci_high"):
            row[f"{name}{suffix}"] = m.get(f"{key}{suffix}", np.nan)
    support = np.bincount(np.asarray(sub.labels), minlength=len(pred.class_names))
    row["note"] = auroc_note(support.tolist(), pred.class_names)
    return row


def _subset(pred: Predictions, keep: np.ndarray) -> Predictions:
    records = [pred.records[i] for i in keep]
    return Predictions(
        pred.probs[keep], pred.labels[keep], records, pred.class_names, pred.positive
    )


def _auc_key(pred: Predictions) -> str:
    """The AUROC a subgroup row reports: the positive class's (two classes), else macro."""
    return "auroc_positive" if len(pred.class_names) == 2 else "auroc_macro"


GAP_COLUMNS = (
    "attribute", "metric", "best", "best_value", "worst", "worst_value", "gap",
    "gap_ci_low", "gap_ci_high",
)  # fmt: skip


def largest_gaps(table: pd.DataFrame, min_images: int) -> pd.DataFrame:
    """Per attribute and metric: the best and the worst subgroup (of at least ``min_images``
    images, ``unknown`` and subgroups where the metric is NaN left out) and their
    difference ``gap``."""
    out = []
    for attribute, part in table.groupby("attribute", sort=False):
        part = part[(part["subgroup"] != UNKNOWN) & (part["images"] >= min_images)]
        for name in ("balanced_accuracy", "auroc"):
            ok = part.dropna(subset=[name])
            if len(ok) < 2:
                continue
            best, worst = ok.loc[ok[name].idxmax()], ok.loc[ok[name].idxmin()]
            out.append(
                {
                    "attribute": attribute,
                    "metric": name,
                    "best": best["subgroup"],
                    "best_value": best[name],
                    "worst": worst["subgroup"],
                    "worst_value": worst[name],
                    "gap": best[name] - worst[name],
                }
            )
    return pd.DataFrame(out, columns=list(GAP_COLUMNS[:-2]))


def gap_intervals(pred: Predictions, settings: EvalSettings, gaps: pd.DataFrame) -> pd.DataFrame:
    """``gaps`` (:func:`largest_gaps`) with ``gap_ci_low`` / ``gap_ci_high``: the percentile
    interval of ``metric(best) - metric(worst)`` over ``settings.n_boot`` bootstrap draws
    that resample whole groups (patients, lesions: ``pred``'s record groups; images without
    one are their own) of all of ``pred``'s images, so both subgroups of a draw come from the
    same patients (a patient in both counts in both). The two subgroups are the ones named,
    chosen on these same images: the interval is of their difference, not of a re-chosen
    largest gap (which would sit above the true spread by construction). Metrics as the
    table's: :func:`~medcls.metrics.weighted.score_draws` of the argmax of ``pred.probs``.
    NaN without draws (``n_boot=0``) or where a draw never has both subgroups' metric.
    """
    gaps = gaps.reindex(columns=list(GAP_COLUMNS))
    if gaps.empty or settings.n_boot <= 0:
        return gaps
    probs, labels = np.asarray(pred.probs, np.float64), np.asarray(pred.labels)
    members = {
        (a, v): np.flatnonzero(subgroup_values(pred, a, settings.age_bins) == v)
        for a in gaps["attribute"].unique()
        for v in set(gaps.loc[gaps["attribute"] == a, ["best", "worst"]].to_numpy().ravel())
    }
    key = {"balanced_accuracy": "balanced_accuracy", "auroc": _auc_key(pred)}

    def score(weights: np.ndarray) -> dict[str, np.ndarray]:  # (B, N) → (B,) per gap
        scored = {
            sub: score_draws(probs[idx], labels[idx], weights[:, idx], pred.positive)
            for sub, idx in members.items()
        }
        return {
            str(i): scored[(g.attribute, g.best)][key[g.metric]]
            - scored[(g.attribute, g.worst)][key[g.metric]]
            for i, g in enumerate(gaps.itertuples())
        }

    groups = group_index(pred.groups, len(labels))
    ci = bootstrap_intervals(score, groups, settings.n_boot, settings.level, settings.seed)
    gaps["gap_ci_low"] = [ci[str(i)][0] for i in range(len(gaps))]
    gaps["gap_ci_high"] = [ci[str(i)][1] for i in range(len(gaps))]
    return gaps


def write_subgroup_files(
    out_dir: str,
    table: pd.DataFrame,
    min_images: int,
    title: str,
    gaps: pd.DataFrame | None = None,
) -> list[str]:
    """``subgroups.csv`` (the table), ``subgroup_gaps.csv`` (``gaps``, by default the ones
    :func:`subgroup_metrics` left in ``table.attrs["gaps"]``, with their intervals; else
    :func:`largest_gaps` without intervals) and ``subgroups.png`` (a forest plot of both
    metrics with their intervals). NaN is written as an empty cell."""
    os.makedirs(out_dir, exist_ok=True)
    paths = [os.path.join(out_dir, "subgroups.csv"), os.path.join(out_dir, "subgroup_gaps.csv")]
    if gaps is None and "gaps" in table.attrs:
        gaps = pd.DataFrame(table.attrs["gaps"], columns=list(GAP_COLUMNS))
    if gaps is None:
        gaps = largest_gaps(table, min_images).reindex(columns=list(GAP_COLUMNS))
    table.to_csv(paths[0], index=False, float_format="%.6f")
    gaps.to_csv(paths[1], index=False, float_format="%.6f")
    paths.append(_forest_plot(os.path.join(out_dir, "subgroups.png"), table, title))
    return paths


def _forest_plot(path: str, table: pd.DataFrame, title: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [
        f"{a}: {s} (n={n})"
        for a, s, n in zip(table["attribute"], table["subgroup"], table["images"], strict=True)
    ]
    y = np.arange(len(table))[::-1]
    fig, axes = plt.subplots(1, 2, figsize=(8.5, 1.2 + 0.32 * len(table)), dpi=120, sharey=True)
    for ax, name in zip(axes, ("balanced_accuracy", "auroc"), strict=True):
        value = table[name].to_numpy(float)
        lo, hi = table[f"{name}_ci_low"].to_numpy(float), table[f"{name}_ci_high"].to_numpy(float)
        err = np.vstack([np.nan_to_num(value - lo), np.nan_to_num(hi - value)])
        ax.errorbar(value, y, xerr=err, fmt="o", color="black", ms=4, capsize=2, lw=1)
        ax.set_xlim(0, 1)
        ax.set_xlabel(name.replace("_", " "))
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, labels, fontsize=7)
    fig.suptitle(f"subgroups · {title}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path

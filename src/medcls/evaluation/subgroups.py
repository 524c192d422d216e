"""For whom: balanced accuracy and AUROC per subgroup (sex, age group, body site …), with
intervals, and the largest gap between subgroups (``eval.subgroups``).

A subgroup's values come from its images' record metadata (``data.metadata_columns``);
``age_group`` is derived from ``age`` (HAM10000) or ``age_approx`` (ISIC) with
``eval.age_bins``. Images without a value form the subgroup ``unknown``, listed but left out
of the gap, as are subgroups smaller than ``eval.subgroup_min_images``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from medcls.data.records import DataError, Record
from medcls.evaluation.predictions import Predictions
from medcls.evaluation.settings import EvalSettings
from medcls.metrics.classification import metric_safe

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


def check_subgroup_attributes(records: Sequence[Record], attributes: Sequence[str]) -> None:
    """Before any training: every ``eval.subgroups`` attribute is carried by some record."""
    have = available_attributes(records)
    for name in attributes:
        if name not in have:
            raise DataError(
                f"eval.subgroups names {name!r}, which no image of this dataset carries (its "
                f"metadata: {sorted(have) or 'none'}). Use one of those, or list the CSV column "
                "in data.metadata_columns."
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
    and AUROC (the positive class's for two classes, else macro) with intervals.

    ``score_subset(pred)`` returns a subset's headline metrics with intervals (the report's
    :func:`~medcls.evaluation.report.headline_metrics`). Returns the table and the flat metrics
    ``subgroup/<attribute>/<subgroup>/<metric>`` and ``subgroup/<attribute>/gap_<metric>``.
    """
    auc = "auroc_positive" if len(pred.class_names) == 2 else "auroc_macro"
    rows, flat = [], {}
    for attribute in settings.subgroups:
        values = [subgroup_of(r, attribute, settings.age_bins) or UNKNOWN for r in pred.records]
        arr = np.array(values, dtype=object)
        for value in _ordered(values):
            keep = np.flatnonzero(arr == value)
            sub = Predictions(
                pred.probs[keep],
                pred.labels[keep],
                [pred.records[i] for i in keep],
                pred.class_names,
                pred.positive,
            )
            m = score_subset(sub)
            row = {
                "attribute": attribute,
                "subgroup": value,
                "images": len(keep),
                "groups": len({r.group or f"\0{i}" for i, r in enumerate(sub.records)}),
            }
            for name, key in (("balanced_accuracy", "balanced_accuracy"), ("auroc", auc)):
                for suffix in ("", "_ci_low", "_ci_high"):
                    row[f"{name}{suffix}"] = m.get(f"{key}{suffix}", np.nan)
            rows.append(row)
            stem = f"subgroup/{metric_safe(attribute)}/{metric_safe(value)}"
            flat.update(
                {
                    f"{stem}/{k}": float(v)
                    for k, v in row.items()
                    if k not in ("attribute", "subgroup")
                }
            )
    table = pd.DataFrame(rows)
    for gap in largest_gaps(table, settings.subgroup_min_images).itertuples():
        flat[f"subgroup/{metric_safe(gap.attribute)}/gap_{gap.metric}"] = float(gap.gap)
    return table, flat


def largest_gaps(table: pd.DataFrame, min_images: int) -> pd.DataFrame:
    """Per attribute and metric: the best and the worst subgroup (of at least ``min_images``
    images, ``unknown`` left out) and their difference."""
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
    return pd.DataFrame(out)


def write_subgroup_files(
    out_dir: str, table: pd.DataFrame, min_images: int, title: str
) -> list[str]:
    """``subgroups.csv`` (the table), ``subgroup_gaps.csv`` and ``subgroups.png`` (a forest
    plot of both metrics with their intervals)."""
    os.makedirs(out_dir, exist_ok=True)
    paths = [os.path.join(out_dir, "subgroups.csv"), os.path.join(out_dir, "subgroup_gaps.csv")]
    table.to_csv(paths[0], index=False, float_format="%.6f")
    largest_gaps(table, min_images).to_csv(paths[1], index=False, float_format="%.6f")
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

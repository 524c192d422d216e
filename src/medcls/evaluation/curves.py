"""ROC, precision–recall and reliability curves as CSV and PNG artifacts (scikit-learn computes
the curves; this file only lays them out and draws them)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_curve, roc_curve

from medcls.metrics.weighted import confidence_bins


def _curve_classes(labels: np.ndarray, class_names: Sequence[str], positive: int | None):
    """The classes a curve is drawn for: the positive one (two classes), else every class with
    images and without all of them."""
    if positive is not None and len(class_names) == 2:
        return [positive]
    return [c for c in range(len(class_names)) if 0 < (labels == c).sum() < len(labels)]


def curve_tables(
    probs: np.ndarray, labels: np.ndarray, class_names: Sequence[str], positive: int | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Long tables ``class, fpr, tpr, threshold`` and ``class, recall, precision, threshold``:
    one-vs-rest per class, plus ``macro`` (mean tpr over a common fpr grid, mean precision over
    a common recall grid) when there are more than two classes. Binary: the positive class.
    Shapes: ``probs (N, K)``, ``labels (N,)``."""
    rocs, prs = [], []
    classes = _curve_classes(labels, class_names, positive)
    grid = np.linspace(0, 1, 201)
    mean_tpr, mean_prec = [], []
    for c in classes:
        y, s = labels == c, probs[:, c]
        fpr, tpr, thr = roc_curve(y, s)
        rocs.append(
            pd.DataFrame({"class": class_names[c], "fpr": fpr, "tpr": tpr, "threshold": thr})
        )
        prec, rec, pthr = precision_recall_curve(y, s)
        prs.append(
            pd.DataFrame(
                {
                    "class": class_names[c],
                    "recall": rec,
                    "precision": prec,
                    "threshold": [*pthr, np.nan],
                }
            )
        )
        mean_tpr.append(np.interp(grid, fpr, tpr))
        mean_prec.append(np.interp(grid, rec[::-1], prec[::-1]))
    if len(classes) > 1 and len(class_names) > 2:
        rocs.append(pd.DataFrame({"class": "macro", "fpr": grid, "tpr": np.mean(mean_tpr, 0)}))
        prs.append(
            pd.DataFrame({"class": "macro", "recall": grid, "precision": np.mean(mean_prec, 0)})
        )
    empty_roc = pd.DataFrame(columns=["class", "fpr", "tpr", "threshold"])
    empty_pr = pd.DataFrame(columns=["class", "recall", "precision", "threshold"])
    return (
        pd.concat(rocs, ignore_index=True) if rocs else empty_roc,
        pd.concat(prs, ignore_index=True) if prs else empty_pr,
    )


def reliability_table(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> pd.DataFrame:
    """Top-label reliability: per non-empty confidence bin, its range, image count, mean
    confidence and accuracy. The bins are those of the ECE (:func:`confidence_bins`), so the
    diagram shows the gaps the ECE adds up; away from the bin edges the points are
    scikit-learn's ``calibration_curve(correct, confidence, n_bins, strategy="uniform")``."""
    conf = probs.max(1)
    correct = (probs.argmax(1) == labels).astype(np.float64)
    bins = confidence_bins(conf, n_bins)
    counts = np.bincount(bins, minlength=n_bins)
    used = np.flatnonzero(counts)
    return pd.DataFrame(
        {
            "bin_low": used / n_bins,
            "bin_high": (used + 1) / n_bins,
            "images": counts[used],
            "confidence": np.bincount(bins, conf, n_bins)[used] / counts[used],
            "accuracy": np.bincount(bins, correct, n_bins)[used] / counts[used],
        }
    )


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(path: str, table: pd.DataFrame, x: str, y: str, title: str, diagonal: bool) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.2, 4.0), dpi=120)
    for name, part in table.groupby("class", sort=False):
        style = {"color": "black", "lw": 2} if name == "macro" else {"lw": 1}
        ax.plot(part[x], part[y], label=str(name), **style)
    if diagonal:
        ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=1)
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel=x, ylabel=y)
    ax.set_title(title, fontsize=9)
    if len(table):
        ax.legend(fontsize=7, loc="lower right" if diagonal else "lower left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_reliability(path: str, table: pd.DataFrame, ece: float, title: str) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.2, 4.0), dpi=120)
    width = table["bin_high"] - table["bin_low"]
    ax.bar(table["bin_low"], table["accuracy"], width=width, align="edge", alpha=0.7,
           edgecolor="black", label="accuracy")  # fmt: skip
    ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=1, label="perfect calibration")
    ax.plot(table["confidence"], table["accuracy"], "o", color="black", ms=3)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (top class)", ylabel="accuracy")
    ax.set_title(f"{title}\nECE {ece:.3f}", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_curves(
    out_dir: str,
    probs: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    positive: int | None,
    ece: float,
    n_bins: int = 15,
    title: str = "",
) -> list[str]:
    """``roc_curves.{csv,png}``, ``pr_curves.{csv,png}``, ``reliability.{csv,png}`` in
    ``out_dir``; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    roc_t, pr_t = curve_tables(probs, labels, class_names, positive)
    paths = []
    for name, table in (("roc_curves", roc_t), ("pr_curves", pr_t)):
        paths.append(os.path.join(out_dir, f"{name}.csv"))
        table.to_csv(paths[-1], index=False, float_format="%.6f")
    paths += [
        plot_curves(os.path.join(out_dir, "roc_curves.png"), roc_t, "fpr", "tpr", f"ROC · {title}", True),
        plot_curves(os.path.join(out_dir, "pr_curves.png"), pr_t, "recall", "precision", f"precision–recall · {title}", False),
    ]  # fmt: skip
    return paths + write_reliability(out_dir, probs, labels, ece, n_bins, title)


def write_reliability(
    out_dir: str,
    probs: np.ndarray,
    labels: np.ndarray,
    ece: float,
    n_bins: int = 15,
    title: str = "",
    name: str = "reliability",
) -> list[str]:
    """``<name>.csv`` (:func:`reliability_table`) and ``<name>.png`` in ``out_dir``."""
    table = reliability_table(probs, labels, n_bins)
    csv = os.path.join(out_dir, f"{name}.csv")
    table.to_csv(csv, index=False, float_format="%.6f")
    png = plot_reliability(
        os.path.join(out_dir, f"{name}.png"), table, ece, f"reliability · {title}"
    )
    return [csv, png]

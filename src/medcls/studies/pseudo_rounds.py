"""The table of a pseudo-labelling study: one row per round (pseudo-labels used, their accuracy
against the hidden labels, out-of-fold and test AUC), printed and written as Markdown."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from rich.table import Table

from medcls.utils.console import print_table


def _auc_key(metrics: dict[str, float], prefix: str) -> str | None:
    for name in ("auroc_positive", "auroc_macro"):
        if f"{prefix}/{name}" in metrics:
            return f"{prefix}/{name}"
    return None


def rounds_table(rows: list[dict[str, Any]], pool: str) -> pd.DataFrame:
    """One row per round: pseudo-labels used, their accuracy (hidden labels), AUCs."""
    out = []
    for row in rows:
        m = row["metrics"]
        oof, test = _auc_key(m, "oof"), _auc_key(m, "test")
        out.append(
            {
                "round": row["round"],
                "pseudo-labels (mean/fold)": m.get("pseudo/images", 0.0),
                "pseudo-label acc. (hidden)": m.get("pseudo/accuracy_hidden"),
                "val AUC (OOF)": m.get(oof) if oof else None,
                "test AUC (ensemble)": m.get(test) if test else None,
                "MLflow run": row.get("run_id") or "",
            }
        )
    table = pd.DataFrame(out)
    if pool == "test":  # the test partition is the pool: its labels are never scored
        table = table.drop(columns=["test AUC (ensemble)"])
    return table


def _cells(table: pd.DataFrame) -> list[list[str]]:
    """The table's values as printed: counts with one decimal, rates and AUCs with four."""
    out = []
    for _, row in table.iterrows():
        cells = []
        for c in table.columns:
            v = row[c]
            if c in ("round", "MLflow run"):
                cells.append(str(v))
            elif v is None or (isinstance(v, float) and np.isnan(v)):
                cells.append("—")
            else:
                cells.append(f"{v:.1f}" if c.startswith("pseudo-labels") else f"{v:.4f}")
        out.append(cells)
    return out


def print_rounds(table: pd.DataFrame, title: str) -> None:
    t = Table(title=title, show_header=True, header_style="bold")
    for c in table.columns:
        t.add_column(c, justify="left" if c == "MLflow run" else "right")
    for cells in _cells(table):
        t.add_row(*cells)
    print_table(t)


def write_markdown(table: pd.DataFrame, path: str, title: str) -> str:
    lines = [f"**{title}**", "", "| " + " | ".join(table.columns) + " |"]
    lines.append("|" + "|".join("---" for _ in table.columns) + "|")
    lines += ["| " + " | ".join(cells) + " |" for cells in _cells(table)]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path

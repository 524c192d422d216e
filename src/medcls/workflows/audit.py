"""What ``medcls-audit`` runs: read a dataset as training would, hash every decoded image, and
report unreadable files, duplicates, duplicates with conflicting labels and partition leaks."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
from omegaconf import DictConfig
from rich.table import Table

from medcls.data.audit import ISSUES, LEAK, find_issues, scan_images, summarize
from medcls.data.records import Record
from medcls.data.sources import load_source
from medcls.data.sources.exclude import absolute
from medcls.data.splits import splits_for
from medcls.errors import DataError
from medcls.evaluation.class_counts import class_count_table, write_class_counts
from medcls.utils.console import console, print_config_tree, print_table

log = logging.getLogger(__name__)


@dataclass
class AuditResult:
    """``issues``: one row per (image, issue) (see :mod:`medcls.data.audit`); ``summary``: per
    issue; ``csv``: where ``issues`` was written; ``images``: records scanned."""

    issues: pd.DataFrame
    summary: pd.DataFrame
    csv: str
    images: int

    @property
    def clean(self) -> bool:
        return self.issues.empty


def partition_of_records(cfg: DictConfig, records: list[Record], ok: np.ndarray, k: int):
    """Each record's partition as training would split it (readable, known-class images only;
    the same call as :class:`~medcls.data.datamodule.ClassificationDataModule`), and the
    per-partition index arrays. ``None`` with a note when the data cannot be split."""
    known = np.flatnonzero(ok & (np.array([r.label for r in records]) < k))
    try:
        parts = splits_for([records[i] for i in known], [str(i) for i in range(k)], cfg)
    except DataError as e:
        return None, {}, f"no leak check: the data cannot be split as configured ({e})"
    where: list[str | None] = [None] * len(records)
    index = {}
    for name, idx in parts.items():
        index[name] = known[idx]
        for i in index[name]:
            where[i] = name
    return where, index, None


def run_audit(cfg: DictConfig) -> AuditResult:
    """Audit ``cfg.data``; write ``cfg.output`` (CSV) and class counts; print a summary."""
    if cfg.get("print_config"):
        print_config_tree(cfg)
    src = load_source(cfg.data)  # data.exclude applies: auditing again checks a cleaned set
    records, k = src.records, len(src.class_names)
    for note in src.notes:
        console.print(f"[yellow]note:[/] {note}")
    scans = scan_images([r.path for r in records], cfg.get("workers"))
    ok = np.array([digest is not None for digest, _ in scans], dtype=bool)
    where, index, note = partition_of_records(cfg.data, records, ok, k)
    if note:
        console.print(f"[yellow]{note}[/]")
    issues = find_issues(records, src.class_names, scans, where)
    # absolute paths: data.exclude=<this csv> matches from any working directory
    issues["path"] = [absolute(p) for p in issues["path"]]

    csv = os.path.abspath(str(cfg.output))
    out_dir = os.path.dirname(csv)
    os.makedirs(out_dir, exist_ok=True)
    issues.to_csv(csv, index=False)
    labels = np.array([r.label for r in records], dtype=np.int64)
    index = index or {"all": np.flatnonzero(ok)}
    write_class_counts(out_dir, src.class_names, labels, index, f"{src.name}: images per class")
    result = AuditResult(issues, summarize(issues), csv, len(records))
    _print(result, src.name, class_count_table(src.class_names, labels, index), cfg)
    return result


def _print(result: AuditResult, name: str, counts: pd.DataFrame, cfg: DictConfig) -> None:
    table = Table(title=f"audit of {name}: {result.images} images")
    for col in ("issue", "images", "sets", "excluded by data.exclude"):
        table.add_column(col, justify="left" if col == "issue" else "right")
    for row in result.summary.itertuples():
        style = "red" if row.images else "green"
        table.add_row(
            row.issue, str(row.images), str(row.sets or ""), str(row.excluded), style=style
        )
    print_table(table)

    per_class = Table(title="images per class (readable)")
    per_class.add_column("class")
    for col in counts.columns:
        per_class.add_column(str(col), justify="right")
    for cls, row in counts.iterrows():
        per_class.add_row(str(cls), *(str(int(v)) for v in row))
    print_table(per_class)

    for issue in ISSUES:  # a few examples of each finding
        rows = result.issues[result.issues["issue"] == issue]
        if issue == LEAK:
            rows = rows.drop_duplicates("duplicate_set")
        for r in rows.head(3).itertuples():
            console.print(f"  [bold]{issue}[/] {r.path} ({r.label or '?'}): {r.detail}")
        if len(rows) > 3:
            console.print(f"  … {len(rows) - 3} more {issue} row(s)")

    console.print(f"report: {result.csv} (class counts: class_counts.csv/.png next to it)")
    if result.clean:
        console.print("[bold green]no issues found[/]")
    else:
        drop = int(result.issues.loc[result.issues["exclude"].astype(bool), "path"].nunique())
        console.print(
            f"[bold red]{len(result.issues)} finding(s) on {result.issues['path'].nunique()} "
            f"image(s)[/]; to train without the {drop} image(s) marked `exclude`, add to the "
            f"same data options:\n  data.exclude={result.csv}"
        )

"""What ``medcls-report`` runs: fetch runs, aggregate, print, write, log to the sweep's run."""

from __future__ import annotations

import os

import pandas as pd
from omegaconf import DictConfig
from rich.table import Table

from medcls.data.records import DataError
from medcls.studies.report import (
    add_bootstrap,
    compare_configs,
    fetch_runs,
    latest_sweep,
    runs_table,
    summarize,
    write_outputs,
)
from medcls.tracking.sweep import parent_run_id
from medcls.utils.console import console, print_table


def run_report(cfg: DictConfig) -> pd.DataFrame:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    client = mlflow.MlflowClient(cfg.tracking_uri)
    parent = cfg.get("parent_run_id") or (
        parent_run_id(cfg.sweep_dir) if cfg.get("sweep_dir") else None
    )
    if cfg.get("sweep_dir") and not parent:
        raise DataError(f"sweep_dir={cfg.sweep_dir} has no MLflow parent run id file.")
    experiment = cfg.experiment_name
    if not parent and cfg.get("latest_sweep"):
        parent = latest_sweep(client, experiment)
    if parent:
        experiment = client.get_experiment(client.get_run(parent).info.experiment_id).name
    metrics = list(cfg.metrics)
    runs = fetch_runs(client, experiment, parent, cfg.get("filter"))
    if not runs:
        raise DataError(
            f"no finished runs in experiment {experiment!r}"
            + (f" under {parent}" if parent else "")
        )
    table = runs_table(
        runs, metrics, list(cfg.ignore_keys), cfg.get("label_tag"), cfg.get("ensemble", "rows")
    )
    empty = table[metrics].isna().all(axis=1)  # e.g. pseudo-label rounds trained with test=false
    if empty.any():
        console.print(f"{int(empty.sum())} run(s) without any of the metrics left out")
        table = table.loc[~empty]
    if table.empty:
        raise DataError(
            f"no run in experiment {experiment!r} has any of the metrics {metrics}: "
            "give metrics=[...] that its runs logged (see them with `make ui`)"
        )
    shown = len(table)  # runs in the table (ensemble runs included)
    summary = summarize(table, metrics)
    if "ensemble" in table:  # ensembles are columns: intervals and tests are of the fold models
        metrics += [f"{m} (ensemble)" for m in metrics]
        table = table.loc[~table.pop("ensemble")]
    summary = add_bootstrap(summary, table, client, cfg.bootstrap_metric, int(cfg.bootstrap))
    summary, metrics = _display_names(summary, metrics, dict(cfg.get("metric_names") or {}))
    title = f"{cfg.title}: {shown} runs, {len(summary)} configurations"
    _print(summary, metrics, cfg.layout, title)
    files = write_outputs(summary, metrics, cfg.layout, cfg.output_dir, title)
    if len(cfg.get("compare") or []) == 2:
        a, b = cfg.compare
        result = compare_configs(table, client, a, b, cfg.bootstrap_metric, int(cfg.bootstrap))
        m, pb = result["mcnemar"], result["paired_bootstrap"]
        console.print(
            f"[bold]{b!r} vs {a!r}[/] on {result['images']} shared test images: "
            f"{cfg.bootstrap_metric} difference {pb['difference']:+.4f} "
            f"(95% CI {pb['ci_low']:+.4f} … {pb['ci_high']:+.4f}, paired bootstrap p={pb['p_value']:.3f}); "
            f"McNemar: {m['only_a_correct']} images only A right, {m['only_b_correct']} only B, p={m['p_value']:.3g}"
        )
    if parent:
        for f in files:
            client.log_artifact(parent, f, "report")
    console.print(f"report written to {cfg.output_dir} (report.md, report.csv, report.png)")
    return summary


def _display_names(
    summary: pd.DataFrame, metrics: list[str], names: dict[str, str]
) -> tuple[pd.DataFrame, list[str]]:
    """Metric columns renamed for the printed and written tables (``metric_names``)."""
    columns = {}
    for m, shown in names.items():
        for suffix in ("", " (mean)", " (ensemble)", " (ensemble) (mean)"):
            columns[f"{m}{suffix}"] = f"{shown}{suffix}"
    return summary.rename(columns=columns), [columns.get(m, m) for m in metrics]


def _print(summary: pd.DataFrame, metrics, layout: str, title: str) -> None:
    shown = summary[["runs", *metrics, *[c for c in summary.columns if "CI" in c]]]
    if layout == "metrics_as_rows":
        shown = shown.T
    table = Table(title=title)
    table.add_column(str(shown.index.name or ""))
    for c in shown.columns:
        table.add_column(str(c), justify="right")
    for idx, row in shown.iterrows():
        table.add_row(str(idx), *map(str, row.tolist()))
    print_table(table)

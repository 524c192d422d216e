"""What ``medcls-report`` runs: fetch runs, aggregate, print, write, log to the sweep's run."""

from __future__ import annotations

import os

import pandas as pd
from omegaconf import DictConfig
from rich.table import Table

from medcls.errors import DataError
from medcls.studies.report import (
    add_bootstrap,
    compare_configs,
    drop_shared_overrides,
    fetch_runs,
    format_subgroups,
    format_table,
    latest_sweep,
    runs_table,
    subgroup_summary,
    summarize,
    write_outputs,
    write_subgroups,
)
from medcls.tracking.sweep_folder import parent_run_id
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
    # the config column says what differs between rows; what all rows share is said once
    labels, shared = drop_shared_overrides(table["config"].tolist())
    table["config"] = labels
    summary = summarize(table, metrics)
    if "ensemble" in table:  # ensembles are columns: intervals and tests are of the fold models
        base = list(metrics)
        metrics += [f"{m} (ensemble)" for m in metrics]
        table = table.loc[~table.pop("ensemble")]
    else:
        base = list(metrics)
    summary = add_bootstrap(summary, table, client, base, int(cfg.bootstrap))
    summary, metrics = _display_names(summary, metrics, dict(cfg.get("metric_names") or {}))
    title = f"{cfg.title}: {shown} runs, {len(summary)} configurations"
    if shared:
        console.print(f"every row shares: {' '.join(shared)}")
    _print(summary, metrics, cfg.layout, title)
    files = write_outputs(summary, metrics, cfg.layout, cfg.output_dir, title)
    subgroups = subgroup_summary(runs, table)  # eval.subgroups: per subgroup, with intervals
    if len(subgroups):
        _print_frame(format_subgroups(subgroups), f"{cfg.title}: subgroups")
        files += write_subgroups(subgroups, cfg.output_dir, cfg.title)
    if len(cfg.get("compare") or []) == 2:
        a, b = cfg.compare
        result = compare_configs(table, client, a, b, cfg.bootstrap_metric, int(cfg.bootstrap))
        m, pb = result["mcnemar"], result["paired_bootstrap"]
        console.print(
            f"[bold]{b!r} vs {a!r}[/] on {result['images']} shared test images: "
            f"{cfg.bootstrap_metric} difference {pb['difference']:+.4f} "
            f"(95% CI {pb['ci_low']:+.4f} … {pb['ci_high']:+.4f}, paired bootstrap p={pb['p_value']:.3f}); "
            f"{m['method']}: {m['only_a_correct']} images only A right, {m['only_b_correct']} only B"
            + (f" ({m['discordant_units']} discordant groups)" if m["unit"] == "group" else "")
            + f", p={m['p_value']:.3g}"
        )
    if parent:
        for f in files:
            client.log_artifact(parent, f, "report")
    console.print(
        f"report written to {cfg.output_dir} ({', '.join(os.path.basename(f) for f in files)})"
    )
    return summary


def _display_names(
    summary: pd.DataFrame, metrics: list[str], names: dict[str, str]
) -> tuple[pd.DataFrame, list[str]]:
    """Metric columns renamed for the printed and written tables (``metric_names``)."""
    columns = {}
    for m, shown in names.items():
        for kind in ("", " (ensemble)"):
            for suffix in ("", " std", " n", " ci_low", " ci_high"):
                columns[f"{m}{kind}{suffix}"] = f"{shown}{kind}{suffix}"
    return summary.rename(columns=columns), [columns.get(m, m) for m in metrics]


def _print(summary: pd.DataFrame, metrics, layout: str, title: str) -> None:
    shown = format_table(summary, metrics)
    if layout == "metrics_as_rows":
        shown = shown.T
    table = Table(title=title, min_width=len(title) + 4)  # a narrow table would wrap it
    table.add_column(str(shown.index.name or ""))
    for c in shown.columns:
        table.add_column(str(c), justify="right")
    for idx, row in shown.iterrows():
        table.add_row(str(idx), *map(str, row.tolist()))
    print_table(table)


def _print_frame(df: pd.DataFrame, title: str) -> None:
    table = Table(title=title, min_width=len(title) + 4)
    for c in df.columns:
        table.add_column(
            str(c), justify="left" if c in ("config", "attribute", "subgroup") else "right"
        )
    for row in df.itertuples(index=False):
        table.add_row(*map(str, row))
    print_table(table)

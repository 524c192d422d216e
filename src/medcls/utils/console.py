"""What a run prints: the config tree at start and a metrics table at the end."""

from __future__ import annotations

import os
from collections.abc import Mapping

import rich
import rich.console
import rich.syntax
import rich.tree
from omegaconf import DictConfig, OmegaConf
from rich.table import Table

from medcls.metrics.headline import headline_names

console = rich.get_console()


def print_table(table: Table) -> None:
    """Print a table; piped into a log or CI, in full rather than at rich's 80-column default.

    At 80 columns a study's wide tables are crushed into "0…" cells. The check runs at print time
    because Lightning's rich progress bar reconfigures the global console. COLUMNS still wins.
    """
    if console.is_terminal or "COLUMNS" in os.environ:
        console.print(table)
    else:  # console.print(width=) cannot exceed the console's own width
        rich.console.Console(width=400).print(table)


def print_config_tree(
    cfg: DictConfig,
    order: tuple[str, ...] = (
        "data",
        "augmentation",
        "model",
        "loss",
        "optimizer",
        "scheduler",
        "trainer",
        "callbacks",
        "logger",
    ),
) -> None:
    """The composed config as a tree, one branch per config group."""
    tree = rich.tree.Tree("config", style="bold")
    keys = [k for k in order if k in cfg] + [k for k in cfg if k not in order]
    for key in keys:
        branch = tree.add(str(key), style="bold cyan")
        value = cfg[key]
        text = (
            OmegaConf.to_yaml(value, resolve=True) if isinstance(value, DictConfig) else str(value)
        )
        branch.add(rich.syntax.Syntax(text, "yaml", theme="ansi_dark", background_color="default"))
    console.print(tree)


def print_metrics_table(
    metrics: Mapping[str, float],
    title: str,
    extra: Mapping[str, str] | None = None,
    level: float = 0.95,
) -> None:
    """The headline test metrics (``test/<name>`` or bare names) with their ``level``
    intervals (``<name>_ci_low`` / ``_ci_high``) when there are, then facts about the run."""
    prefix = "test" if any(k.startswith("test/") for k in metrics) else ""
    names = headline_names(metrics, prefix)
    key = (lambda n: f"{prefix}/{n}") if prefix else (lambda n: n)
    with_ci = any(f"{key(n)}_ci_low" in metrics for n in names)
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    if with_ci:
        table.add_column(f"{level:.0%} CI", justify="right")
    for name in names:
        row = [name, f"{metrics[key(name)]:.4f}"]
        if with_ci:
            lo, hi = metrics.get(f"{key(name)}_ci_low"), metrics.get(f"{key(name)}_ci_high")
            row.append("" if lo is None or lo != lo else f"[{lo:.4f}, {hi:.4f}]")
        table.add_row(*row)
    for k, v in (extra or {}).items():
        table.add_row(k, v, *([""] if with_ci else []))
    print_table(table)

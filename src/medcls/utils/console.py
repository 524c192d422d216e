"""What a run prints: the config tree at start and a metrics table at the end."""

from __future__ import annotations

import os
from collections.abc import Mapping

import rich
import rich.syntax
import rich.tree
from omegaconf import DictConfig, OmegaConf
from rich.table import Table

console = rich.get_console()
# Piped into a log or CI, rich assumes 80 columns and crushes a study's wide tables into "0…"
# cells; print them in full there instead (COLUMNS, when set, still wins).
if not console.is_terminal and "COLUMNS" not in os.environ:
    console.width = 400

MAIN_METRICS = (
    "accuracy",
    "balanced_accuracy",
    "f1_macro",
    "precision_macro",
    "recall_macro",
    "f1_weighted",
    "top2_accuracy",
    "top3_accuracy",
    "auroc_macro",
    "sensitivity",
    "specificity",
    "auroc_positive",
)


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
    metrics: Mapping[str, float], title: str, extra: Mapping[str, str] | None = None
) -> None:
    """The main test metrics (and a few facts about the run) as a table."""
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name in MAIN_METRICS:
        for key in (name, f"test/{name}"):
            if key in metrics:
                table.add_row(name, f"{metrics[key]:.4f}")
                break
    for k, v in (extra or {}).items():
        table.add_row(k, v)
    console.print(table)

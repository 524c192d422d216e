"""medcls-report for experiment=ham10000_ablation: rows named by the ``ablation`` tag (the
``ablation=...`` override does not leak into the label), fold runs as mean ± std, and each row's
own ensemble (tag ``medcls.config``) as ``(ensemble)`` columns — or as rows of their own."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from medcls.studies.report import format_table, runs_table, summarize
from medcls.workflows.report import _display_names

IGNORE = ["data.fold", "data.num_folds", "seed", "hydra.*"]
COMMON = "experiment=ham10000_ablation data.image_size=64"
METRICS = ["test/accuracy", "test/f1_macro"]


def fold_run(run_id: str, start: int, row: str, tag: str, fold: int, acc: float, f1: float):
    tags = {
        "overrides": f"ablation={row} data.fold={fold} {COMMON}",
        "mlflow.runName": run_id,
        "ablation": tag,
    }
    return SimpleNamespace(
        info=SimpleNamespace(run_id=run_id, start_time=start),
        data=SimpleNamespace(tags=tags, metrics={"test/accuracy": acc, "test/f1_macro": f1}),
    )


def ensemble_run(run_id: str, start: int, row: str | None, tag: str | None, acc: float):
    tags = {
        "medcls.role": "ensemble",
        "checkpoints": "a/best.ckpt b/best.ckpt",
        "tta": "hflip,vflip",
        "mlflow.runName": run_id,
    }
    if row is not None:  # medcls-ensemble per_config=true: the configuration it ensembles
        tags.update({"medcls.config": f"ablation={row} {COMMON}", "ablation": tag})
    return SimpleNamespace(
        info=SimpleNamespace(run_id=run_id, start_time=start),
        data=SimpleNamespace(tags=tags, metrics={"test/accuracy": acc, "test/f1_macro": 0.5}),
    )


@pytest.fixture
def runs() -> list:
    return [
        fold_run("f0", 1, "no_dropout", "no dropout", 0, 0.70, 0.40),
        fold_run("f1", 2, "no_dropout", "no dropout", 1, 0.80, 0.50),
        fold_run("f2", 3, "full", "full", 0, 0.60, 0.30),
        fold_run("f3", 4, "full", "full", 1, 0.90, 0.60),
        ensemble_run("e1", 6, "full", "full", 0.95),  # started later, in the other order
        ensemble_run("e0", 5, "no_dropout", "no dropout", 0.85),
    ]


def test_report_config_of_the_ablation_experiment(helpers) -> None:
    cfg = helpers.compose_cfg(["experiment=ham10000_ablation"], config_name="report")
    assert cfg.experiment_name == "ham10000-ablation"
    assert cfg.label_tag == "ablation" and cfg.latest_sweep and cfg.ensemble == "columns"
    assert list(cfg.metrics)[:4] == [
        "test/accuracy",
        "test/precision_macro",
        "test/recall_macro",
        "test/f1_macro",
    ]
    assert {"test/top2_accuracy", "test/top3_accuracy"} <= set(cfg.metrics)
    assert helpers.compose_cfg([], config_name="report").ensemble == "rows"
    backbones = helpers.compose_cfg(["experiment=ham10000_backbones"], config_name="report")
    assert backbones.label_tag == "backbone" and backbones.experiment_name == "ham10000-backbones"


def test_ensembles_as_columns_of_their_rows(runs) -> None:
    table = runs_table(runs, METRICS, IGNORE, label_tag="ablation", ensemble="columns")
    assert table["config"].tolist()[:4] == ["no dropout", "no dropout", "full", "full"]
    assert table["ensemble"].tolist() == [False] * 4 + [True] * 2
    summary = summarize(table, METRICS)
    assert summary.index.tolist() == ["no dropout", "full"]  # rows in the sweep's order
    assert summary["runs"].tolist() == [2, 2]  # the ensemble is not pooled with its folds
    assert summary.loc["no dropout", "test/accuracy"] == pytest.approx(0.75)
    assert summary["test/accuracy (ensemble)"].tolist() == pytest.approx([0.85, 0.95])
    shown = format_table(summary, [*METRICS, *(f"{m} (ensemble)" for m in METRICS)])
    acc = shown.loc["no dropout", "test/accuracy"]
    assert acc == f"{np.mean([0.7, 0.8]):.4f} ± {np.std([0.7, 0.8], ddof=1):.4f}"
    assert shown["test/accuracy (ensemble)"].tolist() == ["0.8500", "0.9500"]
    assert shown.loc["full", "test/f1_macro (ensemble)"] == "0.5000"


def test_a_row_without_ensemble_and_an_ensemble_without_folds(runs) -> None:
    runs = [r for r in runs if r.info.run_id != "e1"]
    runs.append(ensemble_run("e2", 7, "no_gap", "no GAP", 0.4))
    table = runs_table(runs, METRICS, IGNORE, label_tag="ablation", ensemble="columns")
    summary = summarize(table, METRICS)
    assert summary.index.tolist() == ["no dropout", "full", "no GAP"]
    assert np.isnan(summary.loc["full", "test/accuracy (ensemble)"])
    shown = format_table(summary, [*METRICS, *(f"{m} (ensemble)" for m in METRICS)])
    assert shown.loc["full", "test/accuracy (ensemble)"] == "—"
    assert shown.loc["no GAP", "runs"] == 0 and shown.loc["no GAP", "test/accuracy"] == "—"
    assert shown.loc["no GAP", "test/accuracy (ensemble)"] == "0.4000"


def test_ensembles_as_rows(runs) -> None:
    table = runs_table(runs, METRICS, IGNORE, label_tag="ablation")
    assert "ensemble" not in table
    labels = table["config"].tolist()
    assert labels[:4] == ["no dropout", "no dropout", "full", "full"]
    assert labels[4:] == [
        "ensemble (2 models) hflip,vflip · no dropout",
        "ensemble (2 models) hflip,vflip · full",
    ]
    assert len(summarize(table, METRICS)) == 4


def test_one_configuration_keeps_the_plain_ensemble_row() -> None:
    """A plain CV (medcls-cv without further sweep keys): the ensemble row is named as before."""
    runs = [
        fold_run("f0", 1, "full", "full", 0, 0.7, 0.4),
        fold_run("f1", 2, "full", "full", 1, 0.8, 0.5),
        ensemble_run("e", 3, "full", "full", 0.9),
        ensemble_run("other", 4, None, None, 0.6),  # an ensemble of any checkpoints
    ]
    table = runs_table(runs, METRICS, IGNORE)
    assert table["config"].tolist() == [
        f"ablation=full {COMMON}",
        f"ablation=full {COMMON}",
        "ensemble (2 models) hflip,vflip",
        "ensemble (2 models) hflip,vflip",
    ]


def test_display_names_cover_the_ensemble_columns() -> None:
    summary = pd.DataFrame(
        {"runs": [2], "test/accuracy": [0.5], "test/accuracy std": [0.1], "test/accuracy n": [2],
         "test/accuracy (ensemble)": [0.6], "test/accuracy (ensemble) std": [np.nan],
         "test/accuracy (ensemble) n": [1]},
        index=["full"],
    )  # fmt: skip
    shown, metrics = _display_names(
        summary, ["test/accuracy", "test/accuracy (ensemble)"], {"test/accuracy": "Accuracy"}
    )
    assert metrics == ["Accuracy", "Accuracy (ensemble)"]
    assert list(shown.columns) == ["runs", "Accuracy", "Accuracy std", "Accuracy n",
        "Accuracy (ensemble)", "Accuracy (ensemble) std", "Accuracy (ensemble) n"]  # fmt: skip
    assert list(format_table(shown, metrics).loc["full"]) == [2, "0.5000 ± 0.1000", "0.6000"]

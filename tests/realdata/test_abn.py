"""The ABN study (Funatsu et al.) at smoke-test scale on the real data in ../shared/data (skipped
when absent): ``medcls-train -m experiment=abn_covid_ct`` runs fixed vs scheduled map weight over
3 folds with lung-threshold masks, ``medcls-report experiment=abn_covid_ct`` prints Table 1;
``experiment=abn_ham10000`` does one fold per method with the real lesion masks.

64 px, 2 epochs (1 for HAM10000), few batches, no pretraining: this checks the pipeline, not
the paper's numbers."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

SMALL = [
    "data.image_size=64",
    "data.batch_size=64",
    "trainer.precision=32-true",
    "print_config=false",
    "++trainer.enable_progress_bar=false",
    "++trainer.enable_model_summary=false",
    "callbacks.attention_overlays.num_images=4",
]


def _study(helpers, work: Path, cache: Path, experiment: str, *extra: str) -> tuple[str, Path]:
    """Run the sweep and the report; return the MLflow URI and the report folder."""
    uri = helpers.sqlite_uri(work / "mlflow.db")
    train = helpers.run_cli(
        "medcls-train",
        ["-m", f"experiment={experiment}", *SMALL, *extra, f"logger.mlflow.tracking_uri={uri}"]
        + [f"paths.cache_dir={cache}"],
        cwd=work,
        timeout=900,
    )
    assert train.returncode == 0, train.stdout[-3000:] + train.stderr[-3000:]
    report = helpers.run_cli(
        "medcls-report",
        [f"experiment={experiment}", f"tracking_uri={uri}", "bootstrap=50", "output_dir=report"],
        cwd=work,
    )
    assert report.returncode == 0, report.stdout[-3000:] + report.stderr[-3000:]
    return uri, work / "report"


def _child_runs(uri: str, experiment: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    return client, [r for r in runs if r.data.tags.get("medcls.role") != "sweep"]


def test_abn_covid_ct_table_1(tmp_path, helpers, cache_dir) -> None:
    covid = helpers.shared_data("covid_ct", "CT_COVID")
    uri, report = _study(
        helpers,
        tmp_path,
        cache_dir,
        "abn_covid_ct",
        f"data.root={covid}",
        "data.fold=0,1",  # two of the study's three folds: a mean ± std, at 2/3 of the cost
        "trainer.max_epochs=2",
        "++trainer.limit_train_batches=2",
        "++trainer.limit_val_batches=2",
    )
    table = pd.read_csv(report / "report.csv", index_col=0)
    assert sorted(table.index) == ["abn_map", "abn_scheduled"]  # one row per method
    assert (table["runs"] == 2).all()  # two folds each
    for column in ("Accuracy", "Sensitivity", "Specificity", "AUC", "Patient accuracy"):
        assert table[column].str.contains("±").all(), column

    client, runs = _child_runs(uri, "abn-covid_ct")
    assert len(runs) == 4 and all(r.info.status == "FINISHED" for r in runs)
    for r in runs:
        m = r.data.metrics
        csv = helpers.download_artifact(
            client, r.info.run_id, "test_predictions.csv", tmp_path / r.info.run_id
        )
        mine = helpers.assert_metrics_match_predictions(m, csv, positive="CT_COVID")
        assert "sensitivity" in mine and "group/sensitivity" in m
        assert 0 < m["val/attention_iou"] <= 1  # lung-threshold masks were found and used
        pngs = {a.path for a in client.list_artifacts(r.info.run_id, "attention")}
        assert {"attention/epoch_000.png", "attention/epoch_001.png", "attention/final.png"} <= pngs
        if r.data.tags["method"] == "abn_scheduled":
            alpha = client.get_metric_history(r.info.run_id, "train/alpha")
            assert [h.value for h in alpha] == pytest.approx([0.9, 0.1])


def test_abn_ham10000_with_lesion_masks(tmp_path, helpers, cache_dir, ham10000_subset) -> None:
    ham = helpers.shared_data("ham10000", "HAM10000_metadata.csv")
    uri, report = _study(
        helpers,
        tmp_path,
        cache_dir,
        "abn_ham10000",
        f"data.root={ham}",
        f"data.metadata_csv={ham10000_subset}",  # the session's lesion subset
        "data.fold=0",  # one fold per method (the command line beats the sweep's range)
        "data.num_folds=8",  # a small validation fold: its predictions are written in full
        "trainer.max_epochs=1",
        "++trainer.limit_train_batches=3",
        "++trainer.limit_val_batches=4",
        "++trainer.limit_test_batches=4",
    )
    table = pd.read_csv(report / "report.csv", index_col=0)
    assert sorted(table.index) == ["abn_map", "abn_scheduled"]
    client, runs = _child_runs(uri, "abn-ham10000")
    assert len(runs) == 2
    for r in runs:
        assert 0 < r.data.metrics["test/attention_iou"] <= 1  # against the real lesion masks
        assert "group/balanced_accuracy" in r.data.metrics  # lesion level
        pngs = {a.path for a in client.list_artifacts(r.info.run_id, "attention")}
        assert "attention/final.png" in pngs

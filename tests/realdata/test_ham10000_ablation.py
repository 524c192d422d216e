"""The HAM10000 ablation study at small scale on the real data (skipped when ../shared/data is
absent): ``medcls-cv k=2`` over two ablation rows (2 rows × 2 lesion-grouped folds, ResNet-18
from scratch at 64 px, one epoch), one ensemble per row with TTA, then ``medcls-report
experiment=ham10000_ablation``: the paper's table, one row per ablation, fold mean ± std and
the row's ensemble in the "(ensemble)" columns. A smoke test of the pipeline, not a result.

To stay well under a minute on 2 cores it reads the session's lesion subset of the real images
(the ``ham10000_subset`` fixture: ~1,000 of 10,015, decoded once for every such test)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

METRICS = {  # report column → MLflow metric
    "Accuracy": "test/accuracy",
    "Precision": "test/precision_macro",
    "Recall": "test/recall_macro",
    "F1": "test/f1_macro",
    "Top-2": "test/top2_accuracy",
    "Top-3": "test/top3_accuracy",
}


def test_ham10000_ablation_two_rows_two_folds(
    tmp_path, helpers, cache_dir, ham10000_subset
) -> None:
    ham = helpers.shared_data("ham10000", "HAM10000_metadata.csv")
    uri = helpers.sqlite_uri(tmp_path / "ablation.db")
    proc = helpers.run_cli(
        "medcls-cv",
        [
            "k=2",
            "tta=[hflip]",
            "experiment=ham10000_ablation",
            "ablation=no_dense,full",
            f"data.root={ham}",
            f"data.metadata_csv={ham10000_subset}",  # absolute: read instead of root's own CSV
            "model.name=resnet18",
            "model.pretrained=false",
            f"data.image_size={helpers.HAM_SUBSET_SIZE}",
            "data.batch_size=64",
            "optimizer.lr=1e-3",
            "trainer.max_epochs=1",
            "++trainer.limit_train_batches=4",
            "++trainer.enable_progress_bar=false",
            "print_config=false",
            f"paths.cache_dir={cache_dir}",
            f"logger.mlflow.tracking_uri={uri}",
        ],
        cwd=tmp_path,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("ham10000-ablation").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("medcls.role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    folds = [r for r in children if r.data.tags.get("medcls.role") != "ensemble"]
    ensembles = {
        r.data.tags["ablation"]: r for r in children if r.data.tags.get("medcls.role") == "ensemble"
    }
    assert len(folds) == 4 and sorted(ensembles) == ["full", "no dense layers"]
    assert all(r.info.status == "FINISHED" for r in children)
    for row, ens in ensembles.items():  # each row's ensemble holds that row's two fold models
        own = {r.data.tags["best_checkpoint"] for r in folds if r.data.tags["ablation"] == row}
        assert {str(Path(p).resolve()) for p in ens.data.tags["checkpoints"].split()} == {
            str(Path(p).resolve()) for p in own
        }
        assert ens.data.tags["tta"] == "hflip" and "ablation=" in ens.data.tags["medcls.config"]
    heads = {r.data.tags["ablation"]: r.data.params["model.hidden"] for r in folds}
    assert heads == {"full": "[512]", "no dense layers": "[]"}

    proc = helpers.run_cli(
        "medcls-report",
        [
            "experiment=ham10000_ablation",
            f"tracking_uri={uri}",
            "bootstrap=100",
            "output_dir=report",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "report written to report" in proc.stdout  # (the printed table wraps long names)
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "| no dense layers | 2 |" in markdown and "Accuracy (ensemble)" in markdown
    table = pd.read_csv(tmp_path / "report" / "report.csv", index_col=0)
    assert table.index.tolist() == ["no dense layers", "full"]  # the sweep's row order
    assert table["runs"].tolist() == [2, 2]
    assert [c for c in table.columns if c in METRICS or c.endswith("(ensemble)")] == [
        *METRICS,
        *(f"{c} (ensemble)" for c in METRICS),
    ]
    for row in table.index:
        row_folds = [r for r in folds if r.data.tags["ablation"] == row]
        for column, key in METRICS.items():
            values = [r.data.metrics[key] for r in row_folds]
            assert table.loc[row, column] == f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}"
            ensemble_value = ensembles[row].data.metrics[key]
            assert table.loc[row, f"{column} (ensemble)"] == pytest.approx(ensemble_value, abs=6e-5)
        # top-k accuracy can only grow with k
        ens = ensembles[row].data.metrics
        assert ens["test/accuracy"] <= ens["test/top2_accuracy"] <= ens["test/top3_accuracy"]

"""Small-scale study on real data: ``medcls-cv k=3`` on EyePACS-AIROGS glaucoma fundus photos at
64 px (skipped when ../shared/data is absent), then ``medcls-report`` on its sweep."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


def test_glaucoma_3_fold_cv_and_report(tmp_path, helpers, cache_dir) -> None:
    glaucoma = helpers.shared_data("glaucoma_airogs", "RG")
    uri = helpers.sqlite_uri(tmp_path / "glaucoma.db")
    proc = helpers.run_cli(
        "medcls-cv",
        [
            "k=3",
            "tta=[hflip]",
            "data=glaucoma",
            f"data.root={glaucoma}",
            "data.image_size=64",
            "data.batch_size=64",
            "model.name=resnet10t",
            "trainer.max_epochs=1",
            "++trainer.limit_train_batches=3",
            "++trainer.enable_progress_bar=false",
            "print_config=false",
            f"paths.cache_dir={cache_dir}",
            f"logger.mlflow.tracking_uri={uri}",
            "experiment_name=glaucoma_cv",
        ],
        cwd=tmp_path,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("glaucoma_cv").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("medcls.role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    folds = [r for r in children if r.data.tags.get("medcls.role") != "ensemble"]
    (ensemble,) = [r for r in children if r.data.tags.get("medcls.role") == "ensemble"]
    assert sorted(r.data.params["data.fold"] for r in folds) == ["0", "1", "2"]
    assert all(r.info.status == "FINISHED" for r in [parent, *folds, ensemble])
    # the ensemble's figures are those of its averaged test and out-of-fold predictions
    for name, prefix in (("ensemble_predictions.csv", "test/"), ("oof_predictions.csv", "oof/")):
        csv = helpers.download_artifact(client, ensemble.info.run_id, name, tmp_path / "a")
        mine = helpers.assert_metrics_match_predictions(
            ensemble.data.metrics, csv, prefix, positive="RG"
        )
        assert {"sensitivity", "specificity"} <= set(mine)

    # the three validation folds partition every non-test image; the test set is shared
    sweep = Path(parent.data.tags["medcls.sweep_dir"])
    vals = [pd.read_csv(sweep / str(j) / "val_predictions.csv") for j in range(3)]
    tests = [pd.read_csv(sweep / str(j) / "test_predictions.csv") for j in range(3)]
    val_paths = [set(v["path"]) for v in vals]
    assert not (
        val_paths[0] & val_paths[1] or val_paths[0] & val_paths[2] or val_paths[1] & val_paths[2]
    )
    assert all(set(t["path"]) == set(tests[0]["path"]) for t in tests)
    n_images = len(list(glaucoma.glob("*RG/*")))
    assert sum(map(len, val_paths)) + len(tests[0]) == n_images
    pooled = pd.concat(vals)["label"].eq("RG").mean()
    for v in vals:  # stratified: every fold has the pooled share of glaucoma cases
        assert v["label"].eq("RG").mean() == pytest.approx(pooled, abs=0.03)

    proc = helpers.run_cli(
        "medcls-report",
        [f"sweep_dir={sweep}", f"tracking_uri={uri}", "bootstrap=200", "output_dir=report"],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    values = [r.data.metrics["test/balanced_accuracy"] for r in folds]
    assert f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}" in proc.stdout

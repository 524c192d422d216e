"""The skin-disease fine-tuning study end to end, as docs/studies/skin_finetune.md runs it:
``medcls-train -m experiment=skin_folders_finetune`` (augmentation none vs keras_like, the
backbone frozen for the first epoch, then everything at LR × 0.1), then
``medcls-report experiment=skin_folders_finetune``: the before/after-augmentation table with
both rows, and every run with its class-count chart and classification report."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

RUN_FILES = {
    "class_counts.png",
    "class_counts.csv",
    "classification_report.txt",
    "classification_report.csv",
}


@pytest.mark.slow
def test_before_after_augmentation_study(helpers, workdir: Path, datasets, cache_dir) -> None:
    uri = helpers.sqlite_uri(workdir / "study.db")
    proc = helpers.run_cli(
        "medcls-train",
        [
            "-m",
            "experiment=skin_folders_finetune",
            f"data.root={datasets['imagefolder']}",
            "data.test_fraction=0.25",
            "data.val_fraction=0.25",
            "model.name=test_efficientnet",
            "model.pretrained=false",
            "model.freeze_backbone_epochs=1",
            *[o for o in helpers.TINY if not o.startswith("model.name")],
            "trainer.max_epochs=2",
            "++trainer.limit_train_batches=2",
            f"paths.cache_dir={cache_dir}",
            f"logger.mlflow.tracking_uri={uri}",
        ],
        cwd=workdir,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = helpers.run_cli(
        "medcls-report",
        [
            "experiment=skin_folders_finetune",
            f"tracking_uri={uri}",
            "bootstrap=50",
            "output_dir=rep",
        ],
        cwd=workdir,
    )
    assert report.returncode == 0, report.stdout[-3000:] + report.stderr[-3000:]

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("skin-finetune-skin_folders")
    runs = [
        r
        for r in client.search_runs([exp.experiment_id])
        if r.data.tags.get("medcls.role") != "sweep"
    ]
    assert sorted(r.data.tags["augmentation"] for r in runs) == ["keras_like", "none"]
    for r in runs:
        assert r.info.status == "FINISHED"
        assert {a.path for a in client.list_artifacts(r.info.run_id)} >= RUN_FILES
        assert r.data.params["model.freeze_backbone_epochs"] == "1"
        # epoch 0: head only at the cosine start; epoch 1: everything at cosine(1) × 0.1
        lrs = [m.value for m in client.get_metric_history(r.info.run_id, "lr-AdamW")]
        assert lrs[:2] == pytest.approx([1e-3, 0.5e-3 * 0.1], rel=1e-6)

    job = next(p for p in workdir.glob("multirun/*/*/0") if p.is_dir())
    counts = pd.read_csv(job / "class_counts.csv", index_col="class")
    assert list(counts.index) == ["akiec", "bcc", "nv"] and counts["total"].tolist() == [8, 8, 8]
    assert {"train", "val", "test"} <= set(counts.columns)
    cr = pd.read_csv(job / "classification_report.csv", index_col="class")
    assert cr.loc["macro avg", "support"] == counts["test"].sum()

    # the study's table: rows Acc / Val_Acc / Test_Acc, a column per augmentation setting
    table = pd.read_csv(workdir / "rep" / "report.csv", index_col=0)
    assert sorted(table.columns) == ["keras_like", "none"]
    assert {"Acc", "Val_Acc", "Test_Acc"} <= set(table.index)
    for r in runs:
        acc = r.data.metrics["test/accuracy"]
        assert table.loc["Test_Acc", r.data.tags["augmentation"]].startswith(f"{acc:.4f}")

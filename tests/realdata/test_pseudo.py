"""Pseudo-labelling on real fundus photos (papers/002), small scale: ``medcls-pseudo`` with 2
folds and one round on EyePACS-AIROGS at 64 px, the held-out test partition as the pool
(labels hidden), ending in its table of AUC per round. Skipped without ../shared/data."""

from __future__ import annotations

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


def test_glaucoma_two_folds_one_pseudo_label_round(tmp_path, helpers, cache_dir) -> None:
    glaucoma = helpers.shared_data("glaucoma_airogs", "RG")
    uri = helpers.sqlite_uri(tmp_path / "pseudo.db")
    proc = helpers.run_cli(
        "medcls-pseudo",
        [
            "k=2",
            "rounds=1",
            "pool=test",
            # a model trained for 4 batches is never 98% sure: a bar just above chance makes
            # sure round 1 trains on pseudo-labels (the selection rule is unit-tested)
            "threshold=0.51",
            "study_dir=study",
            "experiment=glaucoma_cv",
            f"data.root={glaucoma}",
            "data.image_size=64",
            "data.batch_size=32",
            "model.name=resnet10t",
            "model.pretrained=false",
            "loss.label_smoothing=0.05",
            "trainer.max_epochs=1",
            "++trainer.limit_train_batches=4",
            "++trainer.enable_progress_bar=false",
            "print_config=false",
            f"paths.cache_dir={cache_dir}",
            f"logger.mlflow.tracking_uri={uri}",
            "experiment_name=glaucoma_pseudo",
        ],
        cwd=tmp_path,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "val AUC (OOF)" in proc.stdout  # the report table ends the run
    study = tmp_path / "study"
    table = pd.read_csv(study / "pseudo_rounds.csv")
    assert table["round"].tolist() == [0, 1]
    assert "test AUC (ensemble)" not in table.columns  # the test images are the pool
    assert table["pseudo-labels (mean/fold)"].tolist()[1] > 0

    # pseudo-labels come from the test partition only, never from a validation fold
    val = set().union(
        *(pd.read_csv(study / "round_0" / str(j) / "val_predictions.csv")["path"] for j in (0, 1))
    )
    n_images = len(list(glaucoma.glob("*RG/*")))
    for fold in (0, 1):
        csv = pd.read_csv(study / "round_1" / f"pseudo_labels_fold{fold}.csv")
        assert not set(csv["path"]) & val
        assert len(csv) <= n_images - len(val)  # at most the whole test partition
        assert set(csv["label"]) <= {"NRG", "RG"}
        log = (study / "round_1" / str(fold) / "train.log").read_text()
        assert f"data.extra_records: {len(csv)} image(s) added to training" in log

    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("glaucoma_pseudo").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("medcls.role") == "pseudo"]
    rounds = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.data.tags["medcls.pseudo_round"] for r in rounds) == ["0", "1"]
    folds = [
        r for r in runs if r.data.tags.get("mlflow.parentRunId") in {x.info.run_id for x in rounds}
    ]
    assert len(folds) == 4 and all(r.info.status == "FINISHED" for r in folds)
    # the test labels are hidden: no fold run and no round run scores the test partition
    assert not any(k.startswith("test/") for r in [*folds, *rounds] for k in r.data.metrics)
    rounds.sort(key=lambda r: int(r.data.tags["medcls.pseudo_round"]))
    for k, r in enumerate(rounds):  # the table's figures are the round's, from its OOF predictions
        oof = pd.concat(
            pd.read_csv(f) for f in sorted((study / f"round_{k}").glob("*/val_predictions.csv"))
        )
        helpers.assert_metrics_match_predictions(r.data.metrics, oof, "oof/", positive="RG")
        assert table["val AUC (OOF)"][k] == pytest.approx(
            r.data.metrics["oof/auroc_positive"], abs=1e-4
        )
    assert table["pseudo-label acc. (hidden)"][1] == pytest.approx(
        rounds[1].data.metrics["pseudo/accuracy_hidden"], abs=1e-4
    )

"""``medcls-pseudo``: K-fold rounds with pseudo-labels from an unlabelled pool, each round an
MLflow run under one study run, AUC per round on labelled images only."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from medcls.errors import DataError
from medcls.studies.pseudo_labels import effective_threshold
from medcls.studies.pseudo_rounds import rounds_table
from medcls.workflows import pseudo_label as pl


def test_parse_args_splits_study_and_training_arguments(tmp_path) -> None:
    s = pl.parse_args(
        ["k=3", "rounds=2", f"pool={tmp_path}", "threshold=0.9", "labeller=ensemble",
         "tta=[hflip,vflip]", "model.name=resnet10t", "data=glaucoma"]
    )  # fmt: skip
    assert (s.k, s.rounds, s.pool, s.threshold, s.labeller) == (
        3,
        2,
        str(tmp_path),
        0.9,
        "ensemble",
    )
    assert s.tta == ["hflip", "vflip"] and s.train_args == ["model.name=resnet10t", "data=glaucoma"]
    d = pl.parse_args([])
    assert (d.k, d.rounds, d.pool, d.threshold, d.labeller) == (4, 1, "test", 0.98, "fold")
    assert d.study_dir.startswith("multirun/pseudo/")


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("k=1", "k >= 2"),
        ("rounds=-1", "rounds=-1"),
        ("threshold=0.5", r"threshold=0.5: must be in \(0.5, 1\]"),
        ("labeller=doctor", "labeller='doctor'"),
        ("pool=/no/such/folder", "pool=/no/such/folder: not a folder"),
        ("data.fold=1", "sets this itself"),
        ("data.extra_records=x.csv", "sets this itself"),
        ("k=four", "k=four"),
    ],
)
def test_bad_arguments_are_named(arg, message) -> None:
    with pytest.raises(DataError, match=message):
        pl.parse_args([arg])


def test_glaucoma_cv_defaults_select_what_its_smoothed_models_reach(helpers) -> None:
    """``medcls-pseudo experiment=glaucoma_cv``: α=0.05 models aim at 0.975; the default
    threshold 0.98, read on that scale, must be reachable (the raw 0.98 is not)."""
    job = helpers.compose_cfg(["experiment=glaucoma_cv"])
    alpha = pl.label_smoothing_of(job)
    assert alpha == 0.05
    s = pl.parse_args([])
    reachable = 1 - alpha / 2
    assert s.threshold > reachable  # why the raw threshold selected nothing
    cut = effective_threshold(s.threshold, alpha, 2)
    assert cut == pytest.approx(0.956) and cut < reachable
    assert pl.label_smoothing_of(helpers.compose_cfg(["loss=ce"])) == 0.0
    assert pl.label_smoothing_of(OmegaConf.create({"data": {}})) == 0.0  # no loss node


def test_rounds_table_hides_test_auc_when_the_test_set_is_the_pool() -> None:
    rows = [
        {"round": 0, "metrics": {"oof/auroc_positive": 0.7, "test/auroc_positive": 0.8}},
        {"round": 1, "metrics": {"oof/auroc_positive": 0.75, "pseudo/images": 12.0}},
    ]
    folder = rounds_table(rows, "/some/folder")
    assert folder["test AUC (ensemble)"].tolist()[0] == 0.8
    assert folder["pseudo-labels (mean/fold)"].tolist() == [0.0, 12.0]
    assert "test AUC (ensemble)" not in rounds_table(rows, "test").columns


def tiny(helpers, uri: str, experiment: str, root: Path) -> list[str]:
    return [
        *[o for o in helpers.train_overrides("data=glaucoma") if o != "logger=none"],
        f"data.root={root}",
        "trainer.max_epochs=1",
        "++trainer.limit_train_batches=2",
        f"logger.mlflow.tracking_uri={uri}",
        f"experiment_name={experiment}",
    ]


def study_runs(uri: str, experiment: str):
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    (study,) = [r for r in runs if r.data.tags.get("medcls.role") == "pseudo"]
    rounds = sorted(
        (r for r in runs if r.data.tags.get("mlflow.parentRunId") == study.info.run_id),
        key=lambda r: int(r.data.tags["medcls.pseudo_round"]),
    )
    return runs, study, rounds


@pytest.fixture(scope="module")
def folder_study(helpers, tmp_path_factory) -> dict:
    """2 folds, 1 round, pool = a folder of other images (~1.5 minutes)."""
    work = tmp_path_factory.mktemp("pseudo_folder")
    root = helpers.make_imagefolder(work / "fundus", ["NRG", "RG"], per_class=16)
    pool = helpers.make_imagefolder(work / "pool", ["u0", "u1"], per_class=5, seed=1)
    uri = helpers.sqlite_uri(work / "m.db")
    proc = helpers.run_cli(
        "medcls-pseudo",
        ["k=2", "rounds=1", f"pool={pool}", "threshold=0.51", "study_dir=study",
         *tiny(helpers, uri, "pseudo_folder", root), "loss.label_smoothing=0.1"],
        cwd=work,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {"work": work, "root": root, "pool": pool, "uri": uri, "out": proc.stdout}


@pytest.mark.slow
def test_folder_pool_rounds_report_test_and_oof_auc(folder_study) -> None:
    work, pool = folder_study["work"], folder_study["pool"]
    table = pd.read_csv(work / "study" / "pseudo_rounds.csv")
    assert table["round"].tolist() == [0, 1]
    assert table["pseudo-labels (mean/fold)"].tolist()[0] == 0
    assert table["pseudo-labels (mean/fold)"].tolist()[1] > 0
    # (the AUC columns against each round's own predictions: the test below)
    assert "test AUC (ensemble)" in folder_study["out"]  # the printed report table
    # each fold of round 1 trained on its own CSV of pool images with class-name labels
    for fold in (0, 1):
        csv = pd.read_csv(work / "study" / "round_1" / f"pseudo_labels_fold{fold}.csv")
        assert set(csv["label"]) <= {"NRG", "RG"}
        assert all(Path(p).is_relative_to(pool) for p in csv["path"])
        log = (work / "study" / "round_1" / str(fold) / "train.log").read_text()
        assert f"data.extra_records: {len(csv)} image(s) added to training" in log
    assert "added to training" not in (work / "study" / "round_0" / "0" / "train.log").read_text()


@pytest.mark.slow
def test_each_round_is_a_run_under_the_study_run(folder_study, helpers) -> None:
    runs, study, rounds = study_runs(folder_study["uri"], "pseudo_folder")
    assert [r.data.tags["medcls.pseudo_round"] for r in rounds] == ["0", "1"]
    assert study.info.status == "FINISHED"
    assert study.data.tags["medcls.pseudo.pool"] == str(folder_study["pool"])
    table = pd.read_csv(folder_study["work"] / "study" / "pseudo_rounds.csv")
    for k, r in enumerate(rounds):  # each round's figures: its own ensemble and OOF predictions
        round_dir = folder_study["work"] / "study" / f"round_{k}"
        ensemble = round_dir / "ensemble" / "ensemble_predictions.csv"
        helpers.assert_metrics_match_predictions(r.data.metrics, ensemble, positive="RG")
        oof = pd.concat(pd.read_csv(f) for f in sorted(round_dir.glob("*/val_predictions.csv")))
        helpers.assert_metrics_match_predictions(r.data.metrics, oof, "oof/", positive="RG")
        assert table["val AUC (OOF)"][k] == pytest.approx(
            r.data.metrics["oof/auroc_positive"], abs=1e-4
        )
        assert table["test AUC (ensemble)"][k] == pytest.approx(
            r.data.metrics["test/auroc_positive"], abs=1e-4
        )
        children = [c for c in runs if c.data.tags.get("mlflow.parentRunId") == r.info.run_id]
        roles = sorted(c.data.tags.get("medcls.role", "fold") for c in children)
        assert roles == ["ensemble", "fold", "fold"]
    assert rounds[1].data.metrics["pseudo/images"] > 0
    # the threshold the smoothed (α=0.1) models were held to, as printed
    cut = effective_threshold(0.51, 0.1, 2)
    assert rounds[1].data.metrics["pseudo/threshold"] == pytest.approx(cut)
    assert f"top probability >= {cut:.4f}" in folder_study["out"]
    assert "pseudo_rounds.md" in {
        a.path for a in MlflowClient(folder_study["uri"]).list_artifacts(study.info.run_id)
    }


@pytest.mark.slow
def test_a_pool_holding_labelled_images_is_refused(folder_study) -> None:
    work = folder_study["work"]
    job = OmegaConf.load(work / "study" / "round_0" / "0" / "resolved_config.yaml")
    ckpts, _ = pl.fold_checkpoints(str(work / "study" / "round_0"))
    from medcls.tasks.checkpoint import load_task

    meta = load_task(ckpts[0])[1]
    s = pl.parse_args([f"pool={folder_study['root']}"])
    with pytest.raises(DataError, match=r"holds 32 image\(s\) of the labelled dataset"):
        pl._pool_loader(s, job, meta)

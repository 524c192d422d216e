"""``medcls-cv``: K fold models under one MLflow parent run, then their ensemble (with TTA) on
the held-out test partition and the out-of-fold metrics over every other image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from medcls.cli import cv
from medcls.metrics.classification import compute_metrics

NUM_SAMPLES = 150


def test_split_args() -> None:
    k, ensemble, train = cv.split_args(
        ["k=4", "tta=[hflip,vflip]", "model.name=resnet10t", "+tta=[rot90]", "data=synthetic"]
    )
    assert k == 4
    assert ensemble == ["eval.tta=[hflip,vflip]", "eval.tta=[rot90]"]
    assert train == ["model.name=resnet10t", "data=synthetic"]
    assert cv.split_args([])[0] == 5


def test_k_below_two_is_refused(capsys) -> None:
    assert cv.main(["k=1", "model.name=resnet10t"]) == 2
    assert "k >= 2" in capsys.readouterr().err


@pytest.mark.parametrize("arg", ["k=four", "k=", "k=2.5"])
def test_k_that_is_no_number_is_refused(capsys, arg) -> None:
    assert cv.main([arg, "model.name=resnet10t"]) == 2  # before any training starts
    err = capsys.readouterr().err
    assert f"medcls-cv: {arg}: k is the number of folds" in err and "k=5" in err


def test_the_cli_exits_2_without_a_traceback(helpers, tmp_path) -> None:
    proc = helpers.run_cli("medcls-cv", ["k=four"], cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "k=four: k is the number of folds" in proc.stderr


def balanced_accuracy_of(df: pd.DataFrame) -> tuple[float, list[str]]:
    """Balanced accuracy of a predictions CSV, recomputed from its p_* columns."""
    names = [c[2:] for c in df.columns if c.startswith("p_")]
    pred = df[[f"p_{c}" for c in names]].to_numpy().argmax(axis=1)
    label = np.array([names.index(c) for c in df["label"]])
    recalls = [(pred[label == i] == i).mean() for i in np.unique(label)]
    return float(np.mean(recalls)), names


@pytest.fixture(scope="module")
def cv_run(helpers, tmp_path_factory) -> dict:
    """One ``medcls-cv k=3 tta=[hflip]`` on a tiny synthetic set (~1 minute)."""
    work = tmp_path_factory.mktemp("cv")
    uri = helpers.sqlite_uri(work / "cv.db")
    proc = helpers.run_cli(
        "medcls-cv",
        [
            "k=3",
            "tta=[hflip]",
            *[o for o in helpers.train_overrides() if o != "logger=none"],
            f"data.num_samples={NUM_SAMPLES}",
            "trainer.max_epochs=1",
            "++trainer.limit_train_batches=2",
            f"logger.mlflow.tracking_uri={uri}",
            "experiment_name=cv",
        ],
        cwd=work,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("cv").experiment_id])
    parents = [r for r in runs if r.data.tags.get("medcls.role") == "sweep"]
    assert len(parents) == 1, [r.data.tags for r in runs]
    parent = parents[0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    ensembles = [r for r in children if r.data.tags.get("medcls.role") == "ensemble"]
    assert len(ensembles) == 1, [r.data.tags for r in children]
    ens = ensembles[0]
    local = Path(client.download_artifacts(ens.info.run_id, "", str(work / "artifacts")))
    return {
        "work": work,
        "uri": uri,
        "client": client,
        "runs": runs,
        "parent": parent,
        "folds": [r for r in children if r.data.tags.get("medcls.role") != "ensemble"],
        "ensemble": ens,
        "sweep_dir": Path(parent.data.tags["medcls.sweep_dir"]),
        "predictions": pd.read_csv(local / "ensemble_predictions.csv"),
        "oof": pd.read_csv(local / "oof_predictions.csv"),
    }


def test_cv_one_parent_run_with_a_child_per_fold(cv_run, helpers) -> None:
    parent, folds, sweep_dir = cv_run["parent"], cv_run["folds"], cv_run["sweep_dir"]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["medcls.jobs"] == "3"
    assert parent.data.tags["medcls.failed_jobs"] == "0"
    assert sweep_dir.parent == cv_run["work"] / "multirun" / "cv"
    assert len(cv_run["runs"]) == 5 and len(folds) == 3  # parent, 3 folds, ensemble
    assert sorted(r.data.params["data.fold"] for r in folds) == ["0", "1", "2"]
    for r in folds:
        assert r.info.status == "FINISHED"
        assert r.data.params["data.num_folds"] == "3"
        job_dir = Path(r.data.tags["best_checkpoint"]).parents[1]
        helpers.assert_metrics_match_predictions(r.data.metrics, job_dir / "test_predictions.csv")
        assert Path(r.data.tags["best_checkpoint"]).is_file()
        assert Path(r.data.tags["best_checkpoint"]).is_relative_to(sweep_dir)


def test_cv_ensemble_run(cv_run) -> None:
    ens, work = cv_run["ensemble"], cv_run["work"]
    assert ens.info.status == "FINISHED"
    assert ens.data.tags["tta"] == "hflip"
    # the fold models (paths relative to where medcls-cv ran, or absolute)
    assert sorted((work / p).resolve() for p in ens.data.tags["checkpoints"].split()) == sorted(
        Path(r.data.tags["best_checkpoint"]).resolve() for r in cv_run["folds"]
    )
    artifacts = {a.path for a in cv_run["client"].list_artifacts(ens.info.run_id)}
    assert {"ensemble_predictions.csv", "oof_predictions.csv"} <= artifacts, artifacts
    for key in ("test/auroc_macro", "group/balanced_accuracy", "oof/balanced_accuracy"):
        assert key in ens.data.metrics, key  # (their values: the two tests below)


def test_cv_ensemble_metrics_come_from_the_averaged_predictions(cv_run) -> None:
    predictions, ens = cv_run["predictions"], cv_run["ensemble"]
    recomputed, names = balanced_accuracy_of(predictions)
    assert ens.data.metrics["test/balanced_accuracy"] == pytest.approx(recomputed, abs=1e-6)
    probs = predictions[[f"p_{c}" for c in names]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert predictions["path"].is_unique
    # the held-out test partition is the same for every fold model
    for r in cv_run["folds"]:
        fold_test = pd.read_csv(
            Path(r.data.tags["best_checkpoint"]).parents[1] / "test_predictions.csv"
        )
        assert sorted(fold_test["path"]) == sorted(predictions["path"])


def test_cv_out_of_fold_predictions_cover_every_other_image_once(cv_run) -> None:
    oof, predictions, ens = cv_run["oof"], cv_run["predictions"], cv_run["ensemble"]
    assert oof["path"].is_unique
    assert set(oof["path"]).isdisjoint(predictions["path"])
    assert len(oof) + len(predictions) == NUM_SAMPLES
    assert sorted(oof["job"].unique()) == [0, 1, 2]
    sizes = oof["job"].value_counts()
    assert sizes.min() >= 0.25 * len(oof) and sizes.max() <= 0.45 * len(oof), sizes
    oof_ba, names = balanced_accuracy_of(oof)
    assert ens.data.metrics["oof/balanced_accuracy"] == pytest.approx(oof_ba, abs=1e-6)
    labels = np.array([names.index(c) for c in oof["label"]])
    oof_metrics = compute_metrics(oof[[f"p_{c}" for c in names]].to_numpy(), labels, names)[0]
    assert ens.data.metrics["oof/accuracy"] == pytest.approx(oof_metrics["accuracy"], abs=1e-6)
    # each fold's block is that fold model's own validation predictions
    for job in range(3):
        val = pd.read_csv(cv_run["sweep_dir"] / str(job) / "val_predictions.csv")
        block = oof[oof["job"] == job].set_index("path").loc[val["path"]]
        cols = [f"p_{c}" for c in names]
        np.testing.assert_allclose(block[cols].to_numpy(), val[cols].to_numpy(), atol=1e-6)


def test_report_prints_mean_and_std_of_the_folds(cv_run, helpers) -> None:
    """``medcls-report sweep_dir=...``: one row for the 3 fold models (mean ± std), one for the
    ensemble; the files land in the report folder and on the sweep's parent run."""
    work, client, parent = cv_run["work"], cv_run["client"], cv_run["parent"]
    proc = helpers.run_cli(
        "medcls-report",
        [
            f"sweep_dir={cv_run['sweep_dir']}",
            f"tracking_uri={cv_run['uri']}",
            "bootstrap=200",
            "output_dir=report",
        ],
        cwd=work,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = pd.read_csv(work / "report" / "report.csv", index_col=0)
    assert len(table) == 2, table  # the fold models' configuration and the ensemble
    folds = table[table["runs"] == 3]
    assert len(folds) == 1, table
    values = [r.data.metrics["test/balanced_accuracy"] for r in cv_run["folds"]]
    mean, std = folds["test/balanced_accuracy"].iloc[0].split(" ± ")
    assert float(mean) == pytest.approx(np.mean(values), abs=1e-4)
    assert float(std) == pytest.approx(np.std(values, ddof=1), abs=1e-4)
    assert f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}" in proc.stdout
    lo, hi = (float(v) for v in folds.filter(like="95% CI").iloc[0, 0].strip("[]").split(","))
    assert lo < hi and lo <= float(mean) <= hi  # an interval around the estimate
    ensemble = table[table.index.str.startswith("ensemble")]
    assert ensemble["runs"].tolist() == [1], table
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert logged == {"report/report.md", "report/report.csv", "report/report.png"}


def test_split_args_paths_go_to_both() -> None:
    """The ensemble decodes the test images from the folds' own cache (paths.cache_dir)."""
    _, ensemble, train = cv.split_args(["paths.cache_dir=/c", "ablation=no_gap,full", "tta=[x]"])
    assert ensemble == ["paths.cache_dir=/c", "eval.tta=[x]"]
    assert train == ["paths.cache_dir=/c", "ablation=no_gap,full"]

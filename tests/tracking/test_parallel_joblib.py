"""Parallel jobs on one machine (Hydra's joblib launcher, ``hydra/launcher=parallel``) write to
one SQLite store without losing a run or a metric."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

EPOCHS = 2
LRS = ("1e-3", "2e-3", "3e-3", "4e-3")


@pytest.mark.slow
def test_parallel_joblib_four_jobs_no_lost_metrics(helpers, workdir: Path) -> None:
    db = workdir / "parallel.db"
    uri = helpers.sqlite_uri(db)
    proc = helpers.run_cli(
        "medcls-train",
        [
            "-m",
            "hydra/launcher=parallel",
            "hydra.launcher.n_jobs=4",  # all four at once: four processes writing to one file
            f"optimizer.lr={','.join(LRS)}",
            *[o for o in helpers.train_overrides() if o != "logger=none"],
            "data.num_samples=64",
            f"trainer.max_epochs={EPOCHS}",
            "++trainer.limit_train_batches=2",
            f"logger.mlflow.tracking_uri={uri}",
            "experiment_name=parallel",
        ],
        cwd=workdir,
    )
    log = proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, log
    assert "Joblib.Parallel(n_jobs=4" in proc.stdout + proc.stderr, log
    sweeps = list(workdir.glob("multirun/*/*"))
    assert len(sweeps) == 1
    assert sorted(p.name for p in sweeps[0].iterdir() if p.is_dir()) == ["0", "1", "2", "3"]

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("parallel")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("medcls.role") == "sweep"]
    assert len(parents) == 1 and len(runs) == 5, [r.data.tags for r in runs]
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert (parent.data.tags["medcls.jobs"], parent.data.tags["medcls.failed_jobs"]) == ("4", "0")

    children = [r for r in runs if r is not parent]
    assert all(r.data.tags.get("mlflow.parentRunId") == parent.info.run_id for r in children)
    assert sorted(r.data.tags["medcls.job_num"] for r in children) == ["0", "1", "2", "3"]
    assert sorted(r.data.params["optimizer.lr"] for r in children) == [str(float(lr)) for lr in LRS]
    params = [set(r.data.params) for r in children]
    metrics = [set(r.data.metrics) for r in children]
    assert len(params[0]) > 50 and all(p == params[0] for p in params)  # the whole config
    assert all(m == metrics[0] for m in metrics), [sorted(m ^ metrics[0]) for m in metrics]
    per_epoch = sorted(k for k in metrics[0] if k.startswith(("val/", "train/")))
    assert "val/balanced_accuracy" in per_epoch and "train/loss" in per_epoch
    assert any(k.startswith("test/") for k in metrics[0])
    for run in children:
        assert run.info.status == "FINISHED", run.data.tags
        for key in per_epoch:  # one value per epoch, none lost, none doubled
            steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
            assert len(steps) == EPOCHS and len(set(steps)) == EPOCHS, (key, steps)
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"resolved_config.yaml", "test_predictions.csv", "hydra"} <= artifacts

    con = sqlite3.connect(db)  # parallel jobs on one machine: the store went to WAL mode
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()

"""A two-job Hydra multirun (``medcls-train -m``) lands two complete MLflow runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient


def test_multirun_two_jobs_two_mlflow_runs(helpers, workdir: Path) -> None:
    uri = helpers.sqlite_uri(workdir / "sweep.db")
    proc = helpers.run_cli(
        "medcls-train",
        [
            "-m",
            "optimizer.lr=1e-3,3e-3",
            *[o for o in helpers.train_overrides() if o != "logger=none"],
            "trainer.max_epochs=1",
            "++trainer.limit_train_batches=2",
            f"logger.mlflow.tracking_uri={uri}",
            "experiment_name=sweep",
        ],
        cwd=workdir,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    jobs = sorted(workdir.glob("multirun/*/*/[0-9]"))
    assert [j.name for j in jobs] == ["0", "1"]
    for job in jobs:
        assert (job / "checkpoints" / "best.ckpt").is_file()
        assert (job / ".hydra" / "overrides.yaml").is_file()

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("sweep")
    all_runs = client.search_runs([exp.experiment_id])
    parents = [r for r in all_runs if r.data.tags.get("medcls.role") == "sweep"]
    runs = [r for r in all_runs if r not in parents]
    assert len(parents) == 1 and len(runs) == 2  # one parent run per multirun, a child per job
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in runs)
    assert sorted(r.data.tags["medcls.job_num"] for r in runs) == ["0", "1"]
    assert sorted(float(r.data.params["optimizer.lr"]) for r in runs) == [1e-3, 3e-3]
    # children named by what the sweep varies, not all "test_efficientnet-synthetic"
    assert sorted(r.data.tags["mlflow.runName"] for r in runs) == ["lr=0.001", "lr=0.003"]
    for run in runs:
        assert run.info.status == "FINISHED"
        assert "val/balanced_accuracy" in run.data.metrics
        job_dir = workdir / Path(run.data.tags["best_checkpoint"]).parents[1]
        helpers.assert_metrics_match_predictions(run.data.metrics, job_dir / "test_predictions.csv")
        assert run.data.params["model.name"] == "test_efficientnet"
        assert "optimizer.lr=" in run.data.tags["overrides"]
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        expected = {
            "resolved_config.yaml",
            "confusion_matrix.png",
            "test_predictions.csv",
            "per_class_metrics.csv",
            "test_set_isic.csv",
            "hydra",
        }
        assert expected <= artifacts, artifacts
        hydra_files = {a.path for a in client.list_artifacts(run.info.run_id, "hydra")}
        assert "hydra/overrides.yaml" in hydra_files
    assert runs[0].info.run_id != runs[1].info.run_id
    assert len({r.data.params["optimizer.lr"] for r in runs}) == 2
    # params are settings: what differs between the two jobs is what the sweep varied; the
    # per-job paths (checkpoint folders, output dir) are tags, where Compare does not plot them
    a, b = (r.data.params for r in runs)
    differ = {k for k in a if a[k] != b[k]}
    assert a.keys() == b.keys() and differ == {
        "optimizer.lr",
        "scheduler.max_lr",
    }  # ${optimizer.lr}
    for run in runs:
        assert "callbacks.model_checkpoint.dirpath" not in run.data.params
        dirpath = run.data.tags["callbacks.model_checkpoint.dirpath"]
        assert Path(dirpath) == Path(run.data.tags["best_checkpoint"]).parent


@pytest.mark.slow  # two sweeps of two jobs each (~35 s): the single-run resume is in the fast tier
def test_ckpt_path_last_in_a_multirun_resumes_each_jobs_own_checkpoint(helpers, workdir) -> None:
    """A sweep stopped after epoch 0, run again with ckpt_path=last and more epochs: each job
    continues its own last.ckpt (found by its overrides, not the newest file of the sweep), in
    its own MLflow run and its own folder."""
    import torch

    uri = helpers.sqlite_uri(workdir / "resume.db")
    common = [
        "-m",
        "optimizer.lr=1e-3,3e-3",
        *[o for o in helpers.train_overrides() if o != "logger=none"],
        "scheduler=cosine",
        "scheduler.T_max=2",
        "++trainer.limit_train_batches=2",
        f"logger.mlflow.tracking_uri={uri}",
        "experiment_name=resume_sweep",
    ]
    for leg, extra in (
        ("first", ["trainer.max_epochs=1"]),
        ("again", ["trainer.max_epochs=2", "ckpt_path=last"]),
    ):
        proc = helpers.run_cli(
            "medcls-train", [*common, *extra, f"hydra.sweep.dir=multirun/{leg}"], cwd=workdir
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        if leg == "first":
            started = {
                j: torch.load(
                    workdir / f"multirun/first/{j}/checkpoints/last.ckpt", weights_only=True
                )
                for j in ("0", "1")
            }
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("resume_sweep")
    runs = [
        r
        for r in client.search_runs([exp.experiment_id])
        if r.data.tags.get("medcls.role") != "sweep"
    ]
    assert len(runs) == 2  # the second sweep made no new job runs
    for j in ("0", "1"):
        first = workdir / "multirun" / "first" / j
        again = workdir / "multirun" / "again" / j
        assert (again / "resumed_into.txt").read_text().strip() == str(first)
        assert (
            not (again / "checkpoints").exists() and not (again / "test_predictions.csv").exists()
        )
        last = torch.load(first / "checkpoints" / "last.ckpt", weights_only=True)
        assert last["epoch"] == 1
        run_id = started[j]["medcls"]["mlflow_run_id"]
        assert last["medcls"]["mlflow_run_id"] == run_id  # its own checkpoint, not the other job's
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED"
        assert len(client.get_metric_history(run_id, "val/balanced_accuracy")) == 2
        helpers.assert_metrics_match_predictions(run.data.metrics, first / "test_predictions.csv")

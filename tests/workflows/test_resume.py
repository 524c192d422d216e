"""Resume: a two-epoch run stopped after one epoch continues from last.ckpt, in the same MLflow
run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from medcls.errors import DataError
from medcls.workflows.resume import resume_point
from medcls.workflows.train import run_train


@pytest.mark.parametrize("how", ["last", "explicit"])
def test_resume_continues_the_same_mlflow_run(how, helpers, workdir, mlflow_uri) -> None:
    experiment = f"resume-{how}"
    common = helpers.train_overrides(
        "++trainer.limit_train_batches=2",
        "test=false",
        "scheduler=cosine",  # stepped per epoch: T_max below is the whole run's
        *helpers.mlflow_overrides(mlflow_uri, experiment),
    )
    # "interrupted" after epoch 0 of a 2-epoch schedule (T_max as the full run would have it)
    first = helpers.compose_cfg([*common, "trainer.max_epochs=1", "scheduler.T_max=2"])
    first_dir = first.paths.output_dir  # ${hydra:...}: resolves against the newest compose
    run_train(first)
    ckpt_dir = Path(first_dir) / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    meta = torch.load(last, map_location="cpu", weights_only=True)
    assert meta["epoch"] == 0
    run_id = meta["medcls"]["mlflow_run_id"]

    ckpt_path = "last" if how == "last" else str(last)
    second = helpers.compose_cfg([*common, "trainer.max_epochs=2", f"ckpt_path={ckpt_path}"])
    second_dir = Path(second.paths.output_dir)
    assert str(second_dir) != first_dir
    kept = run_train(second)

    # one run, one folder: the restart's own folder only points at the first one
    assert sorted(p.name for p in second_dir.iterdir()) == ["resumed_into.txt"]
    assert (second_dir / "resumed_into.txt").read_text().strip() == str(Path(first_dir))
    assert (Path(first_dir) / "resolved_config_resumed.yaml").is_file()
    assert (Path(first_dir) / "resolved_config.yaml").is_file()  # the first leg's, kept

    resumed = torch.load(last, map_location="cpu", weights_only=True)  # written in place
    assert (resumed["epoch"], resumed["global_step"]) == (1, 4)
    weights = "model.backbone.conv_stem.weight"
    assert not torch.equal(resumed["state_dict"][weights], meta["state_dict"][weights])
    assert resumed["medcls"]["mlflow_run_id"] == run_id
    assert torch.load(ckpt_dir / "best.ckpt", map_location="cpu", weights_only=True)["medcls"]

    client = MlflowClient(tracking_uri=mlflow_uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    assert [r.info.run_id for r in runs] == [run_id]
    history = client.get_metric_history(run_id, "val/balanced_accuracy")
    assert len(history) == 2
    assert len({m.step for m in history}) == 2
    # the kept model is the best of both legs (Lightning restores it only in the same folder)
    assert kept["val/balanced_accuracy"] == pytest.approx(max(m.value for m in history))
    epochs = sorted(m.value for m in client.get_metric_history(run_id, "epoch"))
    assert epochs[0] == 0 and epochs[-1] == 1
    assert runs[0].data.params["trainer.max_epochs"] == "1"  # params of the original run


def test_last_checkpoint_is_the_latest_epoch_even_without_a_new_best(helpers, workdir) -> None:
    """best.ckpt keeps epoch 0 (the monitored value never improves again); last.ckpt must still
    follow every epoch, or an interrupted run would resume from its best epoch."""
    cfg = helpers.compose_cfg(
        helpers.train_overrides(
            "++trainer.limit_train_batches=1",
            "trainer.max_epochs=3",
            "test=false",
            "callbacks.model_checkpoint.monitor=epoch",
            "callbacks.model_checkpoint.mode=min",
        )
    )
    ckpt_dir = Path(cfg.paths.output_dir) / "checkpoints"
    run_train(cfg)
    assert sorted(p.name for p in ckpt_dir.iterdir()) == ["best.ckpt", "last.ckpt"]
    best = torch.load(ckpt_dir / "best.ckpt", map_location="cpu", weights_only=True)
    last = torch.load(ckpt_dir / "last.ckpt", map_location="cpu", weights_only=True)
    assert best["epoch"] == 0
    assert (last["epoch"], last["global_step"]) == (2, 3)
    # best.ckpt: the weights once (no optimizer moments); last.ckpt: what a resume needs
    assert "optimizer_states" not in best and last["optimizer_states"]
    assert best["medcls"] and best["state_dict"].keys() == last["state_dict"].keys()
    moments = sum(  # AdamW's exp_avg and exp_avg_sq: two more copies of the weights
        t.numel() * t.element_size()
        for state in last["optimizer_states"][0]["state"].values()
        for t in state.values()
        if torch.is_tensor(t) and t.dim() > 0
    )
    size = {p.name: p.stat().st_size for p in ckpt_dir.iterdir()}
    # (plus the schedule, loop and callback states: a few kB)
    assert moments <= size["last.ckpt"] - size["best.ckpt"] <= moments + 100_000
    with pytest.raises(DataError, match="weights only.*last.ckpt"):
        resume_point(helpers.compose_cfg([f"ckpt_path={ckpt_dir / 'best.ckpt'}"]))


# ------------------------------------------------------------------------------- requeue
def test_requeued_job_continues_its_own_run(helpers, workdir, mlflow_uri, monkeypatch) -> None:
    """SLURM/submitit stop a job (preemption, time limit: submitit exits it with SystemExit) and
    start it again, with the same job id, in the same output dir: it continues from its own
    last.ckpt into the same MLflow run, which ends FINISHED."""
    from medcls.tasks import ClassificationTask

    experiment = "requeue"
    monkeypatch.setenv("SUBMITIT_LOCAL_JOB_ID", "4242")  # the scheduler's job id (same on requeue)
    job_dir = workdir / "multirun" / "sweep" / "0"
    overrides = helpers.train_overrides(
        "++trainer.limit_train_batches=2",
        "trainer.max_epochs=2",
        "test=false",
        *helpers.mlflow_overrides(mlflow_uri, experiment),
    )

    start = ClassificationTask.on_train_epoch_start

    def preempted_in_epoch_1(self):
        start(self)
        if self.current_epoch == 1:  # epoch 0 and its checkpoints are done
            raise SystemExit(-1)  # what submitit's signal handler does before requeueing

    monkeypatch.setattr(ClassificationTask, "on_train_epoch_start", preempted_in_epoch_1)
    with pytest.raises(SystemExit):
        run_train(helpers.compose_cfg(overrides, output_dir=job_dir))
    last = job_dir / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] == 0
    client = MlflowClient(tracking_uri=mlflow_uri)
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    run_id = run.info.run_id
    assert run.info.status == "KILLED"  # interrupted, not failed: the sweep does not count it
    assert run.data.tags["medcls.interrupted"] == "SystemExit: -1"

    monkeypatch.setattr(ClassificationTask, "on_train_epoch_start", start)
    run_train(helpers.compose_cfg(overrides, output_dir=job_dir))  # the requeued job

    resumed = torch.load(last, map_location="cpu", weights_only=True)
    assert (resumed["epoch"], resumed["global_step"]) == (1, 4)
    assert resumed["medcls"]["mlflow_run_id"] == run_id
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert [r.info.run_id for r in runs] == [run_id]  # no second run
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert "medcls.interrupted" not in run.data.tags
    assert run.data.tags["medcls.resumes"] == "1"
    assert run.data.tags["medcls.resumed_from"] == str(last)
    history = client.get_metric_history(run_id, "val/balanced_accuracy")
    assert len(history) == 2 and len({m.step for m in history}) == 2  # epochs 0 and 1, once


def test_is_requeued(helpers, workdir, monkeypatch) -> None:
    from medcls.workflows.resume import JOB_MARKER, is_requeued, mark_scheduler_job

    for var in ("SLURM_JOB_ID", "SUBMITIT_LOCAL_JOB_ID", "SLURM_RESTART_COUNT"):
        monkeypatch.delenv(var, raising=False)
    cfg = helpers.compose_cfg(["print_config=false"], output_dir=workdir / "job")
    mark_scheduler_job(cfg)  # not under a scheduler: nothing to note
    assert not (workdir / "job" / JOB_MARKER).exists() and not is_requeued(cfg)

    monkeypatch.setenv("SLURM_JOB_ID", "777")
    assert not is_requeued(cfg)  # first start of job 777
    mark_scheduler_job(cfg)
    assert is_requeued(cfg)  # job 777 again in its own dir
    monkeypatch.setenv("SLURM_JOB_ID", "778")
    assert not is_requeued(cfg)  # another job reusing the dir (hydra.sweep.dir=...) starts fresh
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert is_requeued(cfg)


def test_ckpt_path_auto_without_checkpoint_starts_fresh(helpers, workdir) -> None:
    from medcls.workflows.resume import resume_point

    cfg = helpers.compose_cfg(["print_config=false", "ckpt_path=auto"], output_dir=workdir / "j")
    assert resume_point(cfg) == (None, None)

"""One MLflow parent run per multirun: job tags, failed jobs recorded as FAILED children, the
parent's job counts — in process (callback, run_guarded) and for a real failing sweep."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf, open_dict

from medcls.config import CONFIG_DIR, run_guarded
from medcls.errors import DataError
from medcls.tracking.sweep import (
    PARENT_ENV,
    MLflowSweepCallback,
    job_tags,
    mark_failed,
    record_failed_job,
)
from medcls.tracking.sweep_folder import PARENT_FILE, parent_run_id


@pytest.fixture
def hydra_state():
    """Tests here install their own HydraConfig; put back whatever was there."""
    saved = HydraConfig.instance().cfg
    yield
    HydraConfig.instance().cfg = saved


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def hydra_job(
    sweep_dir: Path,
    overrides: list[str] = (),
    mode: RunMode | None = RunMode.MULTIRUN,
    job_num: int = 0,
) -> tuple[DictConfig, DictConfig]:
    """(config with its ``hydra`` node, the job's config without it), HydraConfig set as in a
    job of a multirun (or of a single run, or of the compose API when ``mode`` is None)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        full = compose(
            "train",
            overrides=[*overrides, f"hydra.sweep.dir={sweep_dir}"],
            return_hydra_config=True,
        )
    with open_dict(full):
        full.hydra.mode = mode
        full.hydra.job.num = job_num
        full.hydra.runtime.output_dir = str(sweep_dir / str(job_num))
    HydraConfig.instance().set_config(full)
    job = OmegaConf.create(OmegaConf.to_container(full))
    with open_dict(job):
        del job["hydra"]
    return full, job


def mlflow_args(uri: str, experiment: str) -> list[str]:
    return [f"logger.mlflow.tracking_uri={uri}", f"experiment_name={experiment}"]


def runs_of(client: MlflowClient, experiment: str) -> list:
    exp = client.get_experiment_by_name(experiment)
    return [] if exp is None else client.search_runs([exp.experiment_id])


# -------------------------------------------------------------------------------- job_tags
def test_job_tags_empty_without_hydra(hydra_state) -> None:
    HydraConfig.instance().cfg = None
    assert not HydraConfig.initialized()
    assert job_tags() == {}


def test_job_tags_empty_in_a_single_run(hydra_state, tmp_path: Path) -> None:
    (tmp_path / PARENT_FILE).write_text("abc")  # even with a parent file lying around
    hydra_job(tmp_path, mode=RunMode.RUN)
    assert job_tags() == {}


def test_job_tags_empty_under_the_compose_api(hydra_state, helpers, workdir) -> None:
    """``hydra.compose`` (notebooks, tests: helpers.compose_cfg) leaves ``hydra.mode`` unset;
    that is not a multirun either, and must not crash MLflow logging."""
    helpers.compose_cfg(["print_config=false"])
    assert HydraConfig.initialized() and HydraConfig.get().mode is None
    assert job_tags() == {}


def test_job_tags_in_a_multirun(hydra_state, tmp_path: Path) -> None:
    sweep = tmp_path / "multirun" / "2026-01-01" / "12-00-00"
    sweep.mkdir(parents=True)
    hydra_job(sweep, job_num=3)
    tags = job_tags()
    assert tags["medcls.job_num"] == "3"
    assert tags["medcls.sweep_id"] == os.path.relpath(sweep, "multirun")
    assert "mlflow.parentRunId" not in tags  # no parent run (e.g. logger=csv)
    (sweep / PARENT_FILE).write_text("0123456789abcdef\n")
    assert parent_run_id(str(sweep)) == "0123456789abcdef"
    assert job_tags()["mlflow.parentRunId"] == "0123456789abcdef"


def test_parent_run_id_missing_or_empty(tmp_path: Path) -> None:
    assert parent_run_id(str(tmp_path)) is None
    (tmp_path / PARENT_FILE).write_text("  \n")
    assert parent_run_id(str(tmp_path)) is None


# ------------------------------------------------------------------------ callback in process
def test_sweep_callback_parent_run_and_job_counts(hydra_state, tmp_path, mlflow_uri) -> None:
    experiment = unique("callback")
    sweep = tmp_path / "sweep"
    full, _ = hydra_job(sweep, mlflow_args(mlflow_uri, experiment))
    callback = MLflowSweepCallback()
    callback.on_multirun_start(full)
    parent = parent_run_id(str(sweep))
    assert parent
    client = MlflowClient(mlflow_uri)
    run = client.get_run(parent)
    assert run.info.status == "RUNNING"
    assert run.data.tags["medcls.role"] == "sweep"
    assert run.data.tags["medcls.sweep_dir"] == str(sweep)
    assert client.get_experiment(run.info.experiment_id).name == experiment

    exp_id = run.info.experiment_id
    ok = client.create_run(exp_id, tags={"mlflow.parentRunId": parent})
    client.set_terminated(ok.info.run_id, "FINISHED")
    bad = client.create_run(exp_id, tags={"mlflow.parentRunId": parent})
    mark_failed(client, bad.info.run_id, RuntimeError("boom"))
    client.create_run(exp_id)  # not a child: must not be counted
    callback.on_multirun_end(full)

    run = client.get_run(parent)
    assert run.data.tags["medcls.jobs"] == "2"
    assert run.data.tags["medcls.failed_jobs"] == "1"
    assert run.info.status == "FAILED"
    failed = client.get_run(bad.info.run_id)
    assert failed.info.status == "FAILED"
    assert failed.data.tags["medcls.error"] == "RuntimeError: boom"


def test_sweep_callback_all_jobs_finished(hydra_state, tmp_path, mlflow_uri) -> None:
    experiment = unique("callback-ok")
    full, _ = hydra_job(tmp_path, mlflow_args(mlflow_uri, experiment))
    callback = MLflowSweepCallback()
    callback.on_multirun_start(full)
    parent = parent_run_id(str(tmp_path))
    client = MlflowClient(mlflow_uri)
    child = client.create_run(
        client.get_run(parent).info.experiment_id, tags={"mlflow.parentRunId": parent}
    )
    client.set_terminated(child.info.run_id, "FINISHED")
    callback.on_multirun_end(full)
    run = client.get_run(parent)
    assert run.info.status == "FINISHED"
    assert (run.data.tags["medcls.jobs"], run.data.tags["medcls.failed_jobs"]) == ("1", "0")


def test_sweep_callback_without_mlflow_does_nothing(hydra_state, tmp_path) -> None:
    full, _ = hydra_job(tmp_path, ["logger=none"])
    MLflowSweepCallback().on_multirun_start(full)
    assert not (tmp_path / PARENT_FILE).exists()
    MLflowSweepCallback().on_multirun_end(full)  # no parent: nothing to close


def test_parent_id_travels_in_every_job_config(hydra_state, tmp_path, mlflow_uri) -> None:
    """Launchers re-compose each job from the sweep's Hydra overrides: the parent id goes with
    them, so a job finds its parent without the sweep dir (a Ray worker on another node)."""
    experiment = unique("env-set")
    full, _ = hydra_job(tmp_path / "sweep", mlflow_args(mlflow_uri, experiment))
    MLflowSweepCallback().on_multirun_start(full)
    parent = parent_run_id(str(tmp_path / "sweep"))
    override = f"++hydra.job.env_set.{PARENT_ENV}='{parent}'"
    assert list(full.hydra.overrides.hydra)[-1] == override

    elsewhere = tmp_path / "no-parent-file-here"  # as seen from another machine
    hydra_job(elsewhere, [override, *mlflow_args(mlflow_uri, experiment)], job_num=2)
    assert parent_run_id(str(elsewhere)) is None
    assert job_tags()["mlflow.parentRunId"] == parent


def test_sweep_leaving_the_machine_with_sqlite_warns(hydra_state, tmp_path, mlflow_uri, caplog):
    experiment = unique("slurm-sqlite")
    full, _ = hydra_job(
        tmp_path, ["hydra/launcher=slurm_gpu", *mlflow_args(mlflow_uri, experiment)]
    )
    with caplog.at_level("WARNING", logger="medcls.tracking.sweep"):
        MLflowSweepCallback().on_multirun_start(full)
    assert "shared file system" in caplog.text and "mlflow server" in caplog.text


def test_interrupted_job_is_killed_not_failed(hydra_state, tmp_path, mlflow_uri) -> None:
    """A job SLURM preempts (submitit exits it to requeue it) is KILLED; the sweep does not
    count it as failed (its requeued run continues the same MLflow run)."""
    experiment = unique("interrupted")
    full, _ = hydra_job(tmp_path, mlflow_args(mlflow_uri, experiment))
    callback = MLflowSweepCallback()
    callback.on_multirun_start(full)
    parent = parent_run_id(str(tmp_path))
    client = MlflowClient(mlflow_uri)
    exp_id = client.get_run(parent).info.experiment_id
    child = client.create_run(exp_id, tags={"mlflow.parentRunId": parent})
    mark_failed(client, child.info.run_id, SystemExit(-1))
    run = client.get_run(child.info.run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags["medcls.interrupted"] == "SystemExit: -1"
    assert "medcls.error" not in run.data.tags
    callback.on_multirun_end(full)
    assert client.get_run(parent).data.tags["medcls.failed_jobs"] == "0"


# ---------------------------------------------------------------------- run_guarded / failures
def test_failed_job_before_its_run_exists_is_recorded(hydra_state, tmp_path, mlflow_uri) -> None:
    experiment = unique("guarded")
    full, job = hydra_job(tmp_path, mlflow_args(mlflow_uri, experiment), job_num=1)
    MLflowSweepCallback().on_multirun_start(full)
    parent = parent_run_id(str(tmp_path))

    def bad_data(cfg):
        raise DataError("data.fold=7 is outside 0..1")

    with pytest.raises(DataError):  # in a multirun the error reaches Hydra (job FAILED)
        run_guarded(bad_data, job)
    client = MlflowClient(mlflow_uri)
    children = [r for r in runs_of(client, experiment) if r.info.run_id != parent]
    assert len(children) == 1
    child = children[0]
    assert child.info.status == "FAILED"
    assert child.data.tags["medcls.error"] == "DataError: data.fold=7 is outside 0..1"
    assert child.data.tags["mlflow.parentRunId"] == parent
    assert child.data.tags["medcls.job_num"] == "1"
    assert f"experiment_name={experiment}" in child.data.tags["overrides"]


def test_failed_job_already_logged_is_not_recorded_twice(hydra_state, tmp_path, mlflow_uri):
    experiment = unique("guarded-logged")
    _, job = hydra_job(tmp_path, mlflow_args(mlflow_uri, experiment))

    def fails_in_fit(cfg):
        e = RuntimeError("inside fit")
        e.medcls_run_logged = True  # what run_train does once its own run is marked FAILED
        raise e

    with pytest.raises(RuntimeError, match="inside fit"):
        run_guarded(fails_in_fit, job)
    assert runs_of(MlflowClient(mlflow_uri), experiment) == []


def test_record_failed_job_needs_mlflow(hydra_state, tmp_path, mlflow_uri) -> None:
    _, job = hydra_job(tmp_path, ["logger=none"])
    record_failed_job(job, RuntimeError("x"))  # no MLflow logger: nothing, and no error


def test_single_run_bad_input_exits_cleanly(hydra_state, tmp_path, mlflow_uri, capsys) -> None:
    experiment = unique("single")
    _, job = hydra_job(tmp_path, mlflow_args(mlflow_uri, experiment), mode=RunMode.RUN)

    def bad_data(cfg):
        raise DataError("no images under /nowhere")

    def bug(cfg):
        raise KeyError("a real bug")

    with pytest.raises(SystemExit) as exc:
        run_guarded(bad_data, job)
    assert exc.value.code == 2
    assert "no images under /nowhere" in capsys.readouterr().out
    with pytest.raises(KeyError):  # not bad input: the traceback is wanted
        run_guarded(bug, job)
    assert run_guarded(lambda cfg: 42, job) == 42
    assert runs_of(MlflowClient(mlflow_uri), experiment) == []  # a single run records nothing


def test_compose_api_bad_input_exits_cleanly(hydra_state, helpers, workdir) -> None:
    """Under the compose API (``hydra.mode`` unset) run_guarded behaves as in a single run."""
    cfg = helpers.compose_cfg(["print_config=false", "logger=none"])

    def bad_data(c):
        raise DataError("bad")

    with pytest.raises(SystemExit) as exc:
        run_guarded(bad_data, cfg)
    assert exc.value.code == 2


# ------------------------------------------------------------------- a real failing sweep
def test_sweep_goes_on_after_failed_jobs(helpers, workdir: Path, mlflow_uri: str) -> None:
    """Four jobs: fold 0 trains; lr=-1 fails inside fit (after its MLflow run exists); fold 7
    (of 2) fails in data setup, before any run exists. Every job shows up as a child run."""
    experiment = unique("failing-sweep")
    proc = helpers.run_cli(
        "medcls-train",
        [
            "-m",
            "data.fold=0,7",
            "data.num_folds=2",
            "optimizer.lr=1e-3,-1",
            *[o for o in helpers.train_overrides() if o != "logger=none"],
            "trainer.max_epochs=1",
            "++trainer.limit_train_batches=2",
            *mlflow_args(mlflow_uri, experiment),
        ],
        cwd=workdir,
    )
    log = proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.returncode != 0, log  # the sweep reports that jobs failed
    assert "Error executing job" in proc.stderr, log

    sweeps = list(workdir.glob("multirun/*/*"))
    assert len(sweeps) == 1, sweeps
    jobs = sorted(p.name for p in sweeps[0].iterdir() if p.is_dir())
    assert jobs == ["0", "1", "2", "3"], jobs  # every job ran, after the failures too
    assert (sweeps[0] / "0" / "checkpoints" / "best.ckpt").is_file()

    client = MlflowClient(mlflow_uri)
    runs = runs_of(client, experiment)
    parents = [r for r in runs if r.data.tags.get("medcls.role") == "sweep"]
    assert len(parents) == 1
    parent = parents[0]
    assert parent_run_id(str(sweeps[0])) == parent.info.run_id
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 4, [r.data.tags for r in runs]  # one run per job, no duplicates
    assert len(runs) == 5
    by_job = {r.data.tags["medcls.job_num"]: r for r in children}
    assert sorted(by_job) == ["0", "1", "2", "3"]

    ok = by_job["0"]
    assert ok.info.status == "FINISHED"
    assert "medcls.error" not in ok.data.tags
    helpers.assert_metrics_match_predictions(
        ok.data.metrics, sweeps[0] / "0" / "test_predictions.csv"
    )

    in_fit = by_job["1"]  # fold 0, lr=-1
    assert in_fit.info.status == "FAILED"
    assert in_fit.data.tags["medcls.error"].startswith("ValueError:")
    assert "learning rate" in in_fit.data.tags["medcls.error"]
    assert in_fit.data.params["optimizer.lr"] == "-1"

    for num in ("2", "3"):  # fold 7
        run = by_job[num]
        assert run.info.status == "FAILED", num
        assert run.data.tags["medcls.error"] == (
            "DataError: data.fold=7 is outside 0..1 (data.num_folds=2)."
        )
        assert "data.fold=7" in run.data.tags["overrides"]

    # The parent run says how the sweep went, even though Hydra stopped with an error.
    parent = client.get_run(parent.info.run_id)
    assert parent.data.tags.get("medcls.failed_jobs") == "3", parent.data.tags
    assert parent.data.tags.get("medcls.jobs") == "4"
    assert parent.info.status == "FAILED"

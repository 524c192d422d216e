"""``hparams_search=optuna`` end to end: a search that resumes from its SQLite storage with new
suggestions, trial values that are the kept checkpoint's val metric, failed trials stored as
FAIL, one MLflow parent per session with the trial number on each child; and the value the
train task returns to the sweeper. (The pieces in process: test_optuna_pieces.py.)"""

from __future__ import annotations

import optuna
import pytest
import torch
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from medcls.cli.train import optimized_value

optuna.logging.set_verbosity(optuna.logging.WARNING)

METRIC = "val/balanced_accuracy"


# ------------------------------------------------------------------------ end to end (CLI)
@pytest.fixture(scope="module")
def search(helpers, mlflow_uri, tmp_path_factory) -> dict:
    """Three ``medcls-train hparams_search=optuna hydra.sweeper.n_trials=1`` sessions in one
    directory: a new study, the same command again (resume), then a session whose job fails."""
    work = tmp_path_factory.mktemp("optuna")
    experiment = "optuna-resume"
    args = [
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=1",
        *[o for o in helpers.train_overrides() if o != "logger=none"],
        "data.num_samples=64",
        "trainer.max_epochs=2",  # the kept epoch need not be the last
        "callbacks.early_stopping=null",
        *helpers.mlflow_overrides(mlflow_uri, experiment),
    ]
    procs = [helpers.run_cli("medcls-train", args, cwd=work) for _ in range(2)]
    for proc in procs:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # Fails fast, after the trial was asked: the Trainer refuses the unknown argument.
    failed = helpers.run_cli("medcls-train", [*args, "+trainer.no_such_argument=1"], cwd=work)
    study = optuna.load_study(
        study_name=f"{experiment}-synthetic-test_efficientnet",
        storage=helpers.sqlite_uri(work / "optuna.db"),
    )
    client = MlflowClient(mlflow_uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])
    return {"study": study, "failed": failed, "client": client, "runs": runs, "work": work}


@pytest.mark.slow
def test_resumed_search_holds_the_trials_of_every_session(search) -> None:
    trials = search["study"].get_trials(deepcopy=False)
    assert [t.number for t in trials] == [0, 1, 2]
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAIL]
    assert search["study"].direction == optuna.study.StudyDirection.MAXIMIZE
    for t in trials:
        assert set(t.params) == {"optimizer.lr", "optimizer.weight_decay", "loss"}
        assert 1e-4 <= t.params["optimizer.lr"] <= 1e-2


@pytest.mark.slow
def test_resumed_session_suggests_new_parameters(search) -> None:
    first, resumed, third = (t.params for t in search["study"].get_trials(deepcopy=False))
    # Without the seed offset every session would start with the same suggestion.
    assert resumed["optimizer.lr"] != first["optimizer.lr"]
    assert resumed["optimizer.weight_decay"] != first["optimizer.weight_decay"]
    assert third["optimizer.lr"] not in (first["optimizer.lr"], resumed["optimizer.lr"])


@pytest.mark.slow
def test_trial_values_are_the_val_metric_of_their_mlflow_runs(search) -> None:
    runs = search["runs"]
    parents = [r for r in runs if r.data.tags.get("medcls.role") == "sweep"]
    assert len(parents) == 3  # one parent run per session
    done = [t for t in search["study"].get_trials() if t.state == TrialState.COMPLETE]
    for trial, parent in zip(done, parents[:2], strict=True):
        children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        assert len(children) == 1
        child = children[0]
        assert child.data.tags["optuna.trial"] == str(trial.number)
        assert child.info.status == "FINISHED"
        assert float(child.data.params["optimizer.lr"]) == pytest.approx(
            trial.params["optimizer.lr"], rel=1e-12
        )
        assert f"loss={trial.params['loss']}" in child.data.tags["overrides"].split()
        # the value is the kept (best) checkpoint's monitored score, not the last epoch's
        history = search["client"].get_metric_history(child.info.run_id, METRIC)
        assert len(history) == 2
        assert trial.value == pytest.approx(max(h.value for h in history), abs=1e-6)
        best = torch.load(search["work"] / child.data.tags["best_checkpoint"], weights_only=True)
        (state,) = [
            v
            for k, v in best["callbacks"].items()
            if k.startswith("ModelCheckpoint") and v.get("monitor") == METRIC
        ]
        assert trial.value == pytest.approx(float(state["best_model_score"]), abs=1e-6)


@pytest.mark.slow
def test_a_failed_job_is_a_failed_trial_and_ends_the_session(search) -> None:
    proc = search["failed"]
    assert proc.returncode != 0
    assert "no_such_argument" in proc.stderr
    trial = search["study"].get_trials(deepcopy=False)[2]
    assert trial.state == TrialState.FAIL and trial.value is None
    runs = search["runs"]
    parent = [r for r in runs if r.data.tags.get("medcls.role") == "sweep"][2]
    child = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert [c.info.status for c in child] == ["FAILED"]
    assert "no_such_argument" in child[0].data.tags["medcls.error"]
    assert search["client"].get_run(parent.info.run_id).info.status == "FAILED"


# ------------------------------------------------------------ the value returned to the sweeper
def test_optimized_value() -> None:
    metrics = {METRIC: 0.75, "val/loss": 0.5}
    assert optimized_value(metrics, METRIC) == 0.75
    assert optimized_value(metrics, None) is None  # plain runs and grid sweeps return nothing
    with pytest.raises(KeyError, match="val/auroc_macro.*val/balanced_accuracy, val/loss"):
        optimized_value(metrics, "val/auroc_macro")
    with pytest.raises(KeyError, match="logged: nothing"):
        optimized_value({}, METRIC)
    with pytest.raises(FloatingPointError, match="val/loss.*NaN"):
        optimized_value({"val/loss": float("nan")}, "val/loss")

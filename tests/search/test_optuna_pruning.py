"""``hparams_search=optuna hydra.sweeper.pruner=median`` end to end: a 6-trial search on the
synthetic data prunes trials from the epochs its jobs report, a pruned job stops early and its
MLflow run ends FINISHED tagged pruned, and the same with parallel jobs (joblib launcher)."""

from __future__ import annotations

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

METRIC = "val/balanced_accuracy"
EPOCHS = 4


def pruned_search(helpers, mlflow_uri, work, experiment: str, *extra: str) -> dict:
    args = [
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=6",
        "hydra.sweeper.pruner=median",
        "hydra.sweeper.sampler=random",
        # from hopeless to good: some trials fall below the median epoch by epoch (a
        # command-line line replaces the config's; a plain value fixes it)
        "optimizer.lr=tag(log, interval(1e-6, 3e-2))",
        "loss=ce",
        "optimizer.weight_decay=0.0",
        *[o for o in helpers.train_overrides() if o != "logger=none"],
        "data.num_samples=96",
        f"trainer.max_epochs={EPOCHS}",
        "callbacks.early_stopping=null",
        *helpers.mlflow_overrides(mlflow_uri, experiment),
        *extra,
    ]
    proc = helpers.run_cli("medcls-train", args, cwd=work)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    study = optuna.load_study(
        study_name=f"{experiment}-synthetic-test_efficientnet",
        storage=helpers.sqlite_uri(work / "optuna.db"),
    )
    client = MlflowClient(mlflow_uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], "tags.`optuna.trial` != ''")
    return {"study": study, "client": client, "runs": runs, "proc": proc}


@pytest.fixture(scope="module")
def basic(helpers, mlflow_uri, tmp_path_factory) -> dict:
    return pruned_search(helpers, mlflow_uri, tmp_path_factory.mktemp("prune"), "prune-basic")


def check_pruned_search(search: dict) -> None:
    trials = search["study"].get_trials()
    assert len(trials) == 6
    states = [t.state for t in trials]
    assert TrialState.PRUNED in states, [t.intermediate_values for t in trials]
    assert set(states) <= {TrialState.COMPLETE, TrialState.PRUNED}
    runs = {int(r.data.tags["optuna.trial"]): r for r in search["runs"]}
    assert sorted(runs) == [t.number for t in trials]
    for t in trials:
        run = runs[t.number]
        assert run.info.status == "FINISHED"
        # every epoch's val metric reached the trial, as MLflow logged it
        history = search["client"].get_metric_history(run.info.run_id, METRIC)
        logged = {h.step: h.value for h in history}
        assert len(t.intermediate_values) == len(history)
        assert sorted(t.intermediate_values.values()) == pytest.approx(sorted(logged.values()))
        if t.state == TrialState.PRUNED:
            assert run.data.tags["optuna.pruned"] == "true"
            assert len(t.intermediate_values) < EPOCHS  # stopped early
            assert "test/balanced_accuracy" not in run.data.metrics  # and not tested
        else:
            assert "optuna.pruned" not in run.data.tags
            assert len(t.intermediate_values) == EPOCHS
            assert "test/balanced_accuracy" in run.data.metrics


@pytest.mark.slow
def test_median_pruner_prunes_and_pruned_runs_finish(basic) -> None:
    check_pruned_search(basic)


@pytest.mark.slow
def test_pruned_search_with_parallel_jobs(helpers, mlflow_uri, tmp_path) -> None:
    search = pruned_search(
        helpers, mlflow_uri, tmp_path, "prune-joblib",
        "hydra/launcher=parallel", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2",
    )  # fmt: skip
    check_pruned_search(search)

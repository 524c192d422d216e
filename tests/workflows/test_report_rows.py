"""``medcls-report``'s rows: runs that only hold other runs (a sweep's parent, a pseudo-labelling
study) and runs without any of the table's metrics (pseudo-label rounds trained with
``test=false``) are left out, so they cannot make empty rows in a study's table."""

from __future__ import annotations

import mlflow
import pytest

from medcls.errors import DataError
from medcls.workflows.report import run_report

EXPERIMENT = "report-rows"


def _run(client, exp_id: str, overrides: str, metrics: dict[str, float], role: str | None = None):
    tags = {"overrides": overrides, **({"medcls.role": role} if role else {})}
    run = client.create_run(exp_id, tags=tags)
    for k, v in metrics.items():
        client.log_metric(run.info.run_id, k, v)
    client.set_terminated(run.info.run_id, "FINISHED")


@pytest.fixture
def store(tmp_path, helpers) -> str:
    uri = helpers.sqlite_uri(tmp_path / "mlflow.db")
    client = mlflow.MlflowClient(uri)
    exp_id = client.create_experiment(EXPERIMENT)
    for fold, acc in enumerate((0.6, 0.8)):
        _run(client, exp_id, f"model=a data.fold={fold}", {"test/accuracy": acc})
    _run(client, exp_id, "model=a", {}, role="pseudo")  # a study run: holds the rounds
    _run(client, exp_id, "model=a test=False data.fold=0", {"val/accuracy": 0.7})  # no test
    return uri


def _cfg(helpers, tmp_path, uri: str, *extra: str):
    return helpers.compose_cfg(
        [
            f"tracking_uri={uri}",
            f"experiment_name={EXPERIMENT}",
            "metrics=[test/accuracy]",
            "bootstrap=0",
            *extra,
        ],
        config_name="report",
        output_dir=tmp_path / "report",
    )


def test_rows_are_the_runs_with_metrics(store, helpers, tmp_path, capsys) -> None:
    summary = run_report(_cfg(helpers, tmp_path, store))
    assert summary.index.tolist() == ["model=a"]
    out = capsys.readouterr().out
    assert "2 runs, 1 configurations" in out
    assert summary.loc["model=a", "runs"] == 2
    assert summary.loc["model=a", "test/accuracy"] == pytest.approx(0.7)  # numbers ...
    assert summary.loc["model=a", "test/accuracy std"] == pytest.approx(0.1414, abs=1e-4)
    assert "0.7000 ± 0.1414" in out  # ... printed as text
    assert "1 run(s) without any of the metrics left out" in out


def test_no_run_with_the_metrics_is_a_clear_error(store, helpers, tmp_path) -> None:
    with pytest.raises(DataError, match="has any of the metrics"):
        run_report(_cfg(helpers, tmp_path, store, "metrics=[test/auroc_positive]"))

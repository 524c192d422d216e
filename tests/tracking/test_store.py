"""A locked SQLite store is retried, not fatal: the retry wrapper, the retrying MlflowClient and
Lightning logger, WAL mode."""

from __future__ import annotations

import sqlite3
import uuid

import pytest
import sqlalchemy.exc
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import TEMPORARILY_UNAVAILABLE
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from mlflow.tracking import MlflowClient

from medcls.tracking import store
from medcls.tracking.store import (
    RetryingMlflowClient,
    RetryingMLFlowLogger,
    StoreLockedError,
    enable_wal,
    is_locked_error,
    retry_locked,
    sqlite_path,
)


def locked_error() -> MlflowException:
    """What MLflow's SQLAlchemy store raises when SQLite's lock outlasts its busy timeout."""
    raw = sqlite3.OperationalError("database is locked")
    wrapped = sqlalchemy.exc.OperationalError("INSERT INTO metrics ...", {}, raw)
    try:
        raise MlflowException(message=wrapped, error_code=TEMPORARILY_UNAVAILABLE) from wrapped
    except MlflowException as e:
        return e


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the backoff delays instead of sleeping them."""
    delays: list[float] = []
    monkeypatch.setattr(store, "_sleep", delays.append)
    return delays


class Flaky:
    """Raises ``error`` on the first ``failures`` calls, then returns ``"ok"``."""

    def __init__(self, failures: int, error: BaseException | None = None) -> None:
        self.failures, self.calls = failures, 0
        self.error = error or locked_error()

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "ok"


def test_locked_errors_are_recognised() -> None:
    assert is_locked_error(locked_error())
    assert is_locked_error(sqlite3.OperationalError("database is locked"))
    assert is_locked_error(sqlite3.OperationalError("database table is locked"))
    assert not is_locked_error(sqlite3.OperationalError("no such table: runs"))
    assert not is_locked_error(MlflowException("Run 'abc' not found"))
    assert not is_locked_error(KeyboardInterrupt())


def test_retry_recovers_from_a_locked_database(no_sleep) -> None:
    fn = Flaky(failures=3)
    assert retry_locked(fn, attempts=5, base_delay=0.1) == "ok"
    assert fn.calls == 4
    assert len(no_sleep) == 3
    # exponential backoff (±25 % jitter)
    for delay, expected in zip(no_sleep, (0.1, 0.2, 0.4), strict=True):
        assert 0.75 * expected <= delay <= 1.25 * expected


def test_retry_gives_up_with_a_clear_error(no_sleep) -> None:
    fn = Flaky(failures=100)
    with pytest.raises(StoreLockedError, match=r"still locked after 4 attempts \(log_batch") as e:
        retry_locked(fn, attempts=4, base_delay=0.1, what="log_batch")
    assert fn.calls == 4 and len(no_sleep) == 3
    assert "mlflow server" in str(e.value)  # says what to do about it
    assert is_locked_error(e.value.__cause__)  # the original error stays attached


def test_retry_does_not_touch_other_errors(no_sleep) -> None:
    fn = Flaky(failures=1, error=MlflowException("Run 'abc' not found"))
    with pytest.raises(MlflowException, match="not found"):
        retry_locked(fn, attempts=5)
    assert fn.calls == 1 and no_sleep == []


def test_backoff_is_capped(no_sleep) -> None:
    retry_locked(Flaky(failures=6), attempts=7, base_delay=1.0, max_delay=4.0)
    assert max(no_sleep) <= 4.0 * 1.25


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def flaky_store_method(monkeypatch, name: str, failures: int) -> list[int]:
    """Make ``SqlAlchemyStore.<name>`` fail ``failures`` times with a locked database."""
    original = getattr(SqlAlchemyStore, name)
    calls: list[int] = []

    def method(self, *args, **kwargs):
        calls.append(1)
        if len(calls) <= failures:
            raise locked_error()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SqlAlchemyStore, name, method)
    return calls


def test_retrying_client_loses_no_metric(monkeypatch, no_sleep, mlflow_uri) -> None:
    client = RetryingMlflowClient(mlflow_uri)
    run = client.create_run(client.create_experiment(unique("retry-client")))
    run_id = run.info.run_id
    calls = flaky_store_method(monkeypatch, "log_metric", failures=2)
    client.log_metric(run_id, "val/loss", 0.5, step=0)
    assert len(calls) == 3 and len(no_sleep) == 2
    history = MlflowClient(mlflow_uri).get_metric_history(run_id, "val/loss")
    assert [(m.step, m.value) for m in history] == [(0, 0.5)]  # once, not three times


def test_lightning_logger_retries_epoch_metrics(monkeypatch, no_sleep, mlflow_uri) -> None:
    logger = RetryingMLFlowLogger(experiment_name=unique("retry-logger"), tracking_uri=mlflow_uri)
    assert isinstance(logger.experiment, RetryingMlflowClient)
    calls = flaky_store_method(monkeypatch, "log_batch", failures=2)
    logger.log_hyperparams({"optimizer.lr": 0.001})
    logger.log_metrics({"val/accuracy": 0.75, "val/loss": 0.5}, step=3)
    assert len(calls) == 4  # params: 2 failures + 1; metrics: 1
    run = MlflowClient(mlflow_uri).get_run(logger.run_id)
    assert run.data.params == {"optimizer.lr": "0.001"}
    assert run.data.metrics == {"val/accuracy": 0.75, "val/loss": 0.5}


def test_retrying_client_gives_up(monkeypatch, no_sleep, mlflow_uri) -> None:
    monkeypatch.setattr(store, "ATTEMPTS", 3)
    client = RetryingMlflowClient(mlflow_uri)
    run = client.create_run(client.create_experiment(unique("retry-give-up")))
    flaky_store_method(monkeypatch, "set_tag", failures=100)
    with pytest.raises(StoreLockedError, match=r"after 3 attempts \(set_tag"):
        client.set_tag(run.info.run_id, "k", "v")


def test_sqlite_path() -> None:
    assert sqlite_path("sqlite:////data/mlflow.db") == "/data/mlflow.db"
    assert sqlite_path("sqlite:////data/mlflow.db?timeout=30") == "/data/mlflow.db"
    assert sqlite_path("sqlite:///:memory:") is None
    assert sqlite_path("http://mlflow.internal:5000") is None
    assert sqlite_path(None) is None


def test_enable_wal(tmp_path, helpers) -> None:
    db = tmp_path / "store.db"
    assert not enable_wal(helpers.sqlite_uri(db))  # no store there yet: nothing to do
    sqlite3.connect(db).execute("CREATE TABLE t (x)").connection.close()
    assert enable_wal(helpers.sqlite_uri(db))
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # persistent
    con.close()

"""Many processes, one MLflow store: retry a locked SQLite database instead of failing a run.

Parallel sweep jobs (``hydra/launcher=parallel`` or ``joblib``, ``submitit_local``) all write to
the same ``sqlite:///mlflow.db``. MLflow already waits up to 20 s for SQLite's lock (it sets
``PRAGMA busy_timeout = 20000`` on every session) and rolls a failed transaction back; when the
lock stays taken for longer (a slow disk, an ``mlflow ui`` reading a large table, many jobs),
the call fails with ``database is locked``. Here such a call is retried with backoff, so no run,
parameter or metric is lost; after ``attempts`` tries it fails with :class:`StoreLockedError`,
which says what to do about it.

- :class:`RetryingMlflowClient`: an ``MlflowClient`` whose store calls retry.
- :class:`RetryingMLFlowLogger`: Lightning's ``MLFlowLogger`` on that client (the
  ``logger=mlflow`` target), so per-epoch metrics, params and artifacts retry as well.
- :func:`enable_wal`: switch a SQLite store to write-ahead logging (readers no longer block the
  writer), done by the sweep callback for launchers that run jobs in parallel on one machine.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import sqlite3
import time
from collections.abc import Callable
from typing import Any, TypeVar

from mlflow import MlflowClient
from pytorch_lightning.loggers import MLFlowLogger

log = logging.getLogger(__name__)
T = TypeVar("T")

ATTEMPTS = 8  # each attempt itself waits up to 20 s (MLflow's busy_timeout) for the lock
BASE_DELAY = 0.5  # seconds before the 2nd attempt; doubles each time (with jitter) ...
MAX_DELAY = 15.0  # ... up to this
LOCKED_MESSAGES = ("database is locked", "database table is locked", "database schema is locked")


class StoreLockedError(RuntimeError):
    """The MLflow store stayed locked through every retry."""


def caused_by(error: BaseException, test: Callable[[BaseException], bool]) -> bool:
    """True when ``test`` holds for ``error`` or any exception in its chain (``__cause__``,
    else ``__context__``): MLflow wraps the database's own errors in its own."""
    seen: set[int] = set()
    e: BaseException | None = error
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if test(e):
            return True
        e = e.__cause__ or e.__context__
    return False


def is_locked_error(error: BaseException) -> bool:
    """True for SQLite's "database is locked", however MLflow/SQLAlchemy wrapped it
    (``MlflowException`` ← ``sqlalchemy.exc.OperationalError`` ← ``sqlite3.OperationalError``)."""
    return caused_by(
        error,
        lambda e: isinstance(e, Exception) and any(m in str(e).lower() for m in LOCKED_MESSAGES),
    )


def retry_locked(
    fn: Callable[..., T],
    *args: Any,
    attempts: int | None = None,
    base_delay: float | None = None,
    max_delay: float | None = None,
    what: str | None = None,
    **kwargs: Any,
) -> T:
    """``fn(*args, **kwargs)``, retried while the store is locked (any other error is raised at
    once); defaults: :data:`ATTEMPTS`, :data:`BASE_DELAY`, :data:`MAX_DELAY`. A locked SQLite
    transaction is rolled back, so retrying never writes twice."""
    attempts = ATTEMPTS if attempts is None else attempts
    base_delay = BASE_DELAY if base_delay is None else base_delay
    max_delay = MAX_DELAY if max_delay is None else max_delay
    what = what or getattr(fn, "__name__", "MLflow call")
    waited = 0.0
    for attempt in range(1, attempts + 1):
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            if not is_locked_error(e):
                raise
            if attempt == attempts:
                raise StoreLockedError(
                    f"MLflow store still locked after {attempts} attempts ({what}; "
                    f"{waited:.0f} s of backoff on top of SQLite's own 20 s wait per attempt). "
                    "Another process holds a long write lock on the SQLite file. For many "
                    "parallel jobs run an MLflow server (mlflow server --backend-store-uri "
                    "sqlite:///mlflow.db) and set MLFLOW_TRACKING_URI=http://<host>:5000, or "
                    "run fewer jobs at once (hydra.launcher.n_jobs)."
                ) from e
            delay = min(max_delay, base_delay * 2 ** (attempt - 1)) * random.uniform(0.75, 1.25)
            log.warning(
                "MLflow store locked (%s), attempt %d/%d; retrying in %.1f s",
                what,
                attempt,
                attempts,
                delay,
            )
            _sleep(delay)
            waited += delay
    raise AssertionError("unreachable")


def _sleep(seconds: float) -> None:  # (tests replace it)
    time.sleep(seconds)


def _retrying(method: Callable[..., T]) -> Callable[..., T]:
    @functools.wraps(method)
    def wrapper(self, *args: Any, **kwargs: Any) -> T:
        return retry_locked(lambda: method(self, *args, **kwargs), what=method.__name__)

    return wrapper


# Every MlflowClient call medcls and Lightning's MLFlowLogger make (each is one store transaction,
# or an artifact copy, which is idempotent).
RETRIED_METHODS = (
    "create_experiment",
    "get_experiment",
    "get_experiment_by_name",
    "search_experiments",
    "create_run",
    "get_run",
    "update_run",
    "set_terminated",
    "delete_run",
    "search_runs",
    "get_metric_history",
    "log_metric",
    "log_param",
    "log_batch",
    "set_tag",
    "delete_tag",
    "log_artifact",
    "log_artifacts",
    "list_artifacts",
    "download_artifacts",
)


class RetryingMlflowClient(MlflowClient):
    """``MlflowClient`` whose store calls (and the store's creation) retry on a locked SQLite
    database; see :func:`retry_locked`."""

    __init__ = _retrying(MlflowClient.__init__)


for _name in RETRIED_METHODS:
    setattr(RetryingMlflowClient, _name, _retrying(getattr(MlflowClient, _name)))


class RetryingMLFlowLogger(MLFlowLogger):
    """Lightning's ``MLFlowLogger`` writing through a :class:`RetryingMlflowClient`: its
    per-epoch ``log_batch``, params, run creation and status updates retry while the store is
    locked. Everything else is Lightning's (only global rank 0 talks to MLflow)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._mlflow_client = RetryingMlflowClient(self._tracking_uri)


def sqlite_path(uri: str | None) -> str | None:
    """The database file of a ``sqlite:///...`` tracking URI (None for anything else)."""
    if not uri or not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///") :].split("?", 1)[0]
    return None if not path or path == ":memory:" else os.path.abspath(path)


def enable_wal(uri: str | None) -> bool:
    """Put an existing SQLite store into write-ahead-log mode (persistent; readers and the
    writer stop blocking each other). Only for processes on one machine: WAL needs shared
    memory, so it must not be used by jobs on several hosts sharing the file over NFS."""
    path = sqlite_path(uri)
    if path is None or not os.path.isfile(path):
        return False
    try:
        con = sqlite3.connect(path, timeout=30)
        try:
            mode = con.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error as e:
        log.warning("could not switch %s to WAL mode: %s", path, e)
        return False
    return str(mode).lower() == "wal"

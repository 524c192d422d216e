"""Partitions as MLflow datasets: two parallel jobs that create the same dataset at once."""

from __future__ import annotations

import numpy as np
import pytest
from mlflow.exceptions import MlflowException
from sqlalchemy.exc import IntegrityError

from medcls.data.records import Record
from medcls.tracking.datasets import log_partitions

RECORDS = [Record(f"/d/{i}.png", i % 2) for i in range(6)]


class Client:
    """Fails its first ``log_inputs`` with ``error``, then records the calls."""

    def __init__(self, error: Exception) -> None:
        self.error, self.calls = error, []

    def log_inputs(self, run_id, datasets):
        self.calls.append([d.dataset.name for d in datasets])
        if len(self.calls) == 1:
            raise self.error


def wrapped(cause: Exception) -> MlflowException:
    try:  # as MLflow's SQLAlchemy store raises it: the cause in the chain
        raise MlflowException("(sqlite3.IntegrityError) UNIQUE constraint failed") from cause
    except MlflowException as e:
        return e


def log(client) -> None:
    parts = {"train": np.arange(4), "test": np.arange(4, 6), "val": np.arange(0)}
    log_partitions(client, "run", "synthetic", "synthetic", RECORDS, parts, ["a", "b"])


def test_a_dataset_another_job_just_created_is_logged_again():
    client = Client(wrapped(IntegrityError("INSERT INTO datasets", {}, Exception("UNIQUE"))))
    log(client)
    assert client.calls == [["synthetic-train", "synthetic-test"]] * 2  # retried once, whole


def test_other_errors_are_raised():
    client = Client(wrapped(ValueError("no such run")))
    with pytest.raises(MlflowException):
        log(client)
    assert len(client.calls) == 1

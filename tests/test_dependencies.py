"""The installed set: ``pip check`` clean, current majors (SQLAlchemy 2, MLflow ≥ 3.17,
optuna ≥ 4), no hydra-optuna-sweeper, and medcls's own sweeper where Hydra looks for plugins."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version

import pytest
from packaging.version import Version


def test_pip_check_is_clean() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_current_majors() -> None:
    assert Version(version("sqlalchemy")).major >= 2
    assert Version(version("mlflow")) >= Version("3.17")
    assert Version(version("optuna")).major >= 4


def test_no_stale_optuna_sweeper() -> None:
    with pytest.raises(PackageNotFoundError):
        version("hydra-optuna-sweeper")  # it declares optuna<3


def test_hydra_finds_the_medcls_sweeper() -> None:
    from hydra.core.plugins import Plugins
    from hydra.plugins.sweeper import Sweeper

    found = {f"{p.__module__}.{p.__name__}" for p in Plugins.instance().discover(Sweeper)}
    assert "hydra_plugins.medcls_optuna_sweeper.sweeper.MedclsOptunaSweeper" in found

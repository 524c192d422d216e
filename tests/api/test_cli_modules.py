"""The command-line modules live in ``medcls.cli``: importing any of them leaves the Python API
functions ``medcls.train`` & co. callable (a module named ``medcls/train.py`` used to replace
the function on first import), and every ``[project.scripts]`` entry names one of them."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest

import medcls
from medcls import api

COMMANDS = (
    "train",
    "eval",
    "predict",
    "ensemble",
    "cv",
    "pseudo",
    "report",
    "ui",
    "audit",
    "export",
)
PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_importing_every_command_leaves_the_api_functions_callable() -> None:
    for name in COMMANDS:
        importlib.import_module(f"medcls.cli.{name}")
    for name in ("train", "evaluate", "load", "report", "compose"):
        fn = getattr(medcls, name)
        assert inspect.isfunction(fn) and fn is getattr(api, name), name


def test_every_script_is_a_cli_module_main() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    scripts = tomllib.loads(PYPROJECT.read_text())["project"]["scripts"]
    assert sorted(scripts) == sorted(f"medcls-{c}" for c in COMMANDS)
    for script, target in scripts.items():
        module, func = target.split(":")
        assert module == f"medcls.cli.{script.removeprefix('medcls-')}", script
        assert callable(getattr(importlib.import_module(module), func)), target

"""Where the configs live, and how entry points report bad input."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Callable
from importlib.resources import files
from typing import Any

from omegaconf import OmegaConf

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(
    lambda record: "litmodels" not in record.getMessage()  # an advert, not information
)


def _config_dir() -> str:
    """``$MEDCLS_CONFIG_DIR``, else the repository's ``conf/`` (editable install), else the
    copy packaged inside the wheel."""
    env = os.environ.get("MEDCLS_CONFIG_DIR")
    if env:
        return os.path.abspath(env)
    repo_conf = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "conf"))
    if os.path.isfile(os.path.join(repo_conf, "train.yaml")):
        return repo_conf
    return str(files("medcls") / "conf")


CONFIG_DIR = _config_dir()

# `${medcls.cwd:}`: where the command was started (not $PWD, which a parent process may set).
if not OmegaConf.has_resolver("medcls.cwd"):
    OmegaConf.register_new_resolver("medcls.cwd", os.getcwd)


def run_guarded(fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn``; bad input (``DataError``, missing files) ends a single run with a short
    message instead of a traceback. In a multirun the error propagates so the sweep can mark
    that job as failed and go on."""
    from medcls.errors import DataError, WeightsError
    from medcls.tracking.sweep import is_multirun

    multirun = is_multirun()
    try:
        return fn(*args)
    except Exception as e:
        if multirun:
            from medcls.tracking.sweep import record_failed_job

            if not getattr(e, "medcls_run_logged", False) and args:
                record_failed_job(args[0], e)
            raise
        if not isinstance(e, DataError | FileNotFoundError | WeightsError):
            raise
        from medcls.utils.console import console

        console.print(f"[bold red]error:[/] {e}")
        sys.exit(2)

"""medcls from Python (a notebook, a script): the same Hydra composition and the same workflow
functions as the command line, returning values instead of printing them.

>>> import medcls
>>> run = medcls.train(overrides=["data=synthetic", "trainer.max_epochs=2"])
>>> run.metrics["test/balanced_accuracy"], run.checkpoint, run.run_id
>>> model = medcls.load(run.checkpoint)            # or medcls.load(f"runs:/{run.run_id}/model")
>>> model.predict(["lesion.jpg"])                  # (N, K) probabilities, model.class_names order
>>> medcls.evaluate(overrides=[f"ckpt_path={run.checkpoint}", "data=synthetic"]).metrics
>>> medcls.report(overrides=["experiment_name=medcls"])  # the report table, a DataFrame

Each CLI entry point (``medcls-train`` …) runs the same ``medcls.workflows`` function on the
config ``hydra.main`` composed; here :func:`compose` builds that config from ``overrides``.
Bad input raises :class:`medcls.data.records.DataError` (the CLI prints it and exits 2).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from medcls.config import CONFIG_DIR
from medcls.deploy.predictor import Predictor

_runs = itertools.count(1)


@dataclass(frozen=True)
class RunResult:
    """What one training or evaluation run produced, and where it is."""

    metrics: dict[str, float]
    output_dir: str
    checkpoint: str | None = None  # train: the kept model (checkpoints/best.ckpt)
    run_id: str | None = None  # the MLflow run (None with logger=none)
    tracking_uri: str | None = None
    config: DictConfig | None = field(default=None, repr=False)


def compose(
    config_name: str = "train",
    overrides: Sequence[str] = (),
    output_dir: str | os.PathLike | None = None,
) -> DictConfig:
    """``conf/<config_name>.yaml`` with ``overrides``, as ``hydra.main`` composes it for a
    single run: ``${hydra:...}`` resolves, ``hydra.runtime.output_dir`` is the configured run
    folder (made unique within this process), or ``output_dir``. The Hydra node is removed."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = hydra_compose(config_name, overrides=list(overrides), return_hydra_config=True)
    if output_dir is None:
        base = output_dir = str(cfg.hydra.run.dir)
        while os.path.exists(output_dir):  # two runs within the same second
            output_dir = f"{base}_{next(_runs)}"
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = os.path.abspath(output_dir)
        cfg.hydra.job.name = config_name
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def _result(cfg: DictConfig, metrics: dict[str, float], checkpoint: str | None) -> RunResult:
    from medcls.tasks.checkpoint import read_checkpoint

    run_id = None
    if checkpoint and os.path.isfile(checkpoint):  # the run id the training run stored in it
        run_id = read_checkpoint(checkpoint)["medcls"].get("mlflow_run_id")
    mlflow_cfg = (cfg.get("logger") or {}).get("mlflow") or {}
    return RunResult(
        metrics=dict(metrics),
        output_dir=str(cfg.paths.output_dir),
        checkpoint=checkpoint,
        run_id=run_id,
        tracking_uri=mlflow_cfg.get("tracking_uri"),
        config=cfg,
    )


def train(overrides: Sequence[str] = ()) -> RunResult:
    """``medcls-train <overrides>`` (one run; for sweeps use the CLI's ``-m``)."""
    from medcls.workflows.train import run_train

    cfg = compose("train", overrides)
    output_dir = str(cfg.paths.output_dir)  # before the run: later composes replace Hydra's
    metrics = run_train(cfg)
    best = os.path.join(output_dir, "checkpoints", "best.ckpt")
    return _result(cfg, metrics, best if os.path.isfile(best) else None)


def evaluate(overrides: Sequence[str] = ()) -> RunResult:
    """``medcls-eval <overrides>``: ``ckpt_path=...`` or ``run_id=...``, and the data."""
    from medcls.workflows.evaluate import run_eval

    cfg = compose("eval", ["print_config=false", *overrides])
    output_dir = str(cfg.paths.output_dir)
    metrics = run_eval(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = output_dir
    return _result(cfg, metrics, None)


def load(source: str | os.PathLike) -> Predictor:
    """A trained model: a checkpoint file, or an MLflow Model URI (``runs:/<run id>/model``,
    ``models:/<registered name>/<version>``; from ``MLFLOW_TRACKING_URI``'s store). Its
    ``.predict(images or paths)`` gives ``(N, K)`` probabilities in ``.class_names`` order."""
    source = str(source)
    if source.startswith(("runs:/", "models:/")):
        import mlflow

        return mlflow.pyfunc.load_model(source).unwrap_python_model().predictor
    return Predictor.from_checkpoint(source)


def report(overrides: Sequence[str] = ()) -> pd.DataFrame:
    """``medcls-report <overrides>``: the study's table (one row per configuration)."""
    from medcls.workflows.report import run_report

    return run_report(compose("report", overrides))

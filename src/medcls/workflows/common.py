"""Pieces the training and evaluation workflows share."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.loggers import Logger, MLFlowLogger

from medcls.data.datamodule import ClassificationDataModule
from medcls.data.records import DataError
from medcls.metrics.sources import source_metrics, write_source_table
from medcls.tracking.artifacts import (
    plot_confusion_matrix,
    write_per_class,
    write_per_class_markdown,
    write_predictions,
    write_skipped,
)
from medcls.tracking.classification_report import write_classification_report
from medcls.tracking.mlflow_run import find_mlflow, log_artifacts
from medcls.tracking.sweep import job_tags

log = logging.getLogger(__name__)


def build_datamodule(cfg: DictConfig) -> ClassificationDataModule:
    aug = cfg.get("augmentation") or {}
    return ClassificationDataModule(
        cfg.data,
        train_ops=aug.get("train"),
        eval_ops=aug.get("eval"),
        cache_dir=cfg.paths.cache_dir,
        seed=cfg.get("seed"),
    )


def datamodule_for_checkpoint(cfg: DictConfig, meta: dict) -> ClassificationDataModule:
    """``cfg.data`` seen as the checkpoint's model saw its training images, labelled with the
    checkpoint's classes; ``cfg.split`` picks the partition to evaluate."""
    with open_dict(cfg):
        # Size, crops and colour mode come from the checkpoint, whatever the data config says.
        for key, value in meta["preprocess"].items():
            cfg.data[key] = value
        cfg.data.test_partition = cfg.split
    dm = build_datamodule(cfg)
    dm.setup()
    class_map = cfg.get("class_map")
    dm.remap_to(meta["class_names"], OmegaConf.to_container(class_map) if class_map else None)
    return dm


def build_loggers(cfg: DictConfig, run_id: str | None = None) -> list[Logger]:
    loggers = []
    for name, lg_cfg in (cfg.get("logger") or {}).items():
        if lg_cfg is None or "_target_" not in lg_cfg:
            continue
        extra = {}
        if "MLFlowLogger" in lg_cfg._target_:
            # a resumed run keeps its tags; a sweep job becomes a child of the sweep's run
            extra = (
                {"run_id": run_id}
                if run_id
                else {"tags": {**job_tags(), **(lg_cfg.get("tags") or {})}}
            )
        loggers.append(instantiate(lg_cfg, **extra))
        log.debug("logger %s", name)
    return loggers


def positive_index(class_names: Sequence[str], positive: str | None) -> int:
    if positive is None:
        return 1 if len(class_names) == 2 else 0
    if positive not in class_names:
        raise DataError(
            f"data.positive_class={positive!r} is not one of the classes {list(class_names)}."
        )
    return list(class_names).index(positive)


def write_test_artifacts(
    out_dir: str,
    dm: ClassificationDataModule,
    outputs: dict[str, np.ndarray],
    metrics: dict[str, float],
    class_names: Sequence[str],
    title: str,
) -> list[str]:
    """Predictions CSV, per-class CSV and Markdown table, confusion-matrix PNG, skipped list
    and sklearn's classification report (.txt, .csv), in ``out_dir``.
    ``outputs["class_names"]`` (the model's classes + a rejected ``UNK``, see ``data.unknown``)
    wins over ``class_names``."""
    os.makedirs(out_dir, exist_ok=True)
    class_names = list(outputs.get("class_names", class_names))
    records = [dm.records[i] for i in outputs["index"]]
    counts = np.bincount(outputs["labels"], minlength=len(class_names))
    paths = [
        write_predictions(
            os.path.join(out_dir, "test_predictions.csv"),
            records,
            outputs["probs"],
            outputs["labels"],
            class_names,
        ),
        write_per_class(
            os.path.join(out_dir, "per_class_metrics.csv"), metrics, class_names, counts
        ),
        write_per_class_markdown(
            os.path.join(out_dir, "per_class_metrics.md"), metrics, class_names, counts, title
        ),
        plot_confusion_matrix(
            os.path.join(out_dir, "confusion_matrix.png"), outputs["confusion"], class_names, title
        ),
        write_skipped(os.path.join(out_dir, "skipped_images.csv"), dm.skipped),
        *write_classification_report(out_dir, outputs["probs"], outputs["labels"], class_names),
    ]
    return [p for p in paths if p]


def source_results(
    out_dir: str,
    dm: ClassificationDataModule,
    outputs: dict[str, np.ndarray],
    class_names: Sequence[str],
    positive: int,
) -> tuple[dict[str, float], list[str]]:
    """``data=combined``: the metrics of each source's evaluated images (``test/<source>/<metric>``)
    and ``per_source_metrics.csv`` in ``out_dir``; ``({}, [])`` when all come from one source.

    Shapes: ``outputs["probs"] (N, K)``, ``outputs["labels"] (N,)``, ``outputs["index"] (N,)``
    (positions in ``dm.records``); ``outputs["class_names"]`` wins over ``class_names``.
    """
    metrics = source_metrics(
        outputs["probs"],
        outputs["labels"],
        [dm.records[i].source for i in outputs["index"]],
        list(outputs.get("class_names", class_names)),
        positive,
    )
    if not metrics:
        return {}, []
    os.makedirs(out_dir, exist_ok=True)
    return metrics, [write_source_table(os.path.join(out_dir, "per_source_metrics.csv"), metrics)]


def source_summary(metrics: dict[str, float]) -> dict[str, str]:
    """The printed summary's ``balanced accuracy by source`` line (nothing with one source)."""
    by_source = {
        k.split("/")[1]: v
        for k, v in metrics.items()
        if k.startswith("test/") and k.count("/") == 2 and k.endswith("/balanced_accuracy")
    }
    if not by_source:
        return {}
    return {"balanced accuracy by source": " · ".join(f"{n} {v:.4f}" for n, v in by_source.items())}


def log_run_files(
    loggers: Sequence[Logger], paths: Sequence[str], artifact_path: str | None = None
) -> MLFlowLogger | None:
    mlf = find_mlflow(loggers)
    if mlf is not None:
        log_artifacts(mlf, paths, artifact_path)
    return mlf


def resolved(cfg: DictConfig, key: str) -> dict:
    return OmegaConf.to_container(cfg[key], resolve=True) if cfg.get(key) is not None else {}

"""Pieces the training and evaluation workflows share."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import timm
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.loggers import Logger, MLFlowLogger

from medcls.data.datamodule import ClassificationDataModule
from medcls.data.provenance import applies as provenance_applies
from medcls.data.provenance import apply_split_settings, check_test_partition
from medcls.errors import DataError
from medcls.evaluation import EvalSettings, Predictions, evaluate
from medcls.evaluation.calibration import Calibration
from medcls.models import Classifier
from medcls.tracking.mlflow_run import find_mlflow, log_artifacts
from medcls.tracking.sweep import job_tags, swept_run_name

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


def datamodule_for_checkpoint(
    cfg: DictConfig, meta: dict, ckpt: str = "the checkpoint"
) -> ClassificationDataModule:
    """``cfg.data`` seen as the checkpoint's model saw its training images, labelled with the
    checkpoint's classes; ``cfg.split`` picks the partition to evaluate.

    On the dataset the checkpoint was trained on, the partitions are the checkpoint's: its
    split settings replace the config's, and a test partition that no longer has the ids the
    checkpoint was tested on stops the command (:mod:`medcls.data.provenance`)."""
    provenance = meta.get("split")
    governed = provenance_applies(provenance, cfg.data, cfg.split)
    with open_dict(cfg):
        # Size, crops and colour mode come from the checkpoint, whatever the data config says.
        for key, value in meta["preprocess"].items():
            cfg.data[key] = value
        cfg.data.test_partition = cfg.split
        notes = apply_split_settings(cfg.data, provenance) if governed else []
    for note in notes:
        log.warning("partitions as %s was trained: %s", ckpt, note)
    if not provenance and cfg.split != "all":
        log.warning(
            "%s carries no split (trained before medcls stored it): the %s partition is "
            "rebuilt from this config (data.split_seed=%s); make sure it is the training run's.",
            ckpt, cfg.split, cfg.data.get("split_seed"),
        )  # fmt: skip
    dm = build_datamodule(cfg)
    dm.setup()
    if governed:
        check_test_partition(provenance, dm.records_of("test"), dm.num_classes, ckpt)
    class_map = cfg.get("class_map")
    dm.remap_to(meta["class_names"], OmegaConf.to_container(class_map) if class_map else None)
    return dm


# logger.mlflow settings that are medcls's, not MLFlowLogger arguments (tracking.run_outputs)
RUN_OUTPUT_KEYS = ("log_checkpoints", "log_last_checkpoint", "mlflow_model", "register_as")


def without_run_outputs(lg_cfg: DictConfig) -> DictConfig:
    return OmegaConf.create(
        {
            k: v
            for k, v in OmegaConf.to_container(lg_cfg, resolve=True).items()
            if k not in RUN_OUTPUT_KEYS
        }
    )


def build_loggers(cfg: DictConfig, run_id: str | None = None) -> list[Logger]:
    loggers = []
    for name, lg_cfg in (cfg.get("logger") or {}).items():
        if lg_cfg is None or "_target_" not in lg_cfg:
            continue
        extra = {}
        if "MLFlowLogger" in lg_cfg._target_:
            lg_cfg = without_run_outputs(lg_cfg)
            # a resumed run keeps its tags; a sweep job becomes a child of the sweep's run
            extra = (
                {"run_id": run_id}
                if run_id
                else {
                    "tags": {**job_tags(), **(lg_cfg.get("tags") or {})},
                    # a sweep's children named by what they vary, not all alike
                    "run_name": swept_run_name(str(lg_cfg.get("run_name") or "")) or None,
                }
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


def report_test(
    task,
    dm: ClassificationDataModule,
    settings: EvalSettings,
    out_dir: str,
    title: str,
    loggers: Sequence[Logger],
    metrics: dict[str, float],
    calibration: Calibration | None = None,
) -> list[str]:
    """The evaluation report of ``task.test_outputs`` (after ``trainer.test``), written in
    ``out_dir``: its metrics are added to ``metrics`` and those the test step did not log are
    logged; returns its files (not logged yet)."""
    out = task.test_outputs
    ev = evaluate(
        Predictions(
            out["probs"],
            out["labels"],
            [dm.records[i] for i in out["index"]],
            out["class_names"],  # the model's, + a rejected UNK (data.unknown=reject)
            task.test_metrics.positive,
        ),
        settings,
        out_dir,
        title,
        dm.skipped,
        base=task.test_results,  # the test step's own values (logged by it)
        calibration=calibration or Calibration(),
    )
    new = {k: v for k, v in ev.metrics.items() if k not in metrics}
    metrics.update(ev.metrics)
    for lg in loggers if new else ():
        lg.log_metrics(new)
    return ev.files


def log_run_files(
    loggers: Sequence[Logger], paths: Sequence[str], artifact_path: str | None = None
) -> MLFlowLogger | None:
    mlf = find_mlflow(loggers)
    if mlf is not None:
        log_artifacts(mlf, paths, artifact_path)
    return mlf


def resolved(cfg: DictConfig, key: str) -> dict:
    return OmegaConf.to_container(cfg[key], resolve=True) if cfg.get(key) is not None else {}


def normalization(mode: str, model: Classifier, dm: ClassificationDataModule):
    """Mean/std (0..1 scale) per channel for ``data.normalize``."""
    if mode == "backbone":
        cfg = model.pretrained_cfg
        return list(cfg.get("mean", timm.data.IMAGENET_DEFAULT_MEAN)), list(
            cfg.get("std", timm.data.IMAGENET_DEFAULT_STD)
        )
    if mode == "imagenet":
        return list(timm.data.IMAGENET_DEFAULT_MEAN), list(timm.data.IMAGENET_DEFAULT_STD)
    if mode == "dataset":
        return dm.mean_std()
    if mode == "none":
        return [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
    raise DataError(f"data.normalize={mode!r}: use backbone, dataset, imagenet or none")


def scored_partition_title(dm: ClassificationDataModule) -> str:
    """What the report of this run's test is on: ``test``, or a partition named as in-sample."""
    part = str(dm.cfg.get("test_partition", "test"))
    if part in ("test", "all"):
        return part
    return f"{part} partition, IN-SAMPLE (it chose the checkpoint and the post-hoc settings)"


def in_sample_tag(dm: ClassificationDataModule) -> dict[str, str]:
    """``data.test_partition=val|train``: the run's test figures are on images that chose its
    checkpoint (and τ, temperature, threshold) or trained it; tagged and said, not hidden."""
    part = str(dm.cfg.get("test_partition", "test"))
    if part not in ("val", "train"):
        return {}
    log.warning(
        "data.test_partition=%s: every test/* figure of this run is in-sample (the %s "
        "partition chose the checkpoint and the post-hoc settings%s); report held-out figures "
        "from the test partition.",
        part, part, " and trained the model" if part == "train" else "",
    )  # fmt: skip
    return {"medcls.scored_partition": f"{part} (in-sample)"}

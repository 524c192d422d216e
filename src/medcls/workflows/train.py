"""Training: data → model → loss → Lightning fit → test on the best checkpoint → MLflow."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
import warnings

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.callbacks import LearningRateMonitor, WeightAveraging

from medcls.data.datamodule import ClassificationDataModule
from medcls.data.provenance import split_provenance
from medcls.errors import DataError
from medcls.evaluation import EvalSettings
from medcls.evaluation.calibration import Calibration
from medcls.evaluation.files import write_isic_csv, write_predictions
from medcls.evaluation.logit_adjustment import log_prior
from medcls.evaluation.oof import write_val_logits
from medcls.evaluation.posthoc import fit_posthoc
from medcls.evaluation.report import calibration_summary, level_summary, source_summary
from medcls.evaluation.subgroups import check_subgroup_attributes
from medcls.explain.cams import run_test_cams
from medcls.losses import create_loss
from medcls.models.weights_sources import weights_provenance, weights_tags
from medcls.search.pruning import pruned_epoch
from medcls.search.trial import pruning_callback, trial_tags
from medcls.tasks import ClassificationTask
from medcls.tasks.checkpoint import read_checkpoint, update_checkpoint
from medcls.tasks.factory import create_task, create_task_model
from medcls.tasks.inference import predict_view_logits
from medcls.tasks.probes import is_probe
from medcls.tracking import sweep_folder
from medcls.tracking.mlflow_run import (
    find_mlflow,
    set_tags,
)
from medcls.tracking.run_outputs import log_checkpoints
from medcls.tracking.sweep import is_global_zero, is_multirun, mark_failed
from medcls.utils.console import print_config_tree
from medcls.utils.hardware import (
    SPEED_CACHE,
    fastest_settings,
    machine_key,
    resolve_channels_last,
    resolve_precision,
    speed_candidates,
)
from medcls.workflows.common import (
    build_datamodule,
    build_loggers,
    in_sample_tag,
    log_run_files,
    normalization,
    positive_index,
    report_test,
    resolved,
    scored_partition_title,
)
from medcls.workflows.recipe import recipe_callbacks, recipe_options, train_on
from medcls.workflows.resume import continue_in_run_folder, mark_scheduler_job, resume_point
from medcls.workflows.run import end_run, start_training_run

log = logging.getLogger(__name__)
# conf/model keys about how the network trains, not what it is (left out of the checkpoint)
TRAINING_ONLY_MODEL_KEYS = (
    "freeze_backbone_epochs",
    "unfreeze_lr_factor",
    "channels_last",
    "backbone_lr_factor",
    "freeze_bn",
)


# a run shorter than this keeps the rule (timing the candidates costs seconds)
MEASURE_MIN_STEPS = 200


def run_train(cfg: DictConfig) -> dict[str, float]:
    """Train and test one configuration; return the logged metrics (val and test).

    build (data, task, trainer) → start the run → fit → post-hoc fitting → test and report
    (:func:`_fit_and_test`) → end the run (uploads, the metrics table)."""
    if is_probe(cfg.get("task")):  # task=knn|linear_probe: cached frozen features, no fit
        from medcls.workflows.probe import run_probe

        return run_probe(cfg)
    started = time.time()
    if cfg.get("print_config"):
        print_config_tree(cfg)
    pl.seed_everything(cfg.seed, workers=True)
    settings = EvalSettings.from_cfg(cfg.get("eval"))  # a bad eval.* stops the run before training
    resume_path, resume_run = resume_point(cfg)
    if is_global_zero():
        mark_scheduler_job(cfg)  # a requeue of this job will find it (and resume)
    # a continued run writes where it started: one run, one folder
    out_dir = continue_in_run_folder(cfg, resume_path) if resume_path else cfg.paths.output_dir
    dm = _datamodule(cfg, settings)
    final_fit = train_on(cfg, dm)
    scored = in_sample_tag(dm)  # data.test_partition=val|train: said and tagged
    task, precision = _build_task(cfg, dm, settings)
    loggers = build_loggers(cfg, run_id=resume_run)
    trainer = _build_trainer(cfg, dm, settings, loggers, precision, final_fit, started)
    main_process = trainer.is_global_zero  # DDP: only rank 0 logs to MLflow and writes files
    mlf = find_mlflow(loggers)
    if mlf is not None:
        task.meta["mlflow_run_id"] = mlf.run_id  # the task keeps its own copy of meta
    if main_process:
        split, weights = task.meta["split"], task.meta["weights"]
        tags = {
            "precision": precision,
            "split.test_digest": split["test_digest"],
            "split.test_images": len(split["test_ids"]),
            **weights_tags(weights),
            **scored,
            **trial_tags(cfg),
        }
        start_training_run(cfg, loggers, dm, tags, out_dir, resume_path if resume_run else None)
    for note in dm.notes:
        log.warning(note)
    try:
        metrics = _fit_and_test(cfg, trainer, task, dm, loggers, resume_path, settings)
    except BaseException as e:
        if mlf is not None:  # Lightning marks the run FAILED; say why
            mark_failed(mlf.experiment, mlf.run_id, e)
            e.medcls_run_logged = True  # the sweep need not record this job again
        raise
    _end(cfg, trainer, dm, mlf, metrics, settings, precision, started)
    return metrics


def _datamodule(cfg: DictConfig, settings: EvalSettings) -> ClassificationDataModule:
    """The data, split, with what the evaluation settings need of it checked."""
    dm = build_datamodule(cfg)
    dm.setup()
    check_subgroup_attributes(dm.records_of(dm.cfg.test_partition), settings.subgroups, dm.cfg)
    if settings.fits_on_validation and not len(dm.partitions["val"]):
        raise DataError(
            f"eval.calibrate={settings.calibrate} / eval.threshold={settings.threshold} are "
            "fitted on the validation images, and this split has none: give it a validation "
            "part (data.val_fraction), or use eval.calibrate=none eval.threshold=argmax."
        )
    return dm


def _build_task(
    cfg: DictConfig, dm: ClassificationDataModule, settings: EvalSettings
) -> tuple[ClassificationTask, str]:
    """The network (weights loaded) in its task, with the meta its checkpoint will carry, and
    the precision it trains in."""
    model_cfg = resolved(cfg, "model")
    task_cfg = resolved(cfg, "task") or {"name": "classification"}
    model = create_task_model(
        task_cfg, model_cfg, num_classes=dm.num_classes, image_size=dm.preprocess.image_size
    )
    precision, channels_last = _speed_settings(cfg, dm, model, model_cfg, task_cfg)
    mean, std = normalization(cfg.data.normalize, model, dm)
    positive = positive_index(dm.class_names, cfg.data.get("positive_class"))
    meta = {
        "model": {k: v for k, v in model_cfg.items() if k not in TRAINING_ONLY_MODEL_KEYS},
        "class_names": list(dm.class_names),
        "mean": [float(m) for m in mean],
        "std": [float(s) for s in std],
        "preprocess": dm.preprocess.to_dict(),
        "positive_class": positive,
        "dataset": dm.source_name,
        "task": task_cfg,
        "tta": list(settings.views),  # the views its post-hoc fitting and test use
        # which images it is tested on: later commands rebuild exactly these (data/provenance)
        "split": split_provenance(cfg.data, dm.records_of("test"), dm.num_classes),
        "weights": weights_provenance(model),  # source, licence, digest (None: random init)
    }
    task = create_task(
        task_cfg,
        model,
        dm.class_names,
        mean,
        std,
        loss=create_loss(cfg.loss, dm.class_counts),
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
        freeze_backbone_epochs=cfg.model.get("freeze_backbone_epochs", 0),
        unfreeze_lr_factor=cfg.model.get("unfreeze_lr_factor", 0.1),
        backbone_lr_factor=cfg.model.get("backbone_lr_factor", 1.0),
        freeze_bn=cfg.model.get("freeze_bn", False),
        channels_last=channels_last,
        positive_class=positive,
        meta=meta,
        **recipe_options(cfg, dm, settings),
    )
    return task, precision


def _speed_settings(cfg, dm, model, model_cfg, task_cfg) -> tuple[str, bool]:
    """``(precision, channels_last)``: as configured; under ``auto`` on a CPU, for a run of at
    least :data:`MEASURE_MIN_STEPS` steps, the fastest measured here (once per machine ×
    network × input: :func:`medcls.utils.hardware.fastest_settings`)."""
    set_p, set_cl = cfg.trainer.precision, cfg.model.get("channels_last", "auto")
    precision = resolve_precision(set_p, cfg.trainer.accelerator)
    rule = (precision, resolve_channels_last(set_cl, precision))
    on_gpu = cfg.trainer.accelerator in ("gpu", "cuda") or (
        cfg.trainer.accelerator == "auto" and torch.cuda.is_available()
    )
    several = str(cfg.trainer.get("devices", 1)) not in ("1", "auto")  # DDP: one rule for all
    if (
        on_gpu
        or several
        or "auto" not in (str(set_p), str(set_cl))
        or _planned_steps(cfg, dm) < MEASURE_MIN_STEPS
    ):
        return rule
    batch, size = int(cfg.data.batch_size), int(dm.preprocess.image_size)
    net = {
        k: v
        for k, v in model_cfg.items()
        if k not in ("weights", "pretrained", "pretrained_file", *TRAINING_ONLY_MODEL_KEYS)
    }
    digest = hashlib.sha256(
        json.dumps([net, task_cfg], sort_keys=True, default=str).encode()
    ).hexdigest()[:12]
    key = f"{cfg.model.name} ({digest})|{size} px|batch {batch}|{machine_key()}"
    cache = os.path.join(str(cfg.paths.cache_dir), SPEED_CACHE)
    return fastest_settings(model, size, batch, speed_candidates(set_p, set_cl), cache, key)


def _planned_steps(cfg: DictConfig, dm: ClassificationDataModule) -> int:
    """Training steps the run plans at most (epochs × batches, ``limit_train_batches`` and
    ``fast_dev_run`` applied)."""
    t = cfg.trainer
    if t.get("fast_dev_run"):
        return 0
    batches = math.ceil(len(dm.partitions["train"]) / int(cfg.data.batch_size))
    limit = t.get("limit_train_batches")
    if isinstance(limit, float):
        batches = int(batches * limit)
    elif isinstance(limit, int) and not isinstance(limit, bool):
        batches = min(batches, limit)
    return batches * int(t.get("max_epochs") or 1)


def _build_trainer(cfg, dm, settings, loggers, precision, final_fit, started) -> pl.Trainer:
    """The Trainer with the configured callbacks (a final fit: no validation, no early stop),
    the recipe's and an Optuna trial's pruning."""
    callbacks = [
        instantiate(c, **_no_validation(c) if final_fit else {})
        for name, c in (cfg.get("callbacks") or {}).items()
        if c is not None and "_target_" in c and not (final_fit and name == "early_stopping")
    ]
    if not loggers:  # logger=none: LearningRateMonitor refuses to run without a logger
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    callbacks += recipe_callbacks(cfg, dm, settings, started)
    pruning = pruning_callback(cfg)  # an Optuna trial: report the epochs, stop when pruned
    if pruning is not None:
        callbacks.append(pruning)
    trainer: pl.Trainer = instantiate(
        cfg.trainer,
        **({"limit_val_batches": 0} if final_fit else {}),
        precision=precision,
        logger=loggers or False,
        callbacks=callbacks,
        **_strategy_override(cfg),
    )
    _check_distributed(trainer)
    return trainer


def _end(cfg, trainer, dm, mlf, metrics, settings, precision: str, started: float) -> None:
    """The run's end: the kept checkpoint uploaded and logged as the MLflow Model, the
    metrics table with the run's facts, where the run is."""
    main_process = trainer.is_global_zero
    if "pruned_at_epoch" in metrics and mlf is not None and main_process:
        set_tags(mlf, {"optuna.pruned": "true"})
    extra = {
        "images train/val/test": "/".join(
            str(len(dm.partitions[k])) for k in ("train", "val", "test")
        ),
        "skipped images": str(len(dm.skipped)),
        "precision": precision,
        "minutes": f"{(time.time() - started) / 60:.1f}",
    }
    if "fit_images_per_s" in metrics:
        extra["epochs · train img/s"] = (
            f"{metrics['epochs_trained']:.1f} · {metrics['fit_images_per_s']:.0f}"
        )
    extra.update(source_summary(metrics))  # data=combined: each source's balanced accuracy
    extra.update(level_summary(metrics))  # patients (and CT series): softmax averaged per unit
    extra.update(calibration_summary(metrics))
    if trainer.checkpoint_callback and trainer.checkpoint_callback.best_model_path:
        extra["best checkpoint"] = trainer.checkpoint_callback.best_model_path
        if mlf is not None:  # lets medcls-ensemble run_ids=[...] find the weights
            set_tags(mlf, {"best_checkpoint": os.path.abspath(extra["best checkpoint"])})
        if mlf is not None and main_process and "pruned_at_epoch" not in metrics:
            _log_outputs(mlf, cfg.logger.mlflow, extra["best checkpoint"], dm)
    if main_process:
        title = f"{cfg.run_name}: {scored_partition_title(dm)} metrics"
        end_run(mlf, [(metrics, title, extra)], settings.level)


def _log_outputs(mlf, settings, best: str, dm: ClassificationDataModule) -> None:
    """The checkpoints uploaded and the best one logged as the MLflow Model
    (``cfg.logger.mlflow``: ``log_checkpoints``, ``mlflow_model``, ``register_as``)."""
    tags = log_checkpoints(mlf, settings, best)
    i = _example_index(dm)
    if settings.get("mlflow_model", True) and i is not None:
        from medcls.deploy.mlflow_model import example_image, log_model_or_note  # mlflow.pyfunc

        example = example_image(dm.records[i], dm.decoded.images[i])
        register_as = settings.get("register_as")
        tags |= log_model_or_note(mlf._tracking_uri, mlf.run_id, best, example, register_as)
    set_tags(mlf, tags)


def _example_index(dm: ClassificationDataModule) -> int | None:
    """A record to show as the MLflow Model's input example: a test image, else any."""
    for part in ("test", "val", "train"):
        if len(dm.partitions[part]):
            return int(dm.partitions[part][0])
    return None


def _no_validation(callback_cfg) -> dict:
    """A final fit has no validation: checkpoints keep the latest epoch."""
    if "ModelCheckpoint" in str(callback_cfg.get("_target_", "")):
        return {"monitor": None}
    return {}


def _strategy_override(cfg: DictConfig) -> dict:
    """DDP with ``freeze_backbone_epochs``: the frozen backbone gets no gradients for a while,
    which plain DDP rejects; let DDP look for unused parameters then."""
    if str(cfg.trainer.get("strategy", "auto")) == "ddp" and cfg.model.get(
        "freeze_backbone_epochs", 0
    ):
        return {"strategy": "ddp_find_unused_parameters_true"}
    return {}


def _check_distributed(trainer: pl.Trainer) -> None:
    """Lightning starts the extra DDP processes of a single machine by running this command
    again; inside a multirun that would re-run the whole sweep in every process."""
    from pytorch_lightning.strategies.launchers.subprocess_script import (
        _SubprocessScriptLauncher,
    )

    launcher = getattr(trainer.strategy, "launcher", None)
    if (
        is_multirun()
        and isinstance(launcher, _SubprocessScriptLauncher)
        and not trainer.strategy.cluster_environment.creates_processes_externally
    ):
        raise DataError(
            "trainer=ddp with several devices in a multirun: Lightning would start each extra "
            "process by re-running the whole sweep. Let the launcher start one process per GPU "
            "(SLURM: hydra/launcher=slurm_gpu hydra.launcher.gpus_per_node=N "
            "hydra.launcher.tasks_per_node=N trainer.devices=N), or train on several GPUs in a "
            "single run (medcls-train trainer=ddp, without -m)."
        )


def _kept_model_score(trainer: pl.Trainer, best: str, loggers) -> dict[str, float]:
    """The monitored metric of the checkpoint that is kept (and tested), and its epoch: what a
    sweeper must optimise. ``callback_metrics`` hold the last epoch's values instead."""
    ckpt = trainer.checkpoint_callback
    if not best or ckpt is None or not ckpt.monitor or ckpt.best_model_score is None:
        return {}
    # mmap: only the epoch counter is read, not the weights
    epoch = torch.load(best, map_location="cpu", weights_only=True, mmap=True).get("epoch")
    out = {ckpt.monitor: float(ckpt.best_model_score)}
    if epoch is not None:
        out["best_epoch"] = float(epoch)
        for lg in loggers if trainer.is_global_zero else ():
            lg.log_metrics({"best_epoch": float(epoch)})
    return out


def _log_once(trainer: pl.Trainer, loggers, metrics: dict, keys: tuple[str, ...]) -> None:
    """Run-level figures (not per epoch) to the loggers, from the main process."""
    for lg in loggers if trainer.is_global_zero else ():
        lg.log_metrics({k: metrics[k] for k in keys})


def _batches_trained(trainer: pl.Trainer) -> int:
    return int(trainer.fit_loop.epoch_loop.batch_progress.total.completed)


def _fit(cfg, trainer: pl.Trainer, task, dm, loggers, resume_path) -> dict[str, float]:
    """Fit; return the training speed as users compare it: images of the epochs trained per
    fit second (validation included), the figure benchmarks/recipe_ham10000.py sets beside a
    bare loop; in batches, since a time budget's last epoch may be partial."""
    metrics: dict[str, float] = {}
    fit_start, first = time.time(), _batches_trained(trainer)
    trainer.fit(task, datamodule=dm, ckpt_path=resume_path)
    per_epoch = max(1, trainer.num_training_batches)
    epochs = (_batches_trained(trainer) - first) / per_epoch
    if epochs > 0:
        seen = epochs * len(dm.partitions["train"])
        metrics["fit_images_per_s"] = seen / max(time.time() - fit_start, 1e-9)
        metrics["epochs_trained"] = _batches_trained(trainer) / per_epoch
        _log_once(trainer, loggers, metrics, ("fit_images_per_s", "epochs_trained"))
    return metrics


def _kept_val_metrics(cfg, trainer: pl.Trainer, task, dm) -> dict[str, float]:
    """``val/*`` of the kept (tested) model: one validation pass of its weights, logged
    nowhere (the per-epoch curves stay as trained). The fit's ``callback_metrics`` hold the
    last epoch's values instead, which need not be the kept epoch's."""
    if trainer.world_size > 1:  # DDP: a second trainer would start its own process group
        return {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    quiet = pl.Trainer(
        accelerator=str(cfg.trainer.accelerator),
        devices=1,
        precision=trainer.precision,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    with warnings.catch_warnings():  # (e.g. "no val dataloader workers")
        warnings.simplefilter("ignore")
        quiet.validate(task, datamodule=dm, verbose=False)
    return {k: float(v) for k, v in quiet.callback_metrics.items() if k.startswith("val/")}


def _posthoc(cfg, trainer, task, dm, loggers, settings, metrics) -> tuple[Calibration, dict]:
    """Fit the logit adjustment, temperature and thresholds on the kept model's validation
    logits (:func:`medcls.evaluation.posthoc.fit_posthoc`); write ``val_predictions.csv`` (the
    model's probability, as test and deployment compute it; a CV fold's out-of-fold predictions)
    and ``val_logits.npz`` (what cross-fitting the folds starts from). Returns the calibration
    and what ``best.ckpt`` gains (``state``, ``meta``)."""
    out_dir, fit_tau = cfg.paths.output_dir, cfg.get("train", True)
    val = predict_view_logits(task, dm.val_dataloader())
    records = [dm.records[i] for i in val["index"]]
    logp = log_prior(dm.class_counts)
    fit = fit_posthoc(
        val["logits"], val["labels"], [r.group for r in records], logp,
        task.test_metrics.positive, settings,
        bias=None if fit_tau else task.logit_bias.detach().cpu().double().numpy(),
    )  # fmt: skip
    state, meta = {}, {}
    if fit.tau is not None:  # refitted from the bias-free logits: a resumed run's old τ goes
        task.logit_bias.copy_(torch.as_tensor(fit.bias, dtype=task.logit_bias.dtype))
        state["logit_bias"] = task.logit_bias.detach().cpu().clone()  # in the weights
        meta["logit_adjustment"] = {"tau": fit.tau, "how": fit.how}
    if fit.tau:
        log.info("logit adjustment: τ = %.2f (%s)", fit.tau, fit.how)
        metrics["logit_adjustment_tau"] = float(fit.tau)
        _log_once(trainer, loggers, metrics, ("logit_adjustment_tau",))
    if settings.fits_on_validation:
        meta["calibration"] = fit.calibration.to_meta()  # eval, predict and exports apply it
        log.info("fitted on validation: %s", fit.calibration)
    csv = os.path.join(out_dir, "val_predictions.csv")
    preds = fit.calibration.predict(fit.probs, task.test_metrics.positive)
    write_predictions(csv, records, fit.probs, val["labels"], dm.class_names, preds)
    npz = write_val_logits(sweep_folder.val_logits_path(out_dir), records, val, logp, settings)
    log_run_files(loggers, [csv, npz])
    return fit.calibration, {"state": state, "meta": meta}


def _fit_and_test(
    cfg, trainer: pl.Trainer, task: ClassificationTask, dm, loggers, resume_path, settings
):
    """Fit, then validate and test the kept checkpoint, after fitting the post-hoc choices on
    its validation predictions; write the predictions and the report and log them."""
    main_process = trainer.is_global_zero
    metrics = _fit(cfg, trainer, task, dm, loggers, resume_path) if cfg.get("train", True) else {}
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if best:  # the kept model: validation, post-hoc fitting and test all see its weights
        task.load_state_dict(read_checkpoint(best)["state_dict"], strict=False)
    has_val = len(dm.partitions["val"]) > 0
    metrics.update(_kept_val_metrics(cfg, trainer, task, dm) if has_val else {})
    metrics.update(_kept_model_score(trainer, best, loggers))
    pruned = pruned_epoch(trainer)
    if pruned is not None:  # a pruned trial is not worth its test
        metrics["pruned_at_epoch"] = float(pruned)
        _log_once(trainer, loggers, metrics, ("pruned_at_epoch",))
        log.info("pruned at epoch %d: not tested", pruned)
    tested = cfg.get("test", True) and len(dm.partitions["test"]) > 0 and pruned is None
    calibration, gains = Calibration(), {"state": {}, "meta": {}}
    on_val = cfg.get("train", True) or settings.fits_on_validation
    if on_val and has_val and main_process:
        calibration, gains = _posthoc(cfg, trainer, task, dm, loggers, settings, metrics)
    if best and main_process:  # its post-hoc gains; the weights once (resume: last.ckpt)
        update_checkpoint(best, state=gains["state"], meta=gains["meta"], weights_only=True)
    # EMA: test the kept (averaged) weights; the callback would load the raw ones back
    trainer.callbacks[:] = [c for c in trainer.callbacks if not isinstance(c, WeightAveraging)]
    # DDP: every process tests best.ckpt, which the main one may just have given a logit bias
    trainer.strategy.barrier("medcls-checkpoint-updated")
    if tested:
        _test(cfg, trainer, task, dm, loggers, settings, metrics, calibration, best)
    return metrics


def _test(cfg, trainer, task, dm, loggers, settings, metrics, calibration, best) -> None:
    """Test the kept checkpoint (``trainer.test`` restores its weights into the task); the main
    process writes the report, the ISIC CSV and Grad-CAM overlays."""
    with warnings.catch_warnings():  # (that it was written with an EMA callback)
        warnings.filterwarnings("ignore", message=r".*callbacks used to create the checkpoint")
        trainer.test(task, datamodule=dm, ckpt_path=best or None, verbose=False, weights_only=True)
    metrics.update({f"test/{k}": v for k, v in task.test_results.items()})
    if not trainer.is_global_zero:  # (under DDP the task gathered every process's predictions)
        return
    out_dir = cfg.paths.output_dir
    title = f"{cfg.run_name} · {scored_partition_title(dm)}"
    files = report_test(task, dm, settings, out_dir, title, loggers, metrics, calibration)
    isic_csv = write_isic_csv(
        os.path.join(out_dir, "test_set_isic.csv"),
        dm.records_of("test"),
        dm.labels[dm.partitions["test"]],
        dm.class_names,
    )
    log_run_files(loggers, [*files, isic_csv])
    cam_dir = os.path.join(out_dir, "gradcam")  # cam.num_images > 0: Grad-CAM overlays
    if run_test_cams(cfg.get("cam"), task, dm, task.test_outputs, cam_dir):
        log_run_files(loggers, [cam_dir], "gradcam")

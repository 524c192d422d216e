"""Ensemble evaluation: average the softmax of fold models (or any checkpoints), with TTA.

The ensemble's softmax goes through the evaluation report (:mod:`medcls.evaluation`), as a
single model's test does: intervals, curves, calibration, group-level and per-source metrics.
For a cross-validation sweep it adds the out-of-fold metrics (``oof/``, with intervals) over
every sample's validation prediction.
"""

from __future__ import annotations

import copy
import os

import numpy as np
import pandas as pd
import pytorch_lightning as pl
from omegaconf import DictConfig, open_dict

from medcls.data.records import Record
from medcls.errors import DataError
from medcls.evaluation import EvalSettings, Predictions, evaluate
from medcls.evaluation.calibration import Calibration, choose_threshold
from medcls.evaluation.files import read_predictions, write_predictions
from medcls.evaluation.oof import cross_fit, read_val_logits
from medcls.evaluation.report import calibration_summary, metric_set, source_summary
from medcls.evaluation.subgroups import check_subgroup_attributes
from medcls.metrics.balanced import balanced_accuracy
from medcls.studies.sweep_configs import sweep_configs
from medcls.tasks.checkpoint import load_task
from medcls.tasks.inference import predict_probs
from medcls.tracking import sweep_folder
from medcls.tracking.fetch import fetch_dir, run_checkpoint
from medcls.tracking.sweep_folder import parent_run_id
from medcls.utils.console import console
from medcls.workflows.common import (
    build_loggers,
    datamodule_for_checkpoint,
    log_run_files,
)
from medcls.workflows.run import end_run, start_run


def sweep_checkpoints(sweep_dir: str, jobs: list[str] | None = None) -> list[str]:
    """The kept model of every job of ``sweep_dir`` (or of ``jobs``), in job order."""
    return [sweep_folder.checkpoint(d) for d in sweep_folder.trained_jobs(sweep_dir, jobs)]


def resolve_checkpoints(cfg: DictConfig) -> list[str]:
    paths = list(cfg.get("checkpoints") or [])
    if cfg.get("sweep_dir"):
        paths += sweep_checkpoints(cfg.sweep_dir, list(cfg.get("jobs") or []))
    for run_id in cfg.get("run_ids") or []:  # fetched from the artifact store when not local
        paths.append(run_checkpoint(cfg.logger.mlflow.tracking_uri, run_id, fetch_dir(cfg)))
    if not paths:
        raise DataError(
            "nothing to ensemble: give checkpoints=[...], sweep_dir=... or run_ids=[...]"
        )
    return paths


def ensemble_views(cfg: DictConfig, settings: EvalSettings) -> list[str] | None:
    """``eval.tta`` when given; ``None``: each checkpoint's own views, those its test and
    calibration used."""
    return list(settings.tta) if settings.tta is not None else None


def _test_digest(meta: dict) -> tuple[str, str] | None:
    split = meta.get("split")
    return (split["data_name"], split["test_digest"]) if split else None


def oof_predictions(
    sweep_dir: str, jobs: list[str] | None = None, positive: int = 1
) -> pd.DataFrame | None:
    """Every job's (or ``jobs``') validation predictions stacked (the out-of-fold predictions
    of a CV), with the job's name in ``job``. When every job kept its validation logits, the
    probabilities and decisions are cross-fitted (fold k's post-hoc choices fitted on the
    other folds, :func:`medcls.evaluation.oof.cross_fit`); ``attrs["posthoc"]`` says which:
    ``cross-fitted``, or ``in-sample`` (each fold's own choices, fitted on these images)."""
    dirs = [
        d
        for d in sweep_folder.job_dirs(sweep_dir, jobs)
        if os.path.isfile(sweep_folder.val_predictions_path(d))
    ]
    frames = [
        read_predictions(sweep_folder.val_predictions_path(d)).assign(job=sweep_folder.job_name(d))
        for d in dirs
    ]
    if not frames:
        return None
    oof = pd.concat(frames, ignore_index=True)
    oof.attrs["posthoc"] = "in-sample"
    logits = [sweep_folder.val_logits_path(d) for d in dirs]
    if len(dirs) >= 2 and all(os.path.isfile(p) for p in logits):
        fit = cross_fit([read_val_logits(p) for p in logits], positive)
        if fit.paths == list(oof["path"]):
            names = [c[2:] for c in oof.columns if c.startswith("p_")]
            for i, c in enumerate(names):
                oof[f"p_{c}"] = fit.probs[:, i]
            oof["prediction"] = [names[i] for i in fit.preds]
            oof.attrs["posthoc"] = "cross-fitted"
    return oof


def ensemble_calibration(loaded, oof: Predictions | None, settings: EvalSettings) -> Calibration:
    """One model: the temperature and threshold its training fitted (as medcls-eval applies).
    Several: their averaged softmax has no fitted temperature; a CV sweep's ``eval.threshold``
    rule is fitted on the out-of-fold predictions (every image's validation prediction)."""
    if len(loaded) == 1:
        return Calibration.from_meta(loaded[0][1].get("calibration"))
    if oof is not None and settings.threshold != "argmax" and len(oof.class_names) == 2:
        score = oof.probs[:, oof.positive]
        threshold = choose_threshold(score, oof.labels == oof.positive, settings.threshold)
        return Calibration(None, threshold, f"{settings.threshold} on the out-of-fold predictions")
    return Calibration()


def ensemble_probs(loaded, loader, views: list[str] | None) -> dict[str, np.ndarray]:
    """One model: its probability (its temperature, if any, is applied by the report). Several:
    the mean of each model's probability as it is deployed (its own views, bias and
    temperature), the probability a fold model's out-of-fold predictions show."""
    if len(loaded) == 1:
        return predict_probs([loaded[0][0]], loader, tta=views)
    outs = [predict_probs([task], loader, tta=views) for task, _ in loaded]
    tempered = [
        Calibration.from_meta(meta.get("calibration")).apply(o["probs"])
        for o, (_, meta) in zip(outs, loaded, strict=True)
    ]
    return {**outs[0], "probs": np.mean(tempered, axis=0)}


def oof_note(oof: pd.DataFrame | None) -> str:
    if oof is not None and oof.attrs.get("posthoc") == "cross-fitted":
        return "cross-fitted: each fold's from the other folds"
    return "fitted on these images: in-sample"


def oof_scores(oof: pd.DataFrame, pred: Predictions, settings: EvalSettings) -> dict[str, float]:
    """Out-of-fold metrics with no choice fitted on the images they score: the argmax of the
    (cross-fitted) probabilities, and, for a threshold rule, the balanced accuracy of the
    cross-fitted decisions. ``posthoc_cross_fitted``: 1, or 0 when the folds kept no logits
    (their own τ and temperature, fitted on these images, are in: in-sample)."""
    values = metric_set(pred, settings)[0]
    crossed = oof.attrs.get("posthoc") == "cross-fitted"
    if crossed and settings.threshold != "argmax" and len(pred.class_names) == 2:
        decided = np.array([pred.class_names.index(c) for c in oof["prediction"]])
        values["balanced_accuracy_at_threshold"] = balanced_accuracy(pred.labels, decided)
    values["posthoc_cross_fitted"] = float(crossed)
    return values


def run_ensemble(cfg: DictConfig) -> dict[str, float]:
    """Average the checkpoints' probabilities on ``cfg.split``; return the metrics (``test/``,
    ``group/``, per source, and ``oof/`` of a CV sweep), logged as one MLflow run."""
    pl.seed_everything(cfg.seed, workers=True)
    settings = EvalSettings.from_cfg(cfg.get("eval"))
    paths = resolve_checkpoints(cfg)
    loaded = _load_models(cfg, paths)
    meta, jobs = loaded[0][1], list(cfg.get("jobs") or [])
    _data_from_sweep(cfg, jobs)
    dm = datamodule_for_checkpoint(cfg, meta, paths[0])
    check_subgroup_attributes(dm.records_of(cfg.split), settings.subgroups, cfg.data)
    names, positive = meta["class_names"], meta.get("positive_class", 1)

    out = ensemble_probs(loaded, dm.test_dataloader(), ensemble_views(cfg, settings))
    records = [dm.records[i] for i in out["index"]]
    out_dir = cfg.paths.output_dir
    oof = oof_predictions(cfg.sweep_dir, jobs) if cfg.get("sweep_dir") else None
    oof_pred = None if oof is None else _oof_as_predictions(cfg, oof, names, positive)
    ev = evaluate(  # test/, group/ and per-source metrics, the report's files
        Predictions(out["probs"], out["labels"], records, names, positive),
        settings,
        out_dir,
        f"ensemble of {len(loaded)} · {cfg.split}",
        dm.skipped,
        calibration=ensemble_calibration(loaded, oof_pred, settings),
    )
    result, files = dict(ev.metrics), list(ev.files)
    csv = os.path.join(out_dir, "ensemble_predictions.csv")
    files.append(write_predictions(csv, records, out["probs"], out["labels"], names))
    if oof is not None:
        result.update({f"oof/{k}": v for k, v in oof_scores(oof, oof_pred, settings).items()})
        files.append(os.path.join(out_dir, "oof_predictions.csv"))
        oof.to_csv(files[-1], index=False)
    _log_and_print(cfg, settings, paths, dm, result, files, oof)
    return result


def _load_models(cfg: DictConfig, paths: list[str]) -> list:
    """``[(task, meta)]`` of ``paths``, refused unless they share classes, preprocessing and
    (``split`` other than ``all``) their test partition."""
    loaded = [load_task(p) for p in paths]
    meta = loaded[0][1]
    for p, (_, m) in zip(paths, loaded, strict=True):
        if m["class_names"] != meta["class_names"] or m["preprocess"] != meta["preprocess"]:
            raise DataError(
                f"{p} has other classes or preprocessing than {paths[0]}; ensemble models of one study."
            )
        if cfg.split != "all" and _test_digest(m) != _test_digest(meta):
            raise DataError(
                f"{p} was tested on other images than {paths[0]} (another data set or split "
                "seed): their ensemble has no common held-out test partition. Ensemble models "
                "of one split, or score every image of an external set with split=all."
            )
    return loaded


def _data_from_sweep(cfg: DictConfig, jobs: list) -> None:
    """A sweep's ensemble takes the folds' own data config (the same held-out test partition)
    and MLflow store (``data_from_sweep``, on by default)."""
    if not (cfg.get("sweep_dir") and cfg.get("data_from_sweep", True)):
        return
    job_cfg = sweep_folder.configured_jobs(cfg.sweep_dir, jobs)
    if not job_cfg:
        return
    job = sweep_folder.resolved_config(job_cfg[0])
    with open_dict(cfg):
        cfg.data, cfg.experiment_name = job.data, job.experiment_name
        cfg.data.fold = None  # the test partition is the same for every fold
        if job.get("logger") and job.logger.get("mlflow") and cfg.get("logger"):
            cfg.logger.mlflow.experiment_name = job.logger.mlflow.experiment_name
            cfg.logger.mlflow.tracking_uri = job.logger.mlflow.tracking_uri


def _oof_as_predictions(cfg, oof: pd.DataFrame, names: list[str], positive) -> Predictions:
    """The folds' validation predictions (one per image) as :class:`Predictions`."""
    if oof["path"].duplicated().any():
        raise DataError(
            f"{cfg.sweep_dir}: an image is in two folds' validation sets; is this a CV sweep?"
        )
    return Predictions(
        oof[[f"p_{c}" for c in names]].to_numpy(),
        np.array([names.index(c) for c in oof["label"]]),
        [Record(p, -1, g or None) for p, g in zip(oof["path"], oof["group"], strict=True)],
        names,
        positive,
    )


def _log_and_print(cfg, settings, paths, dm, result, files, oof) -> None:
    """The ensemble's MLflow run (under the sweep's parent run) and its tables."""
    parent = parent_run_id(cfg.sweep_dir) if cfg.get("sweep_dir") else None
    loggers = build_loggers(cfg)
    views = ensemble_views(cfg, settings)
    tags = {
        "medcls.role": "ensemble",
        "checkpoints": " ".join(os.path.abspath(p) for p in paths),
        "tta": ",".join(views or ["(each checkpoint's)"]),
    }
    mlf = start_run(cfg, loggers, tags, parent=parent)
    if mlf is not None:
        mlf.log_metrics(result)
        log_run_files(loggers, files)
        mlf.finalize("success")
    extra = {
        "models": str(len(paths)),
        "tta views": "each checkpoint's" if views is None else str(1 + len(views)),
        **source_summary(result),
        **calibration_summary(result),
    }
    title = f"ensemble of {len(paths)} model(s) on {dm.source_name} ({cfg.split})"
    end_run(mlf, [(result, title, extra), *_level_tables(result, oof)], settings.level)


def _level_tables(result: dict[str, float], oof) -> list:
    """The tables of the series, group and out-of-fold figures the ensemble has."""
    tables = []
    for prefix, title in (
        ("series/", "CT series level (softmax averaged per series)"),
        ("group/", "group level (softmax averaged per group)"),
        ("oof/", f"out-of-fold (CV; post-hoc choices {oof_note(oof)})"),
    ):
        part = {k[len(prefix) :]: v for k, v in result.items() if k.startswith(prefix)}
        if part:
            tables.append((part, title, None))
    return tables


def run_ensembles_per_config(cfg: DictConfig) -> dict[str, dict[str, float]]:
    """One ensemble per configuration of ``cfg.sweep_dir`` (its jobs grouped by overrides, the
    fold apart: e.g. each ablation row's fold models). Each is its own MLflow run under the
    sweep's parent, tagged ``medcls.config`` (the overrides its models share) and with the
    ``tags`` of its jobs (``ablation: no dropout``), which is how ``medcls-report`` puts it in
    its configuration's row; files go to ``<output dir>/config<i>``. One configuration: the
    plain :func:`run_ensemble` of the whole sweep, files in the output dir."""
    groups = sweep_configs(cfg.sweep_dir)
    results = {}
    for i, (config, jobs) in enumerate(groups.items()):
        sub = copy.deepcopy(cfg)
        first = os.path.join(cfg.sweep_dir, jobs[0])
        configured = os.path.isfile(sweep_folder.resolved_config_path(first))
        tags = dict(sweep_folder.resolved_config(first).get("tags") or {}) if configured else {}
        with open_dict(sub):
            sub.jobs, sub.per_config = jobs, False
            sub.tags = {**tags, **(cfg.get("tags") or {}), "medcls.config": config}
            if len(groups) > 1:
                sub.paths.output_dir = os.path.join(cfg.paths.output_dir, f"config{i}")
                sub.run_name = "ensemble-" + "-".join([str(v) for v in tags.values()] or jobs)
        console.print(f"[bold]ensemble {i + 1}/{len(groups)}[/]: jobs {', '.join(jobs)} ({config})")
        results[config] = run_ensemble(sub)
    return results

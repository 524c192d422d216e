"""Pseudo-labelling rounds on top of K-fold training (the glaucoma fundus study's recipe).

Round 0 is a plain K-fold CV. After each round the fold models predict an unlabelled *pool*;
images predicted with top probability >= ``threshold`` (two classes: p >= 0.98 or <= 0.02)
become hard-labelled training images of the next round, through ``data.extra_records`` (a CSV
per fold), so the data layer stays one-way. A model trained with ``loss.label_smoothing`` α
never reaches 0.98 (it aims at ``1 - α(K-1)/K``), so the threshold is read on its own scale:
``α/K + threshold·(1 - α)`` (0.98 with α=0.05: p >= 0.956 or <= 0.044), printed and logged as
``pseudo/threshold``; see :func:`medcls.studies.pseudo_labels.effective_threshold`. Every
round is one multirun (its MLflow run is the round's sweep run, fold jobs below it), and all
rounds sit under one study run.

Evaluation stays honest:

* ``pool=<folder>``: images outside the labelled dataset are pseudo-labelled; each round
  reports the fold ensemble's AUC on the labelled test partition and the out-of-fold AUC.
* ``pool=test``: the held-out test partition is pseudo-labelled with its labels hidden (the
  paper's setting). Its labels are then never scored: the fold jobs run with ``test=false`` and
  each round reports the out-of-fold (validation) AUC only. The hidden labels only measure how
  right the pseudo-labels were, a diagnostic that never feeds training.

``labeller=fold`` (default) lets fold j's model label the pool for fold j's next model, so no
validation label reaches the validation fold's model through the pool, and the out-of-fold AUC
stays honest across rounds; ``labeller=ensemble`` uses the averaged fold models for every fold,
as the paper did.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf, open_dict
from torch.utils.data import DataLoader

from medcls.data.cache import decode_all
from medcls.data.dataset import CachedDataset
from medcls.data.extra_records import same_files, write_extra_records
from medcls.data.inputs import list_inputs
from medcls.data.records import Record
from medcls.errors import DataError
from medcls.evaluation.files import read_predictions
from medcls.metrics.classification import compute_metrics
from medcls.studies.pseudo_labels import effective_threshold, select_pseudo_labels
from medcls.studies.pseudo_rounds import print_rounds, rounds_table, write_markdown
from medcls.tasks.checkpoint import load_task, read_checkpoint
from medcls.tasks.inference import predict_probs
from medcls.tracking import sweep_folder
from medcls.tracking.sweep_folder import parent_run_id
from medcls.utils.console import console
from medcls.workflows.common import datamodule_for_checkpoint
from medcls.workflows.ensemble import oof_predictions

log = logging.getLogger(__name__)
CSV_PATTERN = "pseudo_labels_fold{fold}.csv"  # in the round that trains on them
LABELLERS = ("fold", "ensemble")


@dataclass
class PseudoSettings:
    """``medcls-pseudo`` arguments; ``train_args`` go to every round's ``medcls-train -m``."""

    k: int = 4
    rounds: int = 1
    pool: str = "test"
    threshold: float = 0.98
    labeller: str = "fold"
    tta: list[str] = field(default_factory=list)
    train_args: list[str] = field(default_factory=list)
    study_dir: str = ""


def parse_args(argv: list[str]) -> PseudoSettings:
    """``k=4 rounds=2 pool=test|<folder> threshold=0.98 labeller=fold|ensemble tta=[hflip]``
    and any ``medcls-train`` overrides."""
    s = PseudoSettings()
    for a in argv:
        key, _, value = a.lstrip("+").partition("=")
        try:
            if key == "k":
                s.k = int(value)
            elif key == "rounds":
                s.rounds = int(value)
            elif key == "threshold":
                s.threshold = float(value)
            elif key in ("pool", "labeller", "study_dir") and value:
                setattr(s, key, value)
            elif key == "tta":
                s.tta = [v.strip() for v in value.strip("[]").split(",") if v.strip()]
            else:
                s.train_args.append(a)
        except ValueError as e:
            raise DataError(f"medcls-pseudo: {a}: {e}") from e
    if s.k < 2:
        raise DataError(f"medcls-pseudo: k={s.k}: cross-validation needs k >= 2")
    if s.rounds < 0:
        raise DataError(f"medcls-pseudo: rounds={s.rounds}: give 0 (no pseudo-labels) or more")
    if not 0.5 < s.threshold <= 1.0:
        raise DataError(f"medcls-pseudo: threshold={s.threshold}: must be in (0.5, 1]")
    if s.labeller not in LABELLERS:
        raise DataError(f"medcls-pseudo: labeller={s.labeller!r}: use one of {LABELLERS}")
    if s.pool != "test" and not os.path.isdir(s.pool):
        raise DataError(
            f"medcls-pseudo: pool={s.pool}: not a folder. Give a folder of unlabelled images, "
            "or pool=test to pseudo-label the held-out test partition (labels hidden)."
        )
    for a in s.train_args:
        if a.startswith(("data.fold=", "data.num_folds=", "data.extra_records=", "hydra.sweep")):
            raise DataError(f"medcls-pseudo: {a}: medcls-pseudo sets this itself; leave it out")
    s.study_dir = s.study_dir or f"multirun/pseudo/{time.strftime('%Y-%m-%d_%H-%M-%S')}"
    return s


# -- one round ----------------------------------------------------------------------------------
def _run(cmd: list[str]) -> int:
    print("+", " ".join(cmd[1:]), flush=True)
    return subprocess.call(cmd)


def train_round(s: PseudoSettings, round_dir: str, with_extra: bool) -> int:
    """The round's K fold jobs (one multirun) with the previous round's pseudo-labels."""
    extra = "null"
    if with_extra:  # each fold job reads its own CSV (${data.fold} resolves per job)
        extra = os.path.abspath(os.path.join(round_dir, CSV_PATTERN.format(fold="${data.fold}")))
        extra = f"'{extra}'" if "'" not in extra else extra
    cmd = [
        sys.executable, "-m", "medcls.cli.train", "-m", *s.train_args,
        f"data.num_folds={s.k}", f"data.fold=range(0,{s.k})", f"data.extra_records={extra}",
        f"hydra.sweep.dir={round_dir}",
    ]  # fmt: skip
    if s.pool == "test":  # the test images are the pool: never score them as labelled
        cmd.append("test=false")
    return _run(cmd)


def fold_checkpoints(round_dir: str) -> tuple[dict[int, str], DictConfig]:
    """``{fold: best.ckpt}`` of a round's jobs, and the first job's resolved config."""
    found: dict[int, str] = {}
    first = None
    for job_dir in sweep_folder.configured_jobs(round_dir):
        job = sweep_folder.resolved_config(job_dir)
        first = first if first is not None else job
        ckpt = sweep_folder.checkpoint(job_dir)
        fold = int(job.data.fold)
        if fold in found:
            raise DataError(
                f"{round_dir}: two jobs trained fold {fold}; medcls-pseudo sweeps the folds of "
                "one configuration (leave comma-separated sweeps out of its arguments)."
            )
        if not os.path.isfile(ckpt):
            raise DataError(f"{ckpt} is missing: did fold {fold} of {round_dir} finish?")
        found[fold] = ckpt
    if first is None:
        raise DataError(f"{round_dir}: no fold job wrote resolved_config.yaml; did it train?")
    return found, first


def _pool_loader(s: PseudoSettings, job: DictConfig, meta: dict, ckpt: str = "the checkpoint"):
    """The pool as ``(records, loader, hidden)``: the loader's ``index`` points into
    ``records``; ``hidden`` holds the true labels at the same positions (test pool), or None."""
    cfg = OmegaConf.create(
        {
            "data": OmegaConf.to_container(job.data, resolve=True),
            "augmentation": None,
            "paths": {"cache_dir": job.paths.cache_dir},
            "seed": job.seed,
            "split": "test",
        }
    )
    with open_dict(cfg):  # the test partition does not depend on the fold
        cfg.data.fold, cfg.data.extra_records = None, None
    dm = datamodule_for_checkpoint(cfg, meta, ckpt)
    if s.pool == "test":
        if dm.partitions["test"].size == 0:
            raise DataError("pool=test but the data has no test partition (data.test_fraction=0)")
        return dm.records, dm.test_dataloader(), dm.labels
    records = [Record(p, -1, source="pool") for p in list_inputs(s.pool)]
    if clash := same_files(records, dm.records):
        raise DataError(
            f"pool={s.pool} holds {len(clash)} image(s) of the labelled dataset (e.g. "
            f"{clash[0]}); an unlabelled pool must be other images. Use pool=test to "
            "pseudo-label the held-out test partition with its labels hidden."
        )
    decoded = decode_all(
        "pseudo-pool", records, dm.preprocess, cache=job.data.cache, cache_dir=job.paths.cache_dir
    )
    ds = CachedDataset(decoded.images, np.full(len(records), -1), np.flatnonzero(decoded.ok))
    return records, DataLoader(ds, batch_size=int(job.data.batch_size)), None


def label_smoothing_of(job: DictConfig) -> float:
    """The α a round's models were trained with (``loss.label_smoothing``; 0 without)."""
    return float((job.get("loss") or {}).get("label_smoothing") or 0.0)


def label_pool(s: PseudoSettings, round_dir: str, next_dir: str) -> dict[str, float]:
    """The round's fold models label the pool; write the next round's CSV per fold.

    Returns the counts (``pseudo/images``: mean per fold) and, for a test pool, the share of
    pseudo-labels that agree with the hidden labels."""
    ckpts, job = fold_checkpoints(round_dir)
    loaded = {fold: load_task(path) for fold, path in ckpts.items()}
    meta = next(iter(loaded.values()))[1]
    names = list(meta["class_names"])
    records, loader, hidden = _pool_loader(s, job, meta, next(iter(ckpts.values())))
    alpha = label_smoothing_of(job)
    cut = effective_threshold(s.threshold, alpha, len(names))
    if alpha:  # smoothed models never reach the raw threshold: say what it became
        console.print(
            f"pseudo-labels: top probability >= {cut:.4f} (threshold={s.threshold} between the "
            f"targets {effective_threshold(0, alpha, len(names)):.4f} and "
            f"{effective_threshold(1, alpha, len(names)):.4f} of loss.label_smoothing={alpha})"
        )
    if s.labeller == "ensemble":  # the paper: the averaged fold models label every fold's pool
        out = predict_probs([t for t, _ in loaded.values()], loader, s.tta or None)
        per_fold = dict.fromkeys(loaded, out)
    else:
        per_fold = {
            fold: predict_probs([t], loader, s.tta or None) for fold, (t, _) in loaded.items()
        }
    counts, correct = [], 0
    for fold, out in per_fold.items():
        rows, labels = select_pseudo_labels(out["probs"], s.threshold, alpha)
        chosen = out["index"][rows]  # positions in ``records``
        write_extra_records(
            os.path.join(next_dir, CSV_PATTERN.format(fold=fold)),
            [records[int(i)].path for i in chosen],
            [names[int(c)] for c in labels],
        )
        counts.append(len(chosen))
        if hidden is not None:  # a diagnostic only: these labels never reach training
            correct += int((hidden[chosen] == labels).sum())
    stats = {
        "pseudo/threshold": cut,  # the effective one, after label smoothing
        "pseudo/pool": float(len(loader.dataset)),
        "pseudo/images": float(np.mean(counts)),
        "pseudo/images_min": float(min(counts)),
        "pseudo/images_max": float(max(counts)),
    }
    if hidden is not None and sum(counts):
        stats["pseudo/accuracy_hidden"] = correct / sum(counts)
    return stats


def round_metrics(s: PseudoSettings, round_dir: str) -> dict[str, float]:
    """Out-of-fold metrics (``oof/``) and, with a folder pool, the ensemble's ``test/``."""
    ckpts, _ = fold_checkpoints(round_dir)
    meta = read_checkpoint(next(iter(ckpts.values())))["medcls"]
    names, positive = list(meta["class_names"]), meta.get("positive_class", 1)
    result: dict[str, float] = {}
    oof = oof_predictions(round_dir, positive=positive)
    if oof is not None:
        probs = oof[[f"p_{c}" for c in names]].to_numpy()
        labels = np.array([names.index(c) for c in oof["label"]])
        result.update(
            {f"oof/{k}": v for k, v in compute_metrics(probs, labels, names, positive)[0].items()}
        )
    ens = os.path.join(round_dir, "ensemble", "ensemble_predictions.csv")
    if s.pool != "test" and os.path.isfile(ens):
        df = read_predictions(ens)
        probs = df[[f"p_{c}" for c in names]].to_numpy()
        labels = np.array([names.index(c) for c in df["label"]])
        result.update(
            {f"test/{k}": v for k, v in compute_metrics(probs, labels, names, positive)[0].items()}
        )
    return result


# -- MLflow ---------------------------------------------------------------------------------------
def _client(job: DictConfig):
    mlf = (job.get("logger") or {}).get("mlflow")
    if not mlf:
        return None, None
    from medcls.tracking.store import RetryingMlflowClient

    client = RetryingMlflowClient(mlf.tracking_uri)
    exp = client.get_experiment_by_name(mlf.experiment_name)
    exp_id = exp.experiment_id if exp else client.create_experiment(mlf.experiment_name)
    return client, exp_id


def _study_run(client, exp_id: str, s: PseudoSettings, experiment: str) -> str:
    run = client.create_run(
        exp_id,
        run_name=f"{experiment}-pseudo-{os.path.basename(s.study_dir)}",
        tags={
            "medcls.role": "pseudo",
            "medcls.sweep_dir": os.path.abspath(s.study_dir),
            "medcls.pseudo.pool": s.pool if s.pool == "test" else os.path.abspath(s.pool),
            "medcls.pseudo.labeller": s.labeller,
            "medcls.pseudo.threshold": str(s.threshold),
            "medcls.pseudo.k": str(s.k),
            "medcls.pseudo.rounds": str(s.rounds),
            "overrides": " ".join(s.train_args),
        },
    )
    return run.info.run_id


def _log_round(client, study: str | None, round_dir: str, r: int, metrics: dict[str, float]):
    """Tag the round's sweep run as round ``r`` of the study; log its metrics on both."""
    run_id = parent_run_id(round_dir)
    if client is None or study is None or run_id is None:
        return run_id
    client.set_tag(run_id, "mlflow.parentRunId", study)
    client.set_tag(run_id, "medcls.pseudo_round", str(r))
    client.set_tag(run_id, "mlflow.runName", f"round {r}")
    for k, v in metrics.items():
        if np.isfinite(v):
            client.log_metric(run_id, k, float(v))
            client.log_metric(study, k, float(v), step=r)  # a curve over rounds in the UI
    return run_id


def run_pseudo(s: PseudoSettings) -> int:
    """Rounds 0..``s.rounds``; returns an exit code."""
    os.makedirs(s.study_dir, exist_ok=True)
    client = exp_id = study = None
    rows: list[dict[str, Any]] = []
    for r in range(s.rounds + 1):
        round_dir = os.path.join(s.study_dir, f"round_{r}")
        console.rule(f"[bold]pseudo-labelling round {r}[/] ({round_dir})")
        if (rc := train_round(s, round_dir, with_extra=r > 0)) != 0:
            print(f"medcls-pseudo: round {r} failed (exit {rc}); see {round_dir}", file=sys.stderr)
            return rc
        _, job = fold_checkpoints(round_dir)
        if r == 0:
            client, exp_id = _client(job)
            if client is not None:
                study = _study_run(client, exp_id, s, job.logger.mlflow.experiment_name)
        if s.pool != "test":  # the labelled test partition: the fold models' ensemble
            ens = [
                sys.executable, "-m", "medcls.cli.ensemble", f"sweep_dir={round_dir}",
                f"hydra.run.dir={os.path.join(round_dir, 'ensemble')}",
                f"eval.tta=[{','.join(s.tta)}]", "run_name=ensemble-round" + str(r),
            ]  # fmt: skip
            if (rc := _run(ens)) != 0:
                return rc
        metrics = round_metrics(s, round_dir)
        if r > 0:
            metrics.update(rows[-1].pop("next_stats"))
        stats = (
            label_pool(s, round_dir, os.path.join(s.study_dir, f"round_{r + 1}"))
            if r < s.rounds
            else {}
        )
        run_id = _log_round(client, study, round_dir, r, metrics)
        rows.append({"round": r, "metrics": metrics, "run_id": run_id, "next_stats": stats})

    table = rounds_table(rows, s.pool)
    csv_path = os.path.join(s.study_dir, "pseudo_rounds.csv")
    table.to_csv(csv_path, index=False)
    where = "pool = held-out test partition (labels hidden): AUC on the validation folds"
    if s.pool != "test":
        where = f"pool = {s.pool}: AUC on the labelled test partition and the validation folds"
    threshold = f"threshold {s.threshold}"
    cut = rows[1]["metrics"].get("pseudo/threshold") if len(rows) > 1 else None
    if cut is not None and abs(cut - s.threshold) > 1e-9:
        threshold += f" (p >= {cut:.4f} after label smoothing)"
    title = f"pseudo-labelling, {s.k} folds, {threshold} ({where})"
    md_path = write_markdown(table, os.path.join(s.study_dir, "pseudo_rounds.md"), title)
    print_rounds(table, title)
    if client is not None and study is not None:
        client.log_artifact(study, csv_path)
        client.log_artifact(study, md_path)
        client.set_terminated(study, "FINISHED")
        console.print(f"MLflow study run {study}: one child run per round")
    console.print(f"rounds table: {md_path}")
    return 0

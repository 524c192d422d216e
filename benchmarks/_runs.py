"""medcls-train as a benchmark subprocess: one run, its test metrics read back from its files."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time

import numpy as np
import pandas as pd
from _common import CpuClock

CLOCK = CpuClock()


def medcls_command() -> list[str]:
    """The installed ``medcls-train`` beside this interpreter, else ``python -m medcls.cli.train``."""
    exe = os.path.join(os.path.dirname(sys.executable), "medcls-train")
    return [exe] if os.path.isfile(exe) else [sys.executable, "-m", "medcls.cli.train"]


def summary_metric(summary: pd.DataFrame, name: str) -> tuple[float, float, float]:
    """(value, ci_low, ci_high) of a test-level metric of ``metrics_summary.csv``."""
    rows = summary[(summary["level"] == "test") & (summary["metric"] == name)]
    if rows.empty:
        return float("nan"), float("nan"), float("nan")
    r = rows.iloc[0]
    return float(r["value"]), float(r["ci_low"]), float(r["ci_high"])


def budget_override(minutes: float) -> str:
    """``trainer.max_time`` for ``minutes`` (DD:HH:MM:SS)."""
    s = int(round(minutes * 60))
    return f"trainer.max_time=00:{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def run_medcls(name: str, overrides: list[str], work_dir: str, env: dict) -> dict:
    """One ``medcls-train`` run in ``work_dir/runs/name`` (only ``hydra.run.dir`` is added, which
    changes no training setting). Returns the test predictions (``preds``), the run's own test
    metrics with their bootstrap intervals (``summary``, ``metrics_summary.csv``), wall seconds
    and the cores other processes used meanwhile (``others``)."""
    run_dir = os.path.join(work_dir, "runs", name)
    cmd = [*medcls_command(), *overrides, f"hydra.run.dir={run_dir}"]
    log_path = os.path.join(work_dir, f"{name}.log")
    print(f"  [{time.strftime('%H:%M:%S')}] {name}: {shlex.join(cmd)}", flush=True)
    a = CLOCK.stamp()
    with open(log_path, "w") as log:
        proc = subprocess.run(cmd, cwd=work_dir, env=env, stdout=log, stderr=subprocess.STDOUT)
    b = CLOCK.stamp()
    if proc.returncode != 0:
        with open(log_path) as f:
            tail = f.read()[-3000:]
        raise RuntimeError(f"{name} failed (exit {proc.returncode}); log {log_path}:\n{tail}")
    with open(log_path) as f:
        text = f.read()
    precision = re.search(r"precision\W+(\S+-\S+)\s", text)  # the run table's precision row
    return {
        "preds": pd.read_csv(os.path.join(run_dir, "test_predictions.csv")),
        "summary": pd.read_csv(os.path.join(run_dir, "metrics_summary.csv")),
        "seconds": b[0] - a[0],
        "others": CpuClock.others(a, b),
        "precision": precision.group(1) if precision else "?",
        "log": log_path,
        "run_dir": run_dir,
    }


def epochs_and_speed(log_path: str) -> tuple[float, float]:
    """(epochs trained, training img/s) from the run table a ``medcls-train`` log ends with."""
    with open(log_path) as f:
        speed = re.search(r"epochs · train img/s\W+([\d.]+) · (\d+)", f.read())
    return (float(speed.group(1)), float(speed.group(2))) if speed else (float("nan"),) * 2


def bench_env(cache_dir: str) -> dict:
    """The environment of benchmark subprocesses: one shared decode cache, quiet albumentations."""
    env = {**os.environ, "MEDCLS_CACHE_DIR": os.path.abspath(cache_dir)}
    env.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    os.environ["MEDCLS_CACHE_DIR"] = env["MEDCLS_CACHE_DIR"]
    return env


def add_work_args(parser, repo: str) -> None:
    """``--work-dir`` (runs, logs, mlflow.db) and ``--cache-dir`` (the shared decode cache)."""
    parser.add_argument("--work-dir", default=None, help="default: a new folder under /tmp")
    parser.add_argument(
        "--cache-dir",
        default=os.environ.get("MEDCLS_CACHE_DIR", os.path.join(repo, ".cache", "medcls")),
    )


def work_dir_and_env(args, prefix: str) -> tuple[str, dict]:
    """The benchmark's folder (made; ``/tmp/<prefix>-<time>`` by default) and its runs' env."""
    work_dir = os.path.abspath(
        args.work_dir or os.path.join("/tmp", f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}")
    )
    os.makedirs(work_dir, exist_ok=True)
    return work_dir, bench_env(args.cache_dir)


def prediction_arrays(preds: pd.DataFrame, class_names, image_ids) -> tuple[np.ndarray, np.ndarray]:
    """``(probs (N, K), predicted class index (N,))`` of a run's ``test_predictions.csv``, in
    the order of ``image_ids``."""
    rows = preds.set_index(preds["image_id"].astype(str)).loc[list(image_ids)]
    probs = rows[[f"p_{c}" for c in class_names]].to_numpy()
    pred = rows["prediction"].map({c: i for i, c in enumerate(class_names)}).to_numpy()
    return probs, pred


def scores(y: np.ndarray, probs: np.ndarray, pred: np.ndarray, groups: np.ndarray) -> dict:
    """Balanced accuracy with its 95% bootstrap interval over whole ``groups``, accuracy and
    macro one-vs-rest AUROC: every benchmark row scored one way."""
    from sklearn.metrics import roc_auc_score

    from medcls.studies.stats import accuracy, bootstrap_ci

    bacc, lo, hi = bootstrap_ci(y, pred, n_boot=1000, groups=groups)
    auc = roc_auc_score(y, probs, multi_class="ovr", average="macro", labels=range(probs.shape[1]))
    return {"bacc": bacc, "lo": lo, "hi": hi, "acc": accuracy(y, pred), "auc": auc}

"""docs/evaluation.md's worked example of the evaluation report: HAM10000 at small scale, and the
screening figures of a glaucoma run.

    python benchmarks/evaluation_report_ham10000.py [--root ../shared/data/ham10000]
        [--glaucoma ../shared/data/glaucoma_airogs] [--epochs 4] [--work-dir DIR]
        [--docs docs/evaluation]

Runs the real CLI twice, one after the other (one heavy job at a time):

    medcls-train data=ham10000 data.root=ROOT model.name=resnet18 data.image_size=64
        trainer.max_epochs=EPOCHS 'eval.subgroups=[sex,age_group]' eval.calibrate=temperature
    medcls-train data=glaucoma data.root=GLAUCOMA model.name=resnet18 data.image_size=64
        trainer.max_epochs=EPOCHS eval.threshold=sensitivity@0.95

then prints, as Markdown, each run's test table with its 95% intervals (lesions resampled),
HAM10000's subgroup table and largest gaps (the runs' ``metrics_summary.csv``,
``subgroups.csv``, ``subgroup_gaps.csv``), and copies HAM10000's reliability diagrams, ROC
curves and subgroup forest plot to ``--docs`` (the images docs/evaluation.md embeds).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from _common import machine_lines

REPO = Path(__file__).resolve().parents[1]
IMAGES = ("reliability.png", "reliability_calibrated.png", "roc_curves.png", "subgroups.png")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=str(REPO.parent / "shared" / "data" / "ham10000"))
    ap.add_argument("--glaucoma", default=str(REPO.parent / "shared" / "data" / "glaucoma_airogs"))
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--work-dir", default=str(REPO / "outputs" / "evaluation_example"))
    ap.add_argument("--docs", default=str(REPO / "docs" / "evaluation"))
    args = ap.parse_args()
    if not os.path.isfile(os.path.join(args.root, "HAM10000_metadata.csv")):
        print(f"HAM10000 not found at {args.root}: give --root", file=sys.stderr)
        return 2
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    common = ["model.name=resnet18", "data.image_size=64", f"trainer.max_epochs={args.epochs}",
              "print_config=false", "++trainer.enable_progress_bar=false"]  # fmt: skip
    runs = {
        "ham10000": ["data=ham10000", f"data.root={args.root}", *common,
                     "eval.subgroups=[sex,age_group]", "eval.calibrate=temperature"],
        "glaucoma": ["data=glaucoma", f"data.root={args.glaucoma}", *common,
                     "eval.threshold=sensitivity@0.95"],
    }  # fmt: skip
    print("\n".join(machine_lines()))
    for name, overrides in runs.items():
        shutil.rmtree(work / "outputs" / name, ignore_errors=True)  # no stale files from before
        started = time.time()
        command = [str(Path(sys.executable).parent / "medcls-train"), *overrides,
                   f"hydra.run.dir=outputs/{name}"]  # fmt: skip
        proc = subprocess.run(command, cwd=work, capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stdout[-4000:] + proc.stderr[-4000:], file=sys.stderr)
            return proc.returncode
        print(f"\ncommand: medcls-train {' '.join(overrides)}")
        print(f"minutes: {(time.time() - started) / 60:.1f}\n")
        print_summary(work / "outputs" / name)
    out = work / "outputs" / "ham10000"
    sub = pd.read_csv(out / "subgroups.csv", keep_default_na=False)
    print("\n| attribute | subgroup | images | balanced accuracy (95% CI) | AUROC (95% CI) |")
    print("|---|---|---:|---:|---:|")
    for r in sub.itertuples():
        print(
            f"| {r.attribute} | {r.subgroup} | {r.images} | "
            f"{r.balanced_accuracy:.3f} ({r.balanced_accuracy_ci_low:.3f} – "
            f"{r.balanced_accuracy_ci_high:.3f}) | {r.auroc:.3f} ({r.auroc_ci_low:.3f} – "
            f"{r.auroc_ci_high:.3f}) |"
        )
    gaps = pd.read_csv(out / "subgroup_gaps.csv")
    print("\nlargest gaps (subgroups of at least 10 images):")
    for g in gaps.itertuples():
        print(f"  {g.attribute} {g.metric}: {g.best} {g.best_value:.3f} vs {g.worst} "
              f"{g.worst_value:.3f} (gap {g.gap:.3f})")  # fmt: skip
    docs = Path(args.docs)
    docs.mkdir(parents=True, exist_ok=True)
    for name in IMAGES:
        shutil.copy(out / name, docs / name)
    print(f"\ncopied {', '.join(IMAGES)} to {docs}")
    return 0


def print_summary(out: Path) -> None:
    """The run's test table (``metrics_summary.csv``) as Markdown, with the fitted values."""
    summary = pd.read_csv(out / "metrics_summary.csv")
    print("| metric | value | 95% CI |\n|---|---:|---:|")
    for r in summary[summary["level"] == "test"].itertuples():
        ci = f"{r.ci_low:.3f} – {r.ci_high:.3f}" if pd.notna(r.ci_low) else "—"
        print(f"| {r.metric} | {r.value:.3f} | {ci} |")
    import torch

    cal = torch.load(out / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    print(f"fitted on validation: {cal['medcls'].get('calibration')}")


if __name__ == "__main__":
    sys.exit(main())

"""The README's worked example of the evaluation report: HAM10000 at small scale.

    python benchmarks/evaluation_report_ham10000.py [--root ../shared/data/ham10000]
        [--epochs 4] [--work-dir DIR] [--docs docs/evaluation]

Runs the real CLI once (one heavy job):

    medcls-train data=ham10000 data.root=ROOT model.name=resnet18 data.image_size=64
        trainer.max_epochs=EPOCHS 'eval.subgroups=[sex,age_group]' eval.calibrate=temperature

then prints, as Markdown, the test table with its 95% intervals (lesions resampled), the
subgroup table and the largest gaps, from the run's ``metrics_summary.csv``,
``subgroups.csv`` and ``subgroup_gaps.csv``, and copies its reliability diagrams, ROC curves
and subgroup forest plot to ``--docs`` (the images the README embeds).
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
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--work-dir", default=str(REPO / "outputs" / "evaluation_example"))
    ap.add_argument("--docs", default=str(REPO / "docs" / "evaluation"))
    args = ap.parse_args()
    if not os.path.isfile(os.path.join(args.root, "HAM10000_metadata.csv")):
        print(f"HAM10000 not found at {args.root}: give --root", file=sys.stderr)
        return 2
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    command = [
        str(Path(sys.executable).parent / "medcls-train"),
        "data=ham10000",
        f"data.root={args.root}",
        "model.name=resnet18",
        "data.image_size=64",
        f"trainer.max_epochs={args.epochs}",
        "eval.subgroups=[sex,age_group]",
        "eval.calibrate=temperature",
        "print_config=false",
        "++trainer.enable_progress_bar=false",
        "hydra.run.dir=outputs/example",
    ]
    started = time.time()
    proc = subprocess.run(command, cwd=work, capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stdout[-4000:] + proc.stderr[-4000:], file=sys.stderr)
        return proc.returncode
    out = work / "outputs" / "example"
    print("\n".join(machine_lines()))
    print(f"command: {' '.join(['medcls-train', *command[1:]])}")
    print(f"minutes: {(time.time() - started) / 60:.1f}\n")

    summary = pd.read_csv(out / "metrics_summary.csv")
    rows = summary[summary["level"] == "test"]
    print("| metric | value | 95% CI |\n|---|---:|---:|")
    for r in rows.itertuples():
        print(f"| {r.metric} | {r.value:.3f} | {r.ci_low:.3f} – {r.ci_high:.3f} |")
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


if __name__ == "__main__":
    sys.exit(main())

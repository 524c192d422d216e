"""HAM10000 at 64 px, equal epochs: medcls-train's defaults vs bare PyTorch loops, same split.

    python benchmarks/bare_loop_ham10000.py [--root ../shared/data/ham10000] [--epochs 8]
        [--skip-experiment] [--skip-weak] [--variant NAME="override ..."]... [--work-dir DIR]

Runs, one after the other (one heavy job at a time on a small machine):

  (a) medcls default: ``medcls-train data=ham10000 data.root=ROOT model.name=resnet18
      data.image_size=64 trainer.max_epochs=8`` — everything else the shipped default
      (docs/configuration.md "The training recipe": OneCycle to 1e-3, logit adjustment tuned on validation, flips,
      bf16-mixed where the CPU has it, test on the best-val checkpoint), trained on the split's
      train part (64%)
  (a') medcls ``experiment=ham10000_resnet18`` (class-weighted CE)
  (b) the bare loop (benchmarks/_bare.py ``strong``: √-inverse-frequency class weights, AdamW +
      OneCycle 2e-3, flips, batch 64, fp32, final epoch) for ``--epochs`` on train+val (80%)
  (c) the weak loop (``weak``: plain CE, Adam 1e-3, no augmentation), the same way

The bare loops read medcls's decoded 64 px arrays and its partitions (same pixels, same
lesion-grouped split); every row is scored here from its test predictions (balanced accuracy
with a 95% bootstrap interval over whole lesions, accuracy, macro AUROC).
Duration: about 20 min on 2 cores (each row ~4-6 min).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shlex
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import pytorch_lightning as pl  # noqa: E402, F401  (imported before quiet_libraries)
from _bare import partition_tensors, train_bare  # noqa: E402
from _common import CpuClock, load_average, machine_lines, quiet_libraries, table  # noqa: E402
from _runs import add_work_args, prediction_arrays, run_medcls, scores, work_dir_and_env  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402

from medcls.config import CONFIG_DIR  # noqa: E402
from medcls.workflows.common import build_datamodule  # noqa: E402

quiet_libraries()
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLOCK = CpuClock()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", default=os.path.join(REPO, "..", "shared", "data", "ham10000"))
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--seed", type=int, default=42, help="the split and every run's seed")
    p.add_argument("--skip-experiment", action="store_true", help="no experiment= run")
    p.add_argument("--skip-weak", action="store_true", help="no weak-loop row")
    p.add_argument("--variant", action="append", default=[], metavar='NAME="OVERRIDES"',
                   help="extra medcls run: the default overrides plus these (repeatable)")  # fmt: skip
    add_work_args(p, REPO)
    args = p.parse_args()
    root = os.path.abspath(args.root)
    work_dir, env = work_dir_and_env(args, "medcls-ham-bench")
    started = time.time()
    print("HAM10000 64 px, equal epochs: medcls-train vs bare loops, same lesion-grouped split")
    print("\n".join(machine_lines()))
    print(f"data: {root}; work dir: {work_dir}; decode cache: {env['MEDCLS_CACHE_DIR']}")

    base = ["data=ham10000", f"data.root={root}", "model.name=resnet18", "data.image_size=64"]
    base += [f"trainer.max_epochs={args.epochs}", f"seed={args.seed}"]
    runs = [("medcls default", base)]
    if not args.skip_experiment:
        runs.append(
            ("medcls experiment=ham10000_resnet18", ["experiment=ham10000_resnet18"] + base[1:])
        )
    runs += [
        (f"medcls {n}", base + shlex.split(o))
        for n, _, o in (v.partition("=") for v in args.variant)
    ]

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[*base, f"paths.output_dir={work_dir}/bare"])
    dm = build_datamodule(cfg)
    with contextlib.redirect_stdout(io.StringIO()):
        dm.setup()
    test_idx = np.sort(dm.partitions["test"])
    groups = np.array([dm.records[i].group for i in test_idx])
    test_ids = [dm.records[i].image_id for i in test_idx]
    y_test = dm.labels[test_idx]
    print(
        f"split: train/val/test {'/'.join(str(len(dm.partitions[k])) for k in ('train', 'val', 'test'))} (lesion-grouped)"
    )
    print()

    results = {}
    for i, (name, overrides) in enumerate(runs):
        r = run_medcls(f"run{i}", overrides, work_dir, env)
        probs, pred = prediction_arrays(r["preds"], dm.class_names, test_ids)
        results[name] = {**scores(y_test, probs, pred, groups), "seconds": r["seconds"],
                         "others": r["others"], "notes": f"{r['precision']}, best-val ckpt"}  # fmt: skip
        print(
            f"    {name}: test bacc {results[name]['bacc']:.4f}, {r['seconds']:.0f} s", flush=True
        )
    x_train, y_train = partition_tensors(dm, ("train", "val"))
    x_test, _ = partition_tensors(dm, ("test",))
    for recipe in ("strong",) if args.skip_weak else ("strong", "weak"):
        name = "bare loop" if recipe == "strong" else "weak loop"
        print(f"  [{time.strftime('%H:%M:%S')}] {name}", flush=True)
        a = CLOCK.stamp()
        r = train_bare(x_train, y_train, x_test, dm.num_classes, recipe, epochs=args.epochs,
                       seed=args.seed, log=lambda s: print(s, flush=True))  # fmt: skip
        b = CLOCK.stamp()
        results[name] = {**scores(y_test, r.probs, r.pred, groups), "seconds": r.seconds,
                         "others": CpuClock.others(a, b), "notes": "fp32, train+val, final epoch"}  # fmt: skip

    print()
    rows = [
        [n, f"{s['bacc']:.3f} [{s['lo']:.3f}, {s['hi']:.3f}]", f"{s['acc']:.3f}", f"{s['auc']:.3f}",
         f"{s['seconds']:.0f}", f"{s['others']:.2f}", s["notes"]]
        for n, s in results.items()
    ]  # fmt: skip
    print(f"test: {len(y_test)} images of {len(set(groups))} lesions (the same for every row)")
    print(
        table(["run", "bacc [95% CI]", "acc", "macro AUROC", "s", "others", "notes"], rows, (0, 6))
    )
    d, bare = results["medcls default"]["bacc"], results["bare loop"]["bacc"]
    verdict = "beats" if d > bare else "does NOT beat"
    print(
        f"medcls default {verdict} the bare loop at {args.epochs} epochs ({d:.3f} vs {bare:.3f})."
    )
    print(f"load average at end: {load_average()}; wall time {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

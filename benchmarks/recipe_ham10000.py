"""HAM10000: experiment=ham10000_fast vs bare PyTorch loops at equal wall-clock budgets.

    python benchmarks/recipe_ham10000.py [--root ../shared/data/ham10000] [--budgets 6.5 30]
        [--weak-budgets 6.5] [--experiment ham10000_fast] [--work-dir DIR] [--cache-dir DIR]

At each budget (minutes), one after the other on the same lesion-grouped split (the
experiment's, drawn by ``seed``; the test part is 20% of the lesions):

- the bare loop (benchmarks/_bare.py ``strong``): resnet18 from scratch, √-inverse-frequency
  class-weighted CE, AdamW + OneCycle (max LR 2e-3), flips, batch 64, fp32, on all non-test
  images (80%), epochs planned for the budget;
- the weak loop (``weak``: plain CE, Adam, no augmentation) at ``--weak-budgets`` only;
- ``medcls-train experiment=ham10000_fast trainer.max_time=<budget>`` (the CLI as a subprocess;
  its budget counts from process start: imports, decoding and the test report included).

Both bare loops read the 64 px images medcls decoded (its cache) and get the whole budget for
training and test inference. Every row is scored here the same way from its test
predictions: balanced accuracy with a 95% bootstrap interval resampling whole lesions,
accuracy, macro AUROC (one-vs-rest), training img/s; then medcls − bare with a paired
bootstrap interval. Target (issue 16): medcls ≥ bare + 0.05 balanced accuracy at each budget.

Duration: the budgets' sum × (2 + weak) plus ~1 min of decoding the first time
(6.5 + 30 min: about 80 min on 2 cores). Keep the machine otherwise idle: the ``others``
column shows cores other processes used meanwhile.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import pytorch_lightning as pl  # noqa: E402, F401  (imported before quiet_libraries)
from _bare import partition_tensors, train_bare  # noqa: E402
from _common import CpuClock, load_average, machine_lines, quiet_libraries, table  # noqa: E402
from _runs import (  # noqa: E402
    add_work_args,
    epochs_and_speed,
    prediction_arrays,
    run_medcls,
    scores,
    work_dir_and_env,
)
from hydra import compose, initialize_config_dir  # noqa: E402

from medcls.config import CONFIG_DIR  # noqa: E402
from medcls.studies.stats import paired_bootstrap  # noqa: E402
from medcls.workflows.common import build_datamodule  # noqa: E402

quiet_libraries()
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLOCK = CpuClock()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", default=os.path.join(REPO, "..", "shared", "data", "ham10000"))
    p.add_argument("--budgets", nargs="+", type=float, default=[6.5, 30.0], help="minutes")
    p.add_argument("--weak-budgets", nargs="*", type=float, default=[6.5], help="minutes")
    p.add_argument("--experiment", default="ham10000_fast")
    p.add_argument("--seed", type=int, default=42, help="the split, and every run's seed")
    add_work_args(p, REPO)
    args = p.parse_args()
    root = os.path.abspath(args.root)
    work_dir, env = work_dir_and_env(args, "medcls-recipe")
    started = time.time()
    print(f"HAM10000: experiment={args.experiment} vs bare loops at equal wall-clock budgets")
    print("\n".join(machine_lines()))
    print(f"data: {root}; work dir: {work_dir}; decode cache: {env['MEDCLS_CACHE_DIR']}")

    # The split as the experiment draws it; the bare loops' 64 px pixels from medcls's cache.
    split = [f"data.root={root}", f"seed={args.seed}"]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[f"experiment={args.experiment}", *split, "data.image_size=64"]
            + [f"paths.output_dir={work_dir}/bare"],
        )
    dm = build_datamodule(cfg)
    with contextlib.redirect_stdout(io.StringIO()):
        dm.setup()
    x_train, y_train = partition_tensors(dm, ("train", "val"))
    x_test, y_test = partition_tensors(dm, ("test",))
    test_idx = np.sort(dm.partitions["test"])
    groups = np.array([dm.records[i].group for i in test_idx])
    test_ids = [dm.records[i].image_id for i in test_idx]
    print(
        f"split: {len(y_train)} training (train+val) / {len(y_test)} test images, "
        f"{len(set(groups))} test lesions, classes {dm.class_names}"
    )
    print()

    rows, summary = [], []
    for minutes in args.budgets:
        budget = minutes * 60
        results = {}
        for recipe in ("strong", "weak") if minutes in args.weak_budgets else ("strong",):
            name = "bare loop" if recipe == "strong" else "weak loop"
            print(f"  [{time.strftime('%H:%M:%S')}] {name}, {minutes:g} min", flush=True)
            a = CLOCK.stamp()
            r = train_bare(x_train, y_train, x_test, dm.num_classes, recipe, budget_s=budget,
                           seed=args.seed, log=lambda s: print(s, flush=True))  # fmt: skip
            b = CLOCK.stamp()
            results[name] = {
                **scores(y_test.numpy(), r.probs, r.pred, groups),
                "pred": r.pred, "epochs": r.epochs, "img_s": r.images_per_s,
                "seconds": r.seconds, "others": CpuClock.others(a, b),
            }  # fmt: skip
        overrides = [f"experiment={args.experiment}", *split]
        overrides.append(f"trainer.max_time=00:00:{int(budget // 60):02d}:{int(budget % 60):02d}")
        r = run_medcls(f"medcls-{minutes:g}min", overrides, work_dir, env)
        probs, pred = prediction_arrays(r["preds"], dm.class_names, test_ids)
        epochs, img_s = epochs_and_speed(r["log"])
        results[f"medcls {args.experiment}"] = {
            **scores(y_test.numpy(), probs, pred, groups),
            "pred": pred, "seconds": r["seconds"], "others": r["others"],
            "epochs": epochs, "img_s": img_s,
        }  # fmt: skip
        for name, s in results.items():
            rows.append(
                [f"{minutes:g}", name, f"{s['bacc']:.3f} [{s['lo']:.3f}, {s['hi']:.3f}]"]
                + [f"{s['acc']:.3f}", f"{s['auc']:.3f}", f"{s['epochs']:.3g}", f"{s['img_s']:.0f}"]
                + [f"{s['seconds']:.0f}", f"{s['others']:.2f}"]
            )
            print(f"    {name}: test bacc {rows[-1][2]}, {rows[-1][7]} s", flush=True)
        ours = results[f"medcls {args.experiment}"]
        d = paired_bootstrap(
            y_test.numpy(), results["bare loop"]["pred"], ours["pred"], groups=groups
        )
        lead = ours["bacc"] - results["bare loop"]["bacc"]
        summary.append(
            [f"{minutes:g}", f"{lead:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]"]
            + [f"{d['p_value']:.3f}", "yes" if lead >= 0.05 else "NO"]
        )

    print()
    print(f"test: {len(y_test)} images of {len(set(groups))} lesions (the same for every row)")
    header = ["budget min", "run", "bacc [95% CI]", "acc", "macro AUROC", "epochs", "img/s"]
    print(table([*header, "s", "others"], rows, left=(1,)))
    print("img/s: training images per second of fit (medcls: validation included, none here).")
    print("others: cores other processes used meanwhile (0 = quiet machine).")
    print()
    print(
        table(
            ["budget min", "medcls − bare loop bacc [95% CI]", "p", "≥ +0.05"],
            summary,
            left=(),
        )
    )
    print(f"load average at end: {load_average()}; wall time {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

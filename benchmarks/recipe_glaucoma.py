"""Glaucoma (AIROGS RG vs NRG): what holds AUC near chance — resolution, the crop or the recipe?

    python benchmarks/recipe_glaucoma.py [--root ../shared/data/glaucoma_airogs] [--minutes 4]
        [--experiment glaucoma_fast] [--seed 42] [--work-dir DIR] [--cache-dir DIR]

Five runs of ``--minutes`` each, one after the other, on the same split (the experiment's,
drawn by ``seed``: 180 of the 540 photos tested, the other 360 trained on):

- the bare loop (benchmarks/_bare.py ``strong``: resnet18 from scratch, AdamW + OneCycle to
  2e-3, flips, fp32), on the whole fundus and on the optic-disc crop, both 128 px;
- ``medcls-train experiment=glaucoma_fast`` (ResNet-10-T, OneCycle planned for the budget,
  train+val, h/v-flip test-time views) on the whole fundus at 128 and 256 px
  (``data.optic_disc_crop=0``), and on the disc crop at 128 px (the experiment as shipped).

Every run gets the same wall-clock budget (medcls's counts from its process start). Each row
is scored here from its test predictions: AUC of RG with a 95% bootstrap interval, balanced
accuracy, accuracy; then paired bootstrap differences of AUC: the crop (disc − whole fundus),
the resolution (256 − 128 px), the recipe (medcls − bare loop, on each input).

Duration: 5 × the budget plus ~1 min of decoding the first time (4 min: about 22 minutes on
2 cores). Keep the machine otherwise idle (the ``others`` column).
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
    work_dir_and_env,
)
from hydra import compose, initialize_config_dir  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from medcls.config import CONFIG_DIR  # noqa: E402
from medcls.studies.stats import (  # noqa: E402
    accuracy,
    balanced_accuracy,
    bootstrap_ci,
    paired_bootstrap,
)
from medcls.workflows.common import build_datamodule  # noqa: E402

quiet_libraries()
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLOCK = CpuClock()

WHOLE = ["data.optic_disc_crop=0"]
# (row, runner, input overrides on top of the experiment)
ROWS = [
    ("bare loop, whole fundus 128 px", "bare", WHOLE),
    ("medcls, whole fundus 128 px", "medcls", WHOLE),
    ("medcls, whole fundus 256 px", "medcls", [*WHOLE, "data.image_size=256"]),
    ("bare loop, disc crop 128 px", "bare", []),
    ("medcls, disc crop 128 px (as shipped)", "medcls", []),
]
# (what it measures, row A, row B): AUC(B) − AUC(A)
PAIRS = [
    ("crop: disc − whole fundus (medcls, 128 px)", 1, 4),
    ("crop: disc − whole fundus (bare loop)", 0, 3),
    ("resolution: 256 − 128 px (medcls, whole fundus)", 1, 2),
    ("recipe: medcls − bare loop (whole fundus)", 0, 1),
    ("recipe: medcls − bare loop (disc crop)", 3, 4),
]


def auc(y: np.ndarray, p: np.ndarray) -> float:
    return float(roc_auc_score(y, p))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", default=os.path.join(REPO, "..", "shared", "data", "glaucoma_airogs"))
    p.add_argument("--minutes", type=float, default=4.0, help="each run's wall-clock budget")
    p.add_argument("--experiment", default="glaucoma_fast")
    p.add_argument("--seed", type=int, default=42, help="the split, and every run's seed")
    add_work_args(p, REPO)
    args = p.parse_args()
    root = os.path.abspath(args.root)
    work_dir, env = work_dir_and_env(args, "medcls-glaucoma")
    started = time.time()
    budget = args.minutes * 60
    print(
        f"Glaucoma: experiment={args.experiment}, resolution × crop × recipe, {args.minutes:g} min each"
    )
    print("\n".join(machine_lines()))
    print(f"data: {root}; work dir: {work_dir}; decode cache: {env['MEDCLS_CACHE_DIR']}")

    split = [f"experiment={args.experiment}", f"data.root={root}", f"seed={args.seed}"]
    results, test_ids, y_test = [], None, None
    for name, runner, inputs in ROWS:
        print(f"  [{time.strftime('%H:%M:%S')}] {name}", flush=True)
        # the split and the pixels as the experiment builds them (medcls's decode cache)
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose("train", overrides=[*split, *inputs, f"paths.output_dir={work_dir}/bare"])
        dm = build_datamodule(cfg)
        with contextlib.redirect_stdout(io.StringIO()):
            dm.setup()
        idx = np.sort(dm.partitions["test"])
        ids = [dm.records[i].image_id for i in idx]
        if test_ids is None:
            test_ids, y_test = ids, dm.labels[idx]
            positive = dm.class_names.index(str(cfg.data.positive_class))
            print(
                f"split: {len(dm.partitions['train']) + len(dm.partitions['val'])} training / "
                f"{len(ids)} test photos ({int((y_test == positive).sum())} "
                f"{cfg.data.positive_class}), classes {dm.class_names}",
                flush=True,
            )
        assert ids == test_ids, "every row must be tested on the same photos"
        if runner == "bare":
            x_train, y_train = partition_tensors(dm, ("train", "val"))
            x_test, _ = partition_tensors(dm, ("test",))
            a = CLOCK.stamp()
            r = train_bare(x_train, y_train, x_test, dm.num_classes, "strong", budget_s=budget,
                           seed=args.seed, log=lambda s: print(s, flush=True))  # fmt: skip
            b = CLOCK.stamp()
            probs, pred = r.probs, r.pred
            row = {"epochs": r.epochs, "img_s": r.images_per_s, "seconds": r.seconds}
            row["others"] = CpuClock.others(a, b)
        else:
            tag = f"medcls-{len(results)}"
            minutes, seconds = int(budget // 60), int(budget % 60)
            run = run_medcls(
                tag,
                [*split, *inputs, f"trainer.max_time=00:00:{minutes:02d}:{seconds:02d}"],
                work_dir,
                env,
            )
            probs, pred = prediction_arrays(run["preds"], dm.class_names, test_ids)
            epochs, img_s = epochs_and_speed(run["log"])
            row = {"epochs": epochs, "img_s": img_s, "seconds": run["seconds"]}
            row["others"] = run["others"]
        score = probs[:, positive]
        value, lo, hi = bootstrap_ci(y_test == positive, score, metric=auc, n_boot=1000)
        row.update(score=score, auc=value, lo=lo, hi=hi)
        row.update(bacc=balanced_accuracy(y_test, pred), acc=accuracy(y_test, pred))
        results.append(row)
        print(f"    AUC {value:.3f} [{lo:.3f}, {hi:.3f}], {row['seconds']:.0f} s", flush=True)

    rows = [
        [name, f"{r['auc']:.3f} [{r['lo']:.3f}, {r['hi']:.3f}]", f"{r['bacc']:.3f}"]
        + [f"{r['acc']:.3f}", f"{r['epochs']:.3g}", f"{r['img_s']:.0f}", f"{r['seconds']:.0f}"]
        + [f"{r['others']:.2f}"]
        for (name, _, _), r in zip(ROWS, results, strict=True)
    ]
    pairs = []
    for what, i, j in PAIRS:
        d = paired_bootstrap(
            y_test == positive, results[i]["score"], results[j]["score"], metric=auc
        )
        pairs.append(
            [what, f"{d['difference']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]"]
            + [f"{d['p_value']:.3f}"]
        )
    print()
    print(
        f"test: {len(test_ids)} photos (the same for every row); budget {args.minutes:g} min each"
    )
    header = ["run", "AUC of RG [95% CI]", "bacc", "acc", "epochs", "img/s", "s", "others"]
    print(table(header, rows, left=(0,)))
    print("img/s: training images per second of fit. others: cores other processes used meanwhile.")
    print()
    print(table(["factor", "AUC difference [95% CI]", "p"], pairs, left=(0,)))
    print(f"load average at end: {load_average()}; wall time {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

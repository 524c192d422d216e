"""Do medcls-train's defaults help or hurt? Each dataset, each variant, each seed: one run.

    python benchmarks/recipe_defaults.py [--datasets ham10000 glaucoma covid_ct] [--seeds 42 43]
        [--variant NAME="overrides ..."]... [--work-dir DIR] [--cache-dir DIR]

Every run is ``medcls-train data=D data.root=../shared/data/<D> model.name=resnet18`` plus the
dataset's size/epochs below plus the variant's overrides, with ``seed`` (which also draws the
split: each seed is another grouped split, and variants of one seed share it). Rows: test
balanced accuracy and macro AUROC with the run's own bootstrap interval (lesions / patients
resampled whole), then the mean over seeds and the mean paired difference to the first variant.

``--score-on val`` scores the validation part instead (how experiment=ham10000_fast was chosen,
docs/benchmarks.md "HAM10000 in 6.5 minutes"). Without ``--variant`` the variants are ``classic`` (``recipe=classic``: the defaults before
2026-12-03, cosine from 1e-3 and argmax), ``onecycle-2e-3`` and ``default`` (today's: OneCycle to
1e-3, logit adjustment tuned); give your own to try others.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
from _common import load_average, machine_lines, table  # noqa: E402
from _runs import add_work_args, run_medcls, summary_metric, work_dir_and_env  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(REPO, "..", "shared", "data")

# name → (data preset, folder under ../shared/data, size/epoch overrides)
DATASETS = {
    "ham10000": ("ham10000", "ham10000", ["data.image_size=64", "trainer.max_epochs=8"]),
    "glaucoma": ("glaucoma", "glaucoma_airogs", ["data.image_size=128", "trainer.max_epochs=10"]),
    "covid_ct": ("covid_ct", "covid_ct", ["data.image_size=128", "trainer.max_epochs=10"]),
}
VARIANTS = {
    "classic": "recipe=classic",  # the defaults before 2026-12-03: cosine from 1e-3, argmax
    "onecycle-2e-3": "optimizer.lr=2e-3",
    "default": "",
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument("--seeds", nargs="+", type=int, default=[42])
    p.add_argument("--variant", action="append", default=[], metavar='NAME="OVERRIDES"')
    p.add_argument(
        "--score-on",
        choices=("test", "val"),
        default="test",
        help="val: score the validation part instead (data.test_partition=val), for choosing "
        "a recipe without looking at the test part",
    )
    p.add_argument("--no-size", action="store_true", help="drop the datasets' size/epoch overrides")
    p.add_argument("--data-dir", default=DATA)
    add_work_args(p, REPO)
    args = p.parse_args()
    variants = dict(v.partition("=")[::2] for v in args.variant) or VARIANTS
    work_dir, env = work_dir_and_env(args, "medcls-defaults")
    started = time.time()
    print("medcls-train defaults: test balanced accuracy and AUROC per dataset, variant, seed")
    print("\n".join(machine_lines()))
    print("variants: " + "; ".join(f"{k}: {v or '(the defaults)'}" for k, v in variants.items()))
    print()

    rows, per = [], {}
    for ds in args.datasets:
        preset, folder, extra = DATASETS[ds]
        root = os.path.abspath(os.path.join(args.data_dir, folder))
        for seed in args.seeds:
            for name, overrides in variants.items():
                cmd = [f"data={preset}", f"data.root={root}", "model.name=resnet18"]
                cmd += [] if args.no_size else extra
                cmd += ["data.test_partition=val"] if args.score_on == "val" else []
                cmd += [f"seed={seed}", *shlex.split(overrides)]
                r = run_medcls(f"{ds}-{name}-{seed}", cmd, work_dir, env)
                bacc = summary_metric(r["summary"], "balanced_accuracy")
                auc = summary_metric(r["summary"], "auroc")
                if np.isnan(auc[0]):
                    auc = summary_metric(r["summary"], "auroc_macro")
                per[(ds, name, seed)] = (bacc[0], auc[0])
                rows.append(
                    [
                        ds,
                        name,
                        seed,
                        f"{bacc[0]:.3f} [{bacc[1]:.3f}, {bacc[2]:.3f}]",
                        f"{auc[0]:.3f} [{auc[1]:.3f}, {auc[2]:.3f}]",
                        f"{r['seconds']:.0f}",
                        f"{r['others']:.2f}",
                    ]
                )
                print(f"    bacc {rows[-1][3]}, AUROC {rows[-1][4]}, {rows[-1][5]} s", flush=True)
    print()
    print(
        table(
            ["dataset", "variant", "seed", "test bacc [95% CI]", "AUROC [95% CI]", "s", "others"],
            rows,
            left=(0, 1),
        )
    )
    first = next(iter(variants))
    print()
    print(f"mean over seeds {args.seeds} and the mean paired difference to '{first}':")
    summary = []
    for ds in args.datasets:
        for name in variants:
            b = np.array([per[(ds, name, s)] for s in args.seeds])
            d = b - np.array([per[(ds, first, s)] for s in args.seeds])
            summary.append(
                [ds, name, f"{b[:, 0].mean():.3f}", f"{d[:, 0].mean():+.3f}"]
                + [f"{b[:, 1].mean():.3f}", f"{d[:, 1].mean():+.3f}"]
            )
    print(table(["dataset", "variant", "bacc", "Δ bacc", "AUROC", "Δ AUROC"], summary, (0, 1)))
    print(f"load average at end: {load_average()}; wall time {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

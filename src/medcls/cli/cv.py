"""``medcls-cv [k=5] [tta=[hflip,vflip]] <medcls-train overrides>``: K-fold CV, then the ensemble
(``tta=``: the ensemble's ``eval.tta``; each fold model's own views by default).

Runs ``medcls-train -m ... data.fold=range(0,k)`` (one MLflow parent run, one child per fold;
folds stratified and grouped by patient/lesion, the test partition held out from all of them),
then ``medcls-ensemble`` on the sweep: the fold models' averaged softmax on the test partition,
group-level metrics, and out-of-fold metrics over every sample. Several configurations in one
call (``ablation=no_gap,full``, or an experiment's sweep) are ensembled one by one.
"""

from __future__ import annotations

import subprocess
import sys
import time

from medcls.errors import DataError


def split_args(argv: list[str]) -> tuple[int, list[str], list[str]]:
    """(k, arguments for the ensemble, arguments for training)."""
    k, ensemble, train = 5, [], []
    for a in argv:
        if a.startswith("k="):
            try:
                k = int(a[2:])
            except ValueError:
                raise DataError(
                    f"{a}: k is the number of folds, a whole number >= 2 (e.g. k=5)"
                ) from None
        elif a.startswith(("tta=", "+tta=")):  # the ensemble's views: its eval.tta
            ensemble.append("eval." + a.lstrip("+"))
        elif a.startswith("paths."):
            ensemble.append(a)  # e.g. paths.cache_dir: the ensemble reads the folds' decode cache
            train.append(a)
        else:
            train.append(a)
    return k, ensemble, train


def main(argv: list[str] | None = None) -> int:
    try:
        k, ensemble_args, train_args = split_args(sys.argv[1:] if argv is None else argv)
    except DataError as e:  # exit 2, as for a config error
        print(f"medcls-cv: {e}", file=sys.stderr)
        return 2
    if k < 2:
        print(f"medcls-cv: k={k}: cross-validation needs k >= 2", file=sys.stderr)
        return 2
    sweep_dir = f"multirun/cv/{time.strftime('%Y-%m-%d_%H-%M-%S')}"
    train = [
        sys.executable, "-m", "medcls.cli.train", "-m", *train_args,
        f"data.num_folds={k}", f"data.fold=range(0,{k})", f"hydra.sweep.dir={sweep_dir}",
    ]  # fmt: skip
    print("+", " ".join(train[1:]), flush=True)
    if (rc := subprocess.call(train)) != 0:
        print(f"medcls-cv: training folds failed (exit {rc}); see {sweep_dir}", file=sys.stderr)
        return rc
    # per_config: a sweep of several configurations (ablation=a,b) gets one ensemble each
    ensemble = [
        sys.executable, "-m", "medcls.cli.ensemble", f"sweep_dir={sweep_dir}", "per_config=true",
        *ensemble_args,
    ]  # fmt: skip
    print("+", " ".join(ensemble[1:]), flush=True)
    return subprocess.call(ensemble)


if __name__ == "__main__":
    sys.exit(main())

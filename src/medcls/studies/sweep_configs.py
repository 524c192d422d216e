"""A sweep's jobs grouped by configuration: jobs whose overrides differ only in the fold.

``medcls-train -m experiment=ham10000_ablation`` runs 7 configurations × 5 folds; each
configuration's fold models make one ensemble (``medcls-ensemble per_config=true``). Jobs are
grouped by the overrides Hydra recorded for each (:mod:`medcls.tracking.sweep_folder`); the seed is
*not* ignored: it also seeds the split, so other seeds mean another held-out test partition.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Sequence

from medcls.tracking import sweep_folder

FOLD_KEYS = ("data.fold",)


def config_key(overrides: Sequence[str], ignore: Sequence[str] = FOLD_KEYS) -> str:
    """The overrides that name a configuration (``ignore`` patterns removed), in their order."""
    return " ".join(
        o
        for o in overrides
        if not any(fnmatch.fnmatch(o.split("=", 1)[0].lstrip("+~"), p) for p in ignore)
    )


def sweep_configs(sweep_dir: str, ignore: Sequence[str] = FOLD_KEYS) -> dict[str, list[str]]:
    """``{configuration: [job names]}`` of the jobs with a ``checkpoints/best.ckpt``, in job
    order (configurations in the order of their first job)."""
    jobs = [sweep_folder.job_name(d) for d in sweep_folder.trained_jobs(sweep_dir)]
    groups: dict[str, list[str]] = {}
    for job in jobs:
        key = config_key(sweep_folder.job_overrides(os.path.join(sweep_dir, job)), ignore)
        groups.setdefault(key, []).append(job)
    return groups

"""A sweep's jobs grouped by configuration: jobs whose overrides differ only in the fold.

``medcls-train -m experiment=ham10000_ablation`` runs 7 configurations × 5 folds; each
configuration's fold models make one ensemble (``medcls-ensemble per_config=true``). Jobs are
grouped by the overrides Hydra recorded in ``<sweep>/<job>/.hydra/overrides.yaml``; the seed is
*not* ignored: it also seeds the split, so other seeds mean another held-out test partition.
"""

from __future__ import annotations

import fnmatch
import glob
import os
from collections.abc import Sequence

from omegaconf import OmegaConf

from medcls.data.records import DataError

FOLD_KEYS = ("data.fold",)


def job_overrides(job_dir: str) -> list[str]:
    """The task overrides of one sweep job (``<job>/.hydra/overrides.yaml``)."""
    path = os.path.join(job_dir, ".hydra", "overrides.yaml")
    if not os.path.isfile(path):
        raise DataError(
            f"{path} not found: per_config=true groups a sweep's jobs by the overrides Hydra "
            "records there (hydra.output_subdir must not be null); or give checkpoints=[...]."
        )
    return [str(o) for o in OmegaConf.load(path)]


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
    found = glob.glob(os.path.join(sweep_dir, "*", "checkpoints", "best.ckpt"))
    jobs = sorted(
        (os.path.basename(os.path.dirname(os.path.dirname(p))) for p in found),
        key=lambda n: (int(n), n) if n.isdigit() else (10**9, n),
    )
    if not jobs:
        raise DataError(
            f"sweep_dir={sweep_dir}: no <job>/checkpoints/best.ckpt found; did the sweep train?"
        )
    groups: dict[str, list[str]] = {}
    for job in jobs:
        key = config_key(job_overrides(os.path.join(sweep_dir, job)), ignore)
        groups.setdefault(key, []).append(job)
    return groups

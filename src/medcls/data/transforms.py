"""Albumentations pipelines built from ``conf/augmentation`` lists of ``{OpName: kwargs}``.

Any albumentations transform (or medcls' ``AugMix``) can be named in a config; augmentation runs
on the cached uint8 arrays, and normalisation happens later, on the batch, inside the task.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # never phone home on import

import albumentations as A  # noqa: E402
from omegaconf import DictConfig, ListConfig, OmegaConf  # noqa: E402

from medcls.data.augmix import AugMix  # noqa: E402
from medcls.data.policies import RandAugment, TrivialAugment  # noqa: E402
from medcls.errors import DataError

# Steps medcls adds to albumentations' own (same {OpName: kwargs} syntax in the configs).
EXTRA_OPS: dict[str, type[A.BasicTransform]] = {
    "AugMix": AugMix,
    "RandAugment": RandAugment,
    "TrivialAugment": TrivialAugment,
}


def create_transform(ops: Sequence[Any] | None, seed: int | None = None) -> A.Compose | None:
    """Build ``A.Compose`` from ``[{"HorizontalFlip": {"p": 0.5}}, ...]``; ``None`` if empty.

    albumentations 2 draws from its own generator, not numpy's or torch's, so ``seed`` is what
    makes augmentation repeat run to run (loader workers reseed it, see the datamodule).

    Masks given as ``mask=`` follow the geometric ops, so mask supervision stays aligned.
    """
    if not ops:
        return None
    if isinstance(ops, DictConfig | ListConfig):
        ops = OmegaConf.to_container(ops, resolve=True)
    if not isinstance(ops, list | tuple):
        raise DataError(
            f"augmentation steps {ops!r}: give a list, "
            "and write each step as {OpName: {kwargs}}"
        )
    built = []
    for op in ops:
        if isinstance(op, DictConfig):
            op = OmegaConf.to_container(op, resolve=True)
        if not isinstance(op, dict) or len(op) != 1:
            raise DataError(f"augmentation entry {op!r}: write each step as {{OpName: {{kwargs}}}}")
        ((name, kwargs),) = op.items()
        cls = EXTRA_OPS.get(name) or getattr(A, name, None)
        if cls is None:
            raise DataError(
                f"augmentation {name!r} is not an albumentations transform (A.{name}) "
                f"nor one of medcls' {sorted(EXTRA_OPS)}."
            )
        try:
            with warnings.catch_warnings():  # albumentations only warns about unknown arguments
                warnings.filterwarnings("error", message=r".*not valid for transform")
                built.append(cls(**(kwargs or {})))
        except (TypeError, ValueError, UserWarning) as e:
            raise DataError(
                f"augmentation {name}({kwargs}): {e}. Check the arguments of A.{name}."
            ) from e
    return A.Compose(built, seed=seed)

"""The embedded default dataset: lesion-like images generated from a seed, no files needed."""

from __future__ import annotations

from omegaconf import DictConfig

from medcls.data.records import Record
from medcls.data.sources.base import SourceData
from medcls.data.sources.synthetic_render import (
    SYNTHETIC_CLASSES,
    render_synthetic,
    synthetic_group,
    synthetic_label,
)

SCHEME = "synthetic://"


def load_synthetic(cfg: DictConfig) -> SourceData:
    n, k, seed = int(cfg.num_samples), int(cfg.num_classes), int(cfg.generator_seed)
    per_group = int(cfg.images_per_group)
    render_synthetic(seed, 0, k)  # validates num_classes before anything else happens
    records = [
        Record(
            path=f"{SCHEME}{seed}/{k}/{per_group}/{cfg.native_size}/{i:06d}.png",
            label=synthetic_label(seed, i, k),
            group=synthetic_group(seed, i, per_group),
            mask=f"{SCHEME}{seed}/{k}/{per_group}/{cfg.native_size}/{i:06d}_mask.png",
            source=cfg.name,
        )
        for i in range(n)
    ]
    return SourceData(cfg.name, list(SYNTHETIC_CLASSES[:k]), records)


def read_synthetic(address: str):
    """Image and mask for a ``synthetic://seed/classes/per_group/size/index.png`` address."""
    seed, k, per_group, size, leaf = address[len(SCHEME) :].split("/")
    index = int(leaf.split(".")[0].split("_")[0])
    return render_synthetic(
        int(seed), index, int(k), size=int(size), images_per_group=int(per_group)
    )

"""LightningDataModule: source → decode cache → splits → datasets and loaders."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, WeightedRandomSampler

from medcls.data.cache import DecodedImages, decode_all
from medcls.data.class_map import match_classes
from medcls.data.dataset import CachedDataset
from medcls.data.extra_records import (
    append_decoded,
    check_no_overlap,
    read_extra_records,
    same_files,
)
from medcls.data.masks import attach_mask_files, mask_source
from medcls.data.preprocess import Preprocess
from medcls.data.records import Record
from medcls.data.sources import load_source
from medcls.data.sources.base import check_no_empty_class
from medcls.data.splits import splits_for
from medcls.data.transforms import create_transform
from medcls.errors import DataError
from medcls.metrics.open_set import RejectUnknown

log = logging.getLogger(__name__)


class ClassificationDataModule(pl.LightningDataModule):
    """Everything a task needs from a dataset, built once in :meth:`setup`.

    Args:
        cfg: a ``conf/data`` config.
        train_ops: albumentations steps for training (``conf/augmentation``'s ``train`` list).
        eval_ops: steps for val/test/predict (normally none: the cache is already sized).
        cache_dir: where the disk decode cache lives.
    """

    def __init__(
        self,
        cfg: DictConfig,
        train_ops: Sequence | None = None,
        eval_ops: Sequence | None = None,
        cache_dir: str | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.cfg, self.cache_dir = cfg, cache_dir
        self.train_transform = create_transform(train_ops, seed)
        self.eval_transform = create_transform(eval_ops, seed)
        self.preprocess = Preprocess.from_cfg(cfg)
        self._built = False

    # -- building -----------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self._built:
            return
        self.load_records()
        self.decoded = self.decode()
        self.split(self.decoded.ok, self.decoded.bad)

    def load_records(self) -> None:
        """The source's records (and mask files), no image read: ``records``, ``class_names``,
        ``source_name``, ``notes``. The first step of :meth:`setup`; a frozen-feature probe
        whose features are cached stops here and goes on with :meth:`split`."""
        cfg = self.cfg
        if cfg.on_bad_image not in ("skip", "error"):
            raise DataError(f"data.on_bad_image={cfg.on_bad_image!r}: use skip or error")
        src = load_source(cfg)
        self.source_name, self.class_names, self.notes = src.name, src.class_names, src.notes
        self.records: list[Record] = src.records
        masks = cfg.get("mask") or {}
        if cfg.load_masks and masks.get("dir"):  # a masks/ folder for any source
            self.records, found = attach_mask_files(
                self.records, masks.dir, masks.get("pattern") or "{stem}_mask.png"
            )
            log.info("%d mask file(s) found in %s", found, masks.dir)

    def decode(self) -> DecodedImages:
        """Every record's image (``(N, S, S, 3)`` uint8, aligned with ``records``), from the
        decode cache or decoded into it."""
        masks = self.cfg.get("mask") or {}
        return decode_all(
            self.source_name,
            self.records,
            self.preprocess,
            load_masks=bool(self.cfg.load_masks),
            mask_source=mask_source(masks),
            cache=self.cfg.cache,
            cache_dir=self.cache_dir,
            workers=self.cfg.get("decode_workers"),
        )

    def split(self, ok: np.ndarray, bad: list[tuple[str, str]]) -> None:
        """Partitions of the records that decoded: ``ok (N,)`` bool, aligned with ``records``;
        ``bad``: ``(path, reason)`` of the others. Needs the records, not the pixels (only
        ``data.extra_records`` decodes, its own images)."""
        cfg = self.cfg
        self.skipped = bad
        if self.skipped and cfg.on_bad_image == "error":
            shown = "\n  ".join(f"{p}: {why}" for p, why in self.skipped[:5])
            raise DataError(
                f"{len(self.skipped)} image(s) cannot be decoded:\n  {shown}\n"
                "Replace or delete them, or set data.on_bad_image=skip to train without them."
            )
        for path, why in self.skipped:
            log.warning("skipping unreadable image %s (%s)", path, why)
        self.labels = np.array([r.label for r in self.records], dtype=np.int64)
        kept = np.flatnonzero(ok)
        if self.skipped:
            first = f"{self.skipped[0][0]}: {self.skipped[0][1]}"
            check_no_empty_class(
                self.class_names,
                [self.records[i] for i in kept],
                f"{self.source_name} once {len(self.skipped)} unreadable image(s) are skipped "
                f"(the first: {first})",
            )
        # images of an unknown class (data.unknown=reject) never train: they only join the test
        unknown = kept[self.labels[kept] == len(self.class_names)]
        known = np.setdiff1d(kept, unknown)
        if cfg.get("test_partition") == "all":  # evaluating every image: nothing to split
            parts = {k: np.arange(0) for k in ("train", "val", "test")}
        else:
            parts = splits_for([self.records[i] for i in known], self.class_names, cfg)
        self.partitions = {k: known[v] for k, v in parts.items()}
        if unknown.size and cfg.get("test_partition") != "all":
            self.partitions["test"] = np.union1d(self.partitions["test"], unknown)
        self.partitions["all"] = kept
        if cfg.get("extra_records"):  # e.g. pseudo-labels: they join training only
            self._add_extra_records(str(cfg.extra_records))
        self._set_unknown(len(self.class_names))
        self._built = True
        if cfg.get("test_partition") == "all":  # split=all: no partitions, every image scored
            sizes = f"all {len(self.partitions['all'])} images"
        else:
            sizes = "train {} / val {} / test {} images".format(
                *(len(self.partitions[k]) for k in ("train", "val", "test"))
            )
        log.info(
            "%s: %d classes, %s, %d skipped",
            self.source_name,
            len(self.class_names),
            sizes,
            len(self.skipped),
        )

    def _add_extra_records(self, path: str) -> None:
        """Append ``data.extra_records`` to the records and to the training partition."""
        extra = read_extra_records(path, self.class_names)
        check_no_overlap(extra, self.records_of("val"), f"data.extra_records={path}")
        if in_test := len(same_files(extra, self.records_of("test"))):
            self.notes.append(
                f"{in_test} of data.extra_records={path} are test images: this run's test "
                "metrics are not on unseen images (medcls-pseudo pool=test turns testing off)."
            )
        if not extra:
            return
        decoded = decode_all(
            f"{self.source_name}-extra",
            extra,
            self.preprocess,
            cache=self.cfg.cache,
            cache_dir=self.cache_dir,
            workers=self.cfg.get("decode_workers"),
        )
        first = len(self.records)
        self.records = [*self.records, *extra]
        self.labels = np.concatenate([self.labels, [r.label for r in extra]]).astype(np.int64)
        self.decoded = append_decoded(self.decoded, decoded)
        self.skipped = self.decoded.bad
        added = first + np.flatnonzero(decoded.ok)
        self.partitions["train"] = np.concatenate([self.partitions["train"], added])
        log.info("data.extra_records: %d image(s) added to training from %s", added.size, path)

    def remap_to(
        self, model_classes: Sequence[str], class_map: Mapping[str, str] | None = None
    ) -> None:
        """Relabel to a checkpoint's class list (evaluation on a dataset with other names).

        Dataset classes the checkpoint lacks follow ``data.unknown``: an error, left out
        (``exclude``), or scored as a rejected class (``reject``)."""
        policy = self.cfg.get("unknown", "error")
        k = len(model_classes)
        matched = match_classes(
            self.class_names, model_classes, class_map, unmatched=None if policy == "error" else k
        )
        mapping = np.array([*matched, k], dtype=np.int64)  # + the source's own unknown label
        self.labels = np.where(self.labels >= 0, mapping[self.labels], self.labels)
        self.class_names = list(model_classes)
        if policy == "exclude":
            keep = self.labels < k
            self.partitions = {name: idx[keep[idx]] for name, idx in self.partitions.items()}
        self._set_unknown(k)

    def _set_unknown(self, k: int) -> None:
        """``self.unknown``: the reject option when the evaluated images include unknown ones."""
        self.unknown: RejectUnknown | None = None
        evaluated = self.partitions.get(self.cfg.get("test_partition", "test"), np.arange(0))
        if self.cfg.get("unknown", "error") == "reject" and (self.labels[evaluated] == k).any():
            self.unknown = RejectUnknown(
                str(self.cfg.get("unknown_name", "unknown")),
                float(self.cfg.get("unknown_threshold", 0.5)),
            )

    # -- facts about the data -----------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def class_counts(self) -> np.ndarray:
        """Training images per class, for class-weighted losses."""
        return np.bincount(self.labels[self.partitions["train"]], minlength=self.num_classes)

    @property
    def data_uri(self) -> str:
        """Where the images come from: ``data.root``, or the source's name (generated data)."""
        return str(self.cfg.get("root") or self.source_name)

    def records_of(self, partition: str) -> list[Record]:
        return [self.records[i] for i in self.partitions[partition]]

    def mean_std(self, max_images: int = 2000) -> tuple[list[float], list[float]]:
        """Per-channel mean/std (0..1 scale) of the training images, for ``normalize: dataset``."""
        idx = self.partitions["train"]
        if len(idx) > max_images:
            idx = np.random.default_rng(0).choice(idx, max_images, replace=False)
        x = np.asarray(self.decoded.images[np.sort(idx)], dtype=np.float64) / 255.0
        return x.mean(axis=(0, 1, 2)).tolist(), x.std(axis=(0, 1, 2)).tolist()

    # -- loaders ------------------------------------------------------------------------------
    def dataset(self, partition: str, train: bool = False) -> CachedDataset:
        d = self.decoded
        return CachedDataset(
            d.images,
            self.labels,
            self.partitions[partition],
            transform=self.train_transform if train else self.eval_transform,
            masks=d.masks,
            has_mask=d.has_mask,
        )

    def train_sampler(self) -> WeightedRandomSampler | None:
        """``data.sampler``: ``balanced`` draws every class equally often, ``sqrt`` in proportion
        to the square root of its count (between balanced and natural); ``none``: shuffling.
        Drawn with replacement, one epoch = as many draws as training images."""
        mode = str(self.cfg.get("sampler") or "none")
        if mode == "none":
            return None
        power = {"balanced": 1.0, "sqrt": 0.5}.get(mode)
        if power is None:
            raise DataError(f"data.sampler={mode!r}: use none, balanced or sqrt")
        labels = self.labels[self.partitions["train"]]
        counts = np.bincount(labels, minlength=self.num_classes).astype(np.float64)
        weights = counts[labels] ** -power  # per image: its class's share, reweighted
        generator = torch.Generator().manual_seed(int(self.cfg.get("split_seed") or 0))
        return WeightedRandomSampler(
            torch.as_tensor(weights), len(labels), replacement=True, generator=generator
        )

    def _loader(self, partition: str, train: bool = False) -> DataLoader:
        workers = int(self.cfg.num_workers)
        sampler = self.train_sampler() if train else None
        return DataLoader(
            self.dataset(partition, train),
            batch_size=int(self.cfg.batch_size),
            shuffle=train and sampler is None,
            sampler=sampler,
            drop_last=train and len(self.partitions[partition]) > self.cfg.batch_size,
            num_workers=workers,
            persistent_workers=workers > 0,
            worker_init_fn=_reseed_transform if workers > 0 else None,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.cfg.get("test_partition", "test"))


def _reseed_transform(worker_id: int) -> None:
    """Give each loader worker its own, reproducible augmentation stream.

    ``info.seed`` derives from the main process's torch seed, which ``seed_everything`` fixes;
    without this every worker would replay the same albumentations sequence.
    """
    info = torch.utils.data.get_worker_info()
    np.random.seed(info.seed % 2**32)
    transform = getattr(info.dataset, "transform", None)
    if transform is not None:
        transform.set_random_seed(info.seed % 2**32)

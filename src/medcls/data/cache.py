"""Decode and preprocess every image once into uint8 arrays, in memory or on disk.

The cache holds a whole dataset (all records of a source), keyed by the files' identity
(path, size, mtime), the preprocessing and the image size; folds, sweeps and later runs index
into it instead of decoding JPEGs again. A disk cache is decoded straight into memory-mapped
files in a temporary folder (memory bounded by one window, not by the dataset) and renamed into
place, so an interrupted decode never leaves a half-written cache behind.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from medcls.data.lung_mask import VERSION as LUNG_MASK_VERSION
from medcls.data.lung_mask import lung_field_mask, lung_field_mask_hu
from medcls.data.medical.address import file_of
from medcls.data.preprocess import Preprocess
from medcls.data.readers import read_image, read_mask_image
from medcls.data.records import Record
from medcls.data.sources.synthetic import SCHEME, read_synthetic
from medcls.errors import BadImageError, DataError

log = logging.getLogger(__name__)
CACHE_VERSION = 1
PARALLEL_MIN_IMAGES = 256
# one memory-mapped window of the disk cache being written: the decode's peak memory beyond
# the images in flight
CHUNK_BYTES = 64 << 20


@dataclass
class DecodedImages:
    """Arrays aligned with the record list.

    Attributes:
        images: ``(N, S, S, 3)`` uint8.
        masks: ``(N, S, S)`` uint8 (0/255) when masks were requested, else ``None``.
        has_mask: ``(N,)`` bool, which records came with a mask.
        ok: ``(N,)`` bool, False for images that could not be decoded (skipped).
        bad: ``(path, reason)`` for every skipped image.
    """

    images: np.ndarray
    masks: np.ndarray | None
    has_mask: np.ndarray
    ok: np.ndarray
    bad: list[tuple[str, str]]


def cache_key(
    name: str,
    records: Sequence[Record],
    pre: Preprocess,
    load_masks: bool,
    mask_source: str = "file",
) -> str:
    h = hashlib.sha1()
    parts = [CACHE_VERSION, name, pre.to_dict(), load_masks]
    if load_masks and mask_source != "file":  # (file masks keep the keys caches already have)
        parts.append(f"{mask_source}:{LUNG_MASK_VERSION}")
    h.update(json.dumps(parts, sort_keys=True).encode())
    for r in records:
        _hash_file(h, r.path)
        if load_masks and r.mask:
            _hash_file(h, r.mask)
    return h.hexdigest()


def _hash_file(h, path: str) -> None:
    """A file's identity: path, size and mtime (a replaced image or mask changes the key); a
    CT slice's address stands for the file that holds it."""
    h.update(path.encode())
    if not path.startswith(SCHEME):
        try:
            st = os.stat(file_of(path))
            h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
        except OSError:
            h.update(b"missing")


def _decode(args: tuple[Record, Preprocess, bool, str]):
    """Worker: one record → (image, mask, error, mask_error)."""
    rec, pre, load_mask, mask_source = args
    hu = None
    try:
        if rec.path.startswith(SCHEME):
            img, mask = read_synthetic(rec.path)
            mask = mask if load_mask else None
        else:
            img, hu = read_image(rec.path, grayscale=pre.grayscale, window=pre.window)
            mask = read_mask_image(rec.mask) if load_mask and rec.mask else None
        if load_mask and mask_source == "lung_threshold":  # computed on the full-size slice
            # a CT slice's own HU when it has them (air < -400 HU), else the 8-bit picture
            mask = lung_field_mask(img) if hu is None else lung_field_mask_hu(hu)
    except (BadImageError, FileNotFoundError) as e:
        return None, None, str(e), None
    if mask is not None and mask.shape[:2] != img.shape[:2]:
        msg = (
            f"{rec.mask} is {mask.shape[1]}x{mask.shape[0]} "
            f"but {rec.path} is {img.shape[1]}x{img.shape[0]}"
        )
        return None, None, None, msg
    img, mask = pre(img, mask)
    return img, mask, None, None


def decode_all(
    name: str,
    records: Sequence[Record],
    pre: Preprocess,
    *,
    load_masks: bool = False,
    cache: str = "disk",
    cache_dir: str | None = None,
    workers: int | None = None,
    progress: bool = True,
    mask_source: str = "file",
) -> DecodedImages:
    """Decode ``records`` (or load them from the disk cache) into a :class:`DecodedImages`.

    A disk cache is decoded straight into memory-mapped ``.npy`` files, one window of
    :data:`CHUNK_BYTES` at a time, so peak memory stays flat however large the dataset (the
    cache takes N × S² × 3 bytes of disk, + N × S² with masks); the arrays returned map it.

    Args:
        cache: ``disk`` (reuse across runs, under ``cache_dir``) or ``memory`` (this process only).
        workers: decoding threads; default one per core for large sets of files.
        mask_source: ``file`` (each record's mask file) or ``lung_threshold`` (computed, see
            :mod:`medcls.data.lung_mask`; an image where none is found has no mask).
    """
    if cache not in ("disk", "memory"):
        raise DataError(f"data.cache={cache!r}: use disk or memory")
    job = _Job(records, pre, load_masks, workers, progress, mask_source)
    if cache == "memory":
        return _decode_records(job, *_in_memory(len(records), pre.image_size, load_masks))
    key = cache_key(name, records, pre, load_masks, mask_source)
    folder = os.path.join(cache_dir or ".", f"{name}-{pre.image_size}px-{key[:16]}")
    if os.path.isdir(folder):
        try:
            loaded = _load(folder, len(records), pre.image_size, load_masks)
            log.info("decode cache hit: %s", folder)
            return loaded
        except DamagedCache as e:  # wrong size or shape, truncated, unreadable: decode again
            log.warning("decode cache %s is damaged (%s); decoding the images again", folder, e)
            shutil.rmtree(folder, ignore_errors=True)
    try:
        return _decode_to_disk(job, folder)
    except CacheWriteError as e:  # a full or read-only disk: this run decodes in memory
        log.warning("could not write decode cache %s: %s; decoding in memory", folder, e)
        return _decode_records(job, *_in_memory(len(records), pre.image_size, load_masks))


@dataclass
class _Job:
    records: Sequence[Record]
    pre: Preprocess
    load_masks: bool
    workers: int | None
    progress: bool
    mask_source: str


class CacheWriteError(Exception):
    """The disk cache could not be written (no space, no permission)."""


def _in_memory(n: int, s: int, load_masks: bool) -> tuple[np.ndarray, np.ndarray | None]:
    images = np.zeros((n, s, s, 3), dtype=np.uint8)
    return images, np.zeros((n, s, s), dtype=np.uint8) if load_masks else None


def _decode_to_disk(job: _Job, folder: str) -> DecodedImages:
    """Decode into ``.npy`` files in a temporary folder, then rename it to ``folder``."""
    n, s = len(job.records), job.pre.image_size
    parent = os.path.dirname(os.path.abspath(folder))
    try:
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".tmp-", dir=parent)
    except OSError as e:
        raise CacheWriteError(e) from e
    try:
        images = _RowWriter(os.path.join(tmp, "images.npy"), (n, s, s, 3))
        masks = _RowWriter(os.path.join(tmp, "masks.npy"), (n, s, s)) if job.load_masks else None
        d = _decode_records(job, images, masks)
        for w in (images, masks):
            if w is not None:
                w.close()
        np.save(os.path.join(tmp, "ok.npy"), d.ok)
        np.save(os.path.join(tmp, "has_mask.npy"), d.has_mask)
        with open(os.path.join(tmp, "meta.json"), "w") as f:
            json.dump({"version": CACHE_VERSION, "bad": d.bad}, f)
        try:
            os.replace(tmp, folder)
        except OSError:  # another job wrote the same cache first: theirs is identical, keep it
            if not os.path.isfile(os.path.join(folder, "meta.json")):
                raise
    except OSError as e:
        raise CacheWriteError(e) from e
    finally:  # also on Ctrl-C or a bad mask: no half-written folder is left behind
        shutil.rmtree(tmp, ignore_errors=True)
    return _load(folder, n, s, job.load_masks)


class _RowWriter:
    """Rows of a uint8 ``.npy`` array written in index order through a memory-mapped window.

    Only one window of ``CHUNK_BYTES`` is mapped at a time: each is flushed and unmapped before
    the next, so the pages written never pile up in the process's resident memory.
    """

    def __init__(self, path: str, shape: tuple[int, ...]) -> None:
        header = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)
        self.path, self.shape, self.offset = path, shape, header.offset
        del header
        self.row_bytes = int(np.prod(shape[1:]))
        self.rows = max(1, CHUNK_BYTES // self.row_bytes)
        # reserve the blocks now: a full disk is an OSError here, not a SIGBUS mid-decode
        if hasattr(os, "posix_fallocate") and shape[0]:
            with open(path, "r+b") as f:
                try:
                    os.posix_fallocate(f.fileno(), 0, self.offset + shape[0] * self.row_bytes)
                except OSError as e:  # a file system that cannot reserve: write as we go
                    if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                        raise
        self.start, self.window = 0, None

    def __setitem__(self, i: int, row: np.ndarray) -> None:
        if self.window is None or not self.start <= i < self.start + len(self.window):
            self.close()
            self.start = i - i % self.rows
            k = min(self.rows, self.shape[0] - self.start)
            offset = self.offset + self.start * self.row_bytes
            self.window = np.memmap(
                self.path, np.uint8, "r+", offset=offset, shape=(k, *self.shape[1:])
            )
        self.window[i - self.start] = row

    def close(self) -> None:
        if self.window is not None:
            self.window.flush()
            self.window = None  # unmapped: the written pages leave this process's memory


def _decode_records(job: _Job, images, masks) -> DecodedImages:
    """Decode every record into ``images`` / ``masks`` (arrays or :class:`_RowWriter`)."""
    records, n, s = job.records, len(job.records), job.pre.image_size
    has_mask = np.zeros(n, dtype=bool)
    ok = np.ones(n, dtype=bool)
    bad: list[tuple[str, str]] = []
    mask_errors: list[str] = []
    jobs = ((r, job.pre, job.load_masks, job.mask_source) for r in records)
    workers = job.workers
    if workers is None:
        # Threads, not processes: PIL and OpenCV release the GIL while decoding and resizing
        # (1.65x on 2 cores for HAM10000 JPEGs), and forking a process whose OpenCV/torch
        # thread pools are running can deadlock the children. Generated images are
        # Python-bound and gain nothing from threads.
        files = n >= PARALLEL_MIN_IMAGES and not records[0].path.startswith(SCHEME)
        workers = min(os.cpu_count() or 1, 8) if files else 0
    pool = ThreadPoolExecutor(workers) if workers > 1 else None
    results = _bounded_map(pool, jobs) if pool else map(_decode, jobs)
    if job.progress and n >= PARALLEL_MIN_IMAGES:
        from rich.progress import track

        results = track(results, total=n, description=f"decoding {n} images at {s}px")
    try:
        for i, (img, mask, err, mask_err) in enumerate(results):
            if mask_err:
                mask_errors.append(mask_err)
            elif err:
                ok[i] = False
                bad.append((records[i].path, err))
            else:
                images[i] = img
                if mask is not None:
                    masks[i], has_mask[i] = mask, True
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)
    if mask_errors:
        shown = "\n  ".join(mask_errors[:5])
        raise DataError(
            f"{len(mask_errors)} mask(s) do not match their image's size:\n  {shown}\n"
            "Fix or remove those masks, or train without masks (data.load_masks=false)."
        )
    return DecodedImages(images, masks, has_mask, ok, bad)


def _bounded_map(pool: ThreadPoolExecutor, jobs, chunk: int = 256):
    """``pool.map`` in chunks, so finished large images never pile up beyond one chunk."""
    jobs = iter(jobs)
    while batch := [j for _, j in zip(range(chunk), jobs, strict=False)]:
        yield from pool.map(_decode, batch)


class DamagedCache(Exception):
    """A cache folder that does not hold what its key promises."""


def _load(folder: str, n: int, size: int, load_masks: bool) -> DecodedImages:
    """The cached arrays, checked against the ``n`` records at ``size`` px they stand for."""
    try:
        with open(os.path.join(folder, "meta.json")) as f:
            meta = json.load(f)
        masks_path = os.path.join(folder, "masks.npy")
        d = DecodedImages(
            images=np.load(os.path.join(folder, "images.npy"), mmap_mode="r"),
            masks=np.load(masks_path, mmap_mode="r") if os.path.isfile(masks_path) else None,
            has_mask=np.load(os.path.join(folder, "has_mask.npy")),
            ok=np.load(os.path.join(folder, "ok.npy")),
            bad=[tuple(b) for b in meta["bad"]],
        )
    except (OSError, ValueError, KeyError, TypeError, EOFError) as e:
        raise DamagedCache(f"{type(e).__name__}: {e}") from e
    expected = {
        "images": ((n, size, size, 3), d.images),
        "ok": ((n,), d.ok),
        "has_mask": ((n,), d.has_mask),
    }
    if load_masks:
        if d.masks is None:
            raise DamagedCache("masks.npy is missing")
        expected["masks"] = ((n, size, size), d.masks)
    for name, (shape, arr) in expected.items():
        if arr.shape != shape:
            raise DamagedCache(f"{name}.npy is {arr.shape}, expected {shape}")
    if meta.get("version") != CACHE_VERSION:
        raise DamagedCache(f"version {meta.get('version')}, expected {CACHE_VERSION}")
    return d

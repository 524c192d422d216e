"""Decode cache: decode once, reuse on disk, key on content and preprocessing."""

from __future__ import annotations

import os

import numpy as np
import pytest

import medcls.data.cache as cache_mod
from medcls.data.cache import cache_key, decode_all
from medcls.data.io import read_rgb
from medcls.data.preprocess import Preprocess
from medcls.data.records import Record
from medcls.data.sources import load_source
from medcls.errors import DataError


@pytest.fixture
def records(data_cfg, folder_dataset) -> list[Record]:
    return load_source(data_cfg("imagefolder", root=str(folder_dataset))).records


@pytest.fixture
def cdir(tmp_path):
    """An empty folder for the disk cache (the images live elsewhere in tmp_path)."""
    return tmp_path / "cache"


def cache_folders(cache_dir) -> list[str]:
    return sorted(os.listdir(cache_dir)) if os.path.isdir(cache_dir) else []


def test_decoded_arrays_match_the_images(records) -> None:
    pre = Preprocess(image_size=12)
    out = decode_all("t", records, pre, cache="memory")
    assert out.images.shape == (18, 12, 12, 3) and out.images.dtype == np.uint8
    assert out.ok.all() and out.bad == [] and out.masks is None and not out.has_mask.any()
    for i in (0, 7, 17):
        expected, _ = pre(read_rgb(records[i].path))
        np.testing.assert_array_equal(out.images[i], expected)


def test_disk_cache_is_reused(records, cdir, monkeypatch) -> None:
    pre = Preprocess(image_size=12)
    first = decode_all("t", records, pre, cache="disk", cache_dir=str(cdir))
    (folder,) = cache_folders(cdir)
    assert folder.startswith("t-12px-")
    assert sorted(os.listdir(cdir / folder)) == [
        "has_mask.npy",
        "images.npy",
        "meta.json",
        "ok.npy",
    ]

    def must_not_decode(*args, **kwargs):
        raise AssertionError("decoded again instead of using the disk cache")

    monkeypatch.setattr(cache_mod, "_decode_records", must_not_decode)
    second = decode_all("t", records, pre, cache="disk", cache_dir=str(cdir))
    np.testing.assert_array_equal(second.images, first.images)
    np.testing.assert_array_equal(second.ok, first.ok)
    assert cache_folders(cdir) == [folder]


def test_disk_cache_remembers_skipped_images(records, cdir) -> None:
    with open(records[3].path, "wb") as f:
        f.write(b"garbage")
    pre = Preprocess(image_size=12)
    first = decode_all("t", records, pre, cache="disk", cache_dir=str(cdir))
    second = decode_all("t", records, pre, cache="disk", cache_dir=str(cdir))
    assert len(cache_folders(cdir)) == 1
    assert not second.ok[3] and second.ok.sum() == 17
    assert second.bad == first.bad and second.bad[0][0] == records[3].path


def test_memory_cache_writes_nothing(records, cdir, monkeypatch) -> None:
    cdir.mkdir()
    monkeypatch.chdir(cdir)  # the default cache_dir is "."
    out = decode_all("t", records, Preprocess(image_size=12), cache="memory")
    out = decode_all("t", records, Preprocess(image_size=12), cache="memory", cache_dir="c")
    assert out.ok.all()
    assert os.listdir(cdir) == []


@pytest.mark.parametrize(
    "change",
    [
        {"image_size": 16},
        {"grayscale": True},
        {"crop_black_border": True},
        {"center_crop_fraction": 0.8},
        {"optic_disc_crop": 0.3},
        {"resize_mode": "pad"},
    ],
)
def test_key_changes_with_preprocessing(records, change) -> None:
    base = Preprocess(image_size=12)
    other = Preprocess(**{**base.to_dict(), **change})
    assert cache_key("t", records, base, False) == cache_key("t", records, Preprocess(12), False)
    assert cache_key("t", records, base, False) != cache_key("t", records, other, False)


def test_key_changes_with_name_masks_records_and_file_content(records) -> None:
    pre = Preprocess(image_size=12)
    key = cache_key("t", records, pre, False)
    assert key != cache_key("u", records, pre, False)
    assert key != cache_key("t", records, pre, True)
    assert key != cache_key("t", records[:-1], pre, False)
    path = records[0].path
    with open(path, "ab") as f:
        f.write(b"\0")  # same name, new content
    assert key != cache_key("t", records, pre, False)


def test_key_changes_when_a_mask_is_replaced(tmp_path, image_file) -> None:
    img = image_file(tmp_path / "a.jpg")
    mask = image_file(tmp_path / "a_mask.png", mode="L", value=0)
    recs = [Record(img, 0, mask=mask)]
    pre = Preprocess(image_size=12)
    key = cache_key("t", recs, pre, True)
    image_file(mask, mode="L", value=255, size=(50, 30))
    assert key != cache_key("t", recs, pre, True)
    assert cache_key("t", recs, pre, False) == cache_key("t", [Record(img, 0)], pre, False)


def test_new_preprocessing_makes_a_new_cache(records, cdir) -> None:
    decode_all("t", records, Preprocess(image_size=12), cache_dir=str(cdir))
    out = decode_all("t", records, Preprocess(image_size=10), cache_dir=str(cdir))
    assert out.images.shape[1:3] == (10, 10)
    assert len(cache_folders(cdir)) == 2


def test_failed_decode_leaves_no_cache(tmp_path, image_file) -> None:
    img = image_file(tmp_path / "data" / "a.jpg", size=(40, 30))
    mask = image_file(tmp_path / "data" / "a_mask.png", size=(30, 30), mode="L")
    recs = [Record(img, 0, mask=mask)]
    cache_dir = tmp_path / "cache"
    with pytest.raises(DataError, match="do not match their image's size"):
        decode_all("t", recs, Preprocess(12), load_masks=True, cache_dir=str(cache_dir))
    assert cache_folders(cache_dir) == []


def test_interrupted_save_leaves_no_half_written_folder(records, cdir, monkeypatch) -> None:
    calls = []

    def save_then_interrupt(path, arr):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(cache_mod.np, "save", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        decode_all("t", records, Preprocess(12), cache_dir=str(cdir))
    monkeypatch.undo()
    assert cache_folders(cdir) == []
    # the next run decodes and writes a complete cache
    decode_all("t", records, Preprocess(12), cache_dir=str(cdir))
    (folder,) = cache_folders(cdir)
    assert os.path.isfile(cdir / folder / "meta.json")


def test_unwritable_cache_still_returns_images(records, cdir, monkeypatch) -> None:
    def disk_full(path, arr):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache_mod.np, "save", disk_full)
    out = decode_all("t", records, Preprocess(12), cache_dir=str(cdir))
    assert out.ok.all() and out.images.shape[0] == 18
    assert cache_folders(cdir) == []


def test_masks_are_decoded_and_resized_with_their_images(tmp_path, image_file) -> None:
    recs = []
    for i in range(3):
        img = image_file(tmp_path / f"{i}.jpg", size=(40, 30))
        mask = image_file(tmp_path / f"{i}_m.png", size=(40, 30), mode="L", value=200)
        recs.append(Record(img, 0, mask=mask if i != 1 else None))
    out = decode_all("t", recs, Preprocess(12), load_masks=True, cache_dir=str(tmp_path / "c"))
    assert out.masks.shape == (3, 12, 12) and out.masks.dtype == np.uint8
    assert out.has_mask.tolist() == [True, False, True]
    assert (out.masks[0] == 255).all() and (out.masks[1] == 0).all()
    again = decode_all("t", recs, Preprocess(12), load_masks=True, cache_dir=str(tmp_path / "c"))
    np.testing.assert_array_equal(again.masks, out.masks)
    np.testing.assert_array_equal(again.has_mask, out.has_mask)


def test_parallel_decode_matches_serial(records) -> None:
    serial = decode_all("t", records, Preprocess(12), cache="memory", workers=0)
    parallel = decode_all("t", records, Preprocess(12), cache="memory", workers=2)
    np.testing.assert_array_equal(serial.images, parallel.images)


def _truncate(path) -> None:
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


DAMAGE = {
    "truncated images": lambda d: _truncate(d / "images.npy"),
    "images of another size": lambda d: np.save(
        d / "images.npy", np.zeros((18, 8, 8, 3), np.uint8)
    ),
    "fewer images": lambda d: np.save(d / "images.npy", np.zeros((5, 12, 12, 3), np.uint8)),
    "unreadable meta": lambda d: (d / "meta.json").write_text("{not json"),
    "missing ok.npy": lambda d: (d / "ok.npy").unlink(),
    "not an npy": lambda d: (d / "has_mask.npy").write_bytes(b"garbage"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_disk_cache_is_logged_and_rebuilt(records, cdir, caplog, damage) -> None:
    pre = Preprocess(image_size=12)
    fresh = decode_all("t", records, pre, cache="memory")
    decode_all("t", records, pre, cache="disk", cache_dir=str(cdir))
    (folder,) = cache_folders(cdir)
    DAMAGE[damage](cdir / folder)
    with caplog.at_level("WARNING", logger="medcls.data.cache"):
        again = decode_all("t", records, pre, cache="disk", cache_dir=str(cdir))
    assert f"decode cache {cdir / folder} is damaged" in caplog.text
    np.testing.assert_array_equal(again.images, fresh.images)
    assert again.ok.all()
    caplog.clear()
    with caplog.at_level("WARNING", logger="medcls.data.cache"):  # rebuilt: a plain hit now
        hit = decode_all("t", records, pre, cache="disk", cache_dir=str(cdir))
    assert "damaged" not in caplog.text and cache_folders(cdir) == [folder]
    np.testing.assert_array_equal(hit.images, fresh.images)


def test_disk_decode_through_small_windows_matches_memory(records, cdir, monkeypatch) -> None:
    """The disk cache is written window by window; rows on every window boundary land right."""
    pre = Preprocess(image_size=12)
    row = 12 * 12 * 3
    monkeypatch.setattr(cache_mod, "CHUNK_BYTES", 5 * row)  # 18 images: windows of 5, 5, 5, 3
    windows = []
    real_memmap = cache_mod.np.memmap

    def recording_memmap(*args, **kwargs):
        if args[2:3] == ("r+",):  # the writer's windows (not the header or the final map)
            windows.append(kwargs["shape"][0])
        return real_memmap(*args, **kwargs)

    monkeypatch.setattr(cache_mod.np, "memmap", recording_memmap)
    on_disk = decode_all("t", records, pre, cache="disk", cache_dir=str(cdir))
    monkeypatch.undo()
    assert windows == [5, 5, 5, 3]
    assert isinstance(on_disk.images, np.memmap)  # the result maps the file, not a RAM copy
    np.testing.assert_array_equal(
        on_disk.images, decode_all("t", records, pre, cache="memory").images
    )


def test_a_disk_that_cannot_reserve_the_cache_falls_back_to_memory(
    records, cdir, monkeypatch, caplog
) -> None:
    def no_space(fd, offset, length):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache_mod.os, "posix_fallocate", no_space, raising=False)
    with caplog.at_level("WARNING", logger="medcls.data.cache"):
        out = decode_all("t", records, Preprocess(12), cache_dir=str(cdir))
    assert "could not write decode cache" in caplog.text and "No space left" in caplog.text
    assert out.ok.all() and not isinstance(out.images, np.memmap)
    assert cache_folders(cdir) == []

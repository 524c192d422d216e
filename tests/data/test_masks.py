"""``data.mask``: mask files matched to any source's images by a folder + file-name pattern."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from medcls.data.masks import attach_mask_files, mask_file_for, mask_source
from medcls.data.records import Record
from medcls.errors import DataError


def test_pattern_placeholders() -> None:
    path = "/data/RG/img_01.jpg"
    assert mask_file_for(path, "/m", "{stem}_mask.png") == "/m/img_01_mask.png"
    assert mask_file_for(path, "/m", "{parent}/{name}") == "/m/RG/img_01.jpg"
    with pytest.raises(DataError, match="stem"):
        mask_file_for(path, "/m", "{id}.png")


def test_attach_keeps_existing_masks_and_skips_missing_files(tmp_path) -> None:
    (tmp_path / "masks").mkdir()
    (tmp_path / "masks" / "a_mask.png").write_bytes(b"")
    records = [Record("/x/a.jpg", 0), Record("/x/b.jpg", 1), Record("/x/c.jpg", 0, mask="/own.png")]
    out, found = attach_mask_files(records, str(tmp_path / "masks"), "{stem}_mask.png")
    assert found == 1
    assert [r.mask for r in out] == [str(tmp_path / "masks" / "a_mask.png"), None, "/own.png"]
    with pytest.raises(DataError, match="not a folder"):
        attach_mask_files(records, str(tmp_path / "nope"), "{stem}.png")


def test_unknown_mask_source() -> None:
    assert mask_source(None) == "file" and mask_source({"source": "lung_threshold"})
    with pytest.raises(DataError, match="lung_threshold"):
        mask_source({"source": "unet"})


def test_mask_folder_for_an_imagefolder(tmp_path, data_cfg, image_folder) -> None:
    from medcls.data.datamodule import ClassificationDataModule

    folders = image_folder(tmp_path / "images", {"a": 6, "b": 6})
    with_mask = sorted(p for paths in folders.values() for p in paths)[::2]
    for p in with_mask:  # masks/<class>/<stem>_seg.png: the same file names in both classes
        m = np.zeros((30, 40), np.uint8)
        m[5:15] = 255
        parent, name = p.rsplit("/", 2)[1:]
        (tmp_path / "masks" / parent).mkdir(parents=True, exist_ok=True)
        Image.fromarray(m).save(tmp_path / "masks" / parent / f"{name[:-4]}_seg.png")
    cfg = data_cfg(
        "imagefolder",
        root=str(tmp_path / "images"),
        load_masks=True,
        cache="memory",
        image_size=32,
        resize_mode="stretch",
        mask={
            "source": "file",
            "dir": str(tmp_path / "masks"),
            "pattern": "{parent}/{stem}_seg.png",
        },
    )
    dm = ClassificationDataModule(cfg)
    dm.setup()
    has = {r.path: bool(h) for r, h in zip(dm.records, dm.decoded.has_mask, strict=True)}
    assert has == {p: p in with_mask for p in has}
    i = [r.path for r in dm.records].index(with_mask[0])
    assert dm.decoded.masks[i][:10].any() and not dm.decoded.masks[i][-8:].any()

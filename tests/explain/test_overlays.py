"""Which test images get an overlay, and the PNGs themselves."""

from __future__ import annotations

import numpy as np
from PIL import Image

from medcls.explain.overlays import CAPTION, TILE, caption_for, pick_examples, write_overlays


def test_pick_examples_mixes_correct_and_wrong_per_class() -> None:
    # rows: label, predicted class (by probs), confidence
    labels = np.array([0, 0, 0, 0, 1, 1, 1])
    probs = np.array(
        [
            [0.9, 0.1],  # 0 correct, conf .9
            [0.6, 0.4],  # 0 correct, .6
            [0.2, 0.8],  # 0 wrong, .8
            [0.3, 0.7],  # 0 wrong, .7
            [0.1, 0.9],  # 1 correct, .9
            [0.4, 0.6],  # 1 correct, .6
            [0.55, 0.45],  # 1 wrong, .55
        ]
    )
    assert pick_examples(labels, probs, 4).tolist() == [0, 2, 4, 6]
    assert pick_examples(labels, probs, 6).tolist() == [0, 2, 4, 6, 1, 3]
    assert sorted(pick_examples(labels, probs, 100).tolist()) == list(range(7))
    assert pick_examples(labels, probs, 0).size == 0


def test_captions() -> None:
    assert caption_for(["nv", "mel"], np.array([0.3, 0.7]), 0) == (
        "WRONG: true nv, pred mel 0.70",
        "true-nv_pred-mel",
    )
    assert caption_for(["nv", "mel"], np.array([0.3, 0.7]))[0] == "pred mel 0.70"


def test_write_overlays(tmp_path) -> None:
    images = np.zeros((2, 32, 32, 3), np.uint8)
    heat = np.zeros((2, 32, 32), np.float32)
    heat[:, :16, :16] = 1.0
    paths = write_overlays(str(tmp_path), images, heat, ["a", "b"], ["x/1", "y"])
    assert [p.rsplit("/", 1)[1] for p in paths] == ["x_1.png", "y.png", "overview.png"]
    tile = np.asarray(Image.open(paths[0]))
    assert tile.shape == (CAPTION + TILE, 2 * TILE, 3)
    hot, cold = tile[CAPTION + 10, TILE + 10], tile[CAPTION + TILE - 10, 2 * TILE - 10]
    assert hot[0] > 40 and hot[2] < 10  # JET red (half-blended onto black) where the map is 1
    assert cold[2] > 40 and cold[0] < 10  # JET blue where it is 0
    assert np.asarray(Image.open(paths[2])).shape == (2 * (CAPTION + TILE), 2 * TILE, 3)

"""CT windows: parsing ``data.window`` specs and HU → uint8 against a hand computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from omegaconf import OmegaConf

from medcls.data.medical.windows import WINDOWS, apply_window, parse_window
from medcls.errors import DataError


def by_hand(hu: float, width: float, level: float) -> int:
    """The textbook window, one pixel at a time in plain Python."""
    lo, hi = level - width / 2, level + width / 2
    if hu <= lo:
        return 0
    if hu >= hi:
        return 255
    return round((hu - lo) / width * 255)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("lung", (1500, -600)),
        ("mediastinum", (350, 50)),
        ("bone", (1800, 400)),
        ("brain", (80, 40)),
        ("soft_tissue", (400, 40)),
        ("Soft-Tissue", (400, 40)),
        (" LUNG ", (1500, -600)),
    ],
)
def test_named_windows(name, expected):
    assert parse_window(name) == (expected,)


def test_pairs_and_lists():
    assert parse_window([1500, -600]) == ((1500.0, -600.0),)
    assert parse_window((80.5, 40)) == ((80.5, 40.0),)
    assert parse_window(["lung", [350, 50], "bone"]) == ((1500, -600), (350, 50), (1800, 400))
    assert parse_window(["lung", "bone"]) == ((1500, -600), (1800, 400))
    assert parse_window([[2000, 0]]) == ((2000.0, 0.0),)
    parsed = parse_window(["lung", "mediastinum"])
    assert parse_window(parsed) == parsed  # an already parsed spec parses to itself
    # what Hydra hands over: ListConfig values
    cfg = OmegaConf.create({"w": ["lung", [400, 40]], "p": [1500, -600], "n": "bone"})
    assert parse_window(cfg.w) == ((1500, -600), (400, 40))
    assert parse_window(cfg.p) == ((1500, -600),)
    assert parse_window(cfg.n) == ((1800, 400),)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("lugn", r"unknown window 'lugn' \(did you mean 'lung'\?\)"),
        ("bonez", r"did you mean 'bone'"),
        ("liver", r"unknown window 'liver'; use a window name"),  # nothing close: no guess
        (["lung", "mediastinumm"], r"did you mean 'mediastinum'"),
        ([0, 40], r"width 0 must be > 0"),
        ([-350, 50], r"width -350 must be > 0"),
        (["lung", [0, 40]], r"width 0 must be > 0"),
        (["lung", "bone", "brain", "mediastinum"], r"4 windows, at most 3"),
        ([1500], r"1500 is not a window"),
        ([[1500, -600, 3]], r"is not a window"),
        (["lung", 40], r"40 is not a window"),
        ([], r"not a window"),
        (1500, r"not a window"),
        (None, r"not a window"),
        ({"width": 1500}, r"not a window"),
        ([float("nan"), 0], r"must be finite"),
        ([True, 40], r"not a window"),  # a bool is no width
    ],
)
def test_bad_specs(spec, message):
    with pytest.raises(DataError, match=message) as err:
        parse_window(spec)
    text = str(err.value)
    assert text.startswith(f"data.window={spec!r}:")
    for name in WINDOWS:  # every message lists the names
        assert name in text


def test_apply_window_by_hand():
    hu = np.array(
        [[-3000.0, -1350.0, -1349.0, -1000.0, -600.3], [-101.0, 0.0, 149.0, 150.0, 2500.0]],
        dtype=np.float32,
    )
    for name, (width, level) in WINDOWS.items():
        out = apply_window(hu, name)
        assert out.shape == (2, 5, 3) and out.dtype == np.uint8
        expected = [[by_hand(float(v), width, level) for v in row] for row in hu]
        for c in range(3):
            np.testing.assert_array_equal(out[..., c], expected, err_msg=name)
    # a few pixels spelled out for the lung window: lo = -1350, hi = 150
    out = apply_window(hu, "lung")[..., 0]
    assert out[0, 0] == 0 and out[0, 1] == 0 and out[1, 3] == 255 and out[1, 4] == 255
    assert out[0, 2] == round(1 / 1500 * 255)  # 0
    assert out[0, 3] == round(350 / 1500 * 255) == 60
    assert out[1, 1] == round(1350 / 1500 * 255) == 230


def test_one_two_three_channels():
    rng = np.random.default_rng(0)
    hu = rng.uniform(-1200, 1200, (16, 12)).astype(np.float32)

    def chan(width, level):
        return np.array([[by_hand(float(v), width, level) for v in row] for row in hu])

    lung, med, bone = chan(1500, -600), chan(350, 50), chan(1800, 400)
    one = apply_window(hu, "mediastinum")
    for c in range(3):
        np.testing.assert_array_equal(one[..., c], med)
    two = apply_window(hu, ["lung", "bone"])
    np.testing.assert_array_equal(two[..., 0], lung)
    np.testing.assert_array_equal(two[..., 1], bone)
    np.testing.assert_array_equal(two[..., 2], lung)  # the third channel repeats the first
    three = apply_window(hu, ["lung", [350, 50], "bone"])
    for c, expected in enumerate((lung, med, bone)):
        np.testing.assert_array_equal(three[..., c], expected)
    assert not np.array_equal(lung, med)  # the channels really differ on this input


def test_nan_and_shape():
    hu = np.array([[math.nan, 0.0]], dtype=np.float32)
    assert apply_window(hu, "lung")[0, 0].tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match=r"\(H, W\) slice"):
        apply_window(np.zeros((2, 2, 3), np.float32), "lung")
    with pytest.raises(DataError, match="lugn"):
        apply_window(np.zeros((2, 2), np.float32), "lugn")

"""CT display windows: Hounsfield units → 8-bit RGB for an ImageNet backbone.

A window ``(width, level)`` maps ``[level - width/2, level + width/2]`` HU linearly onto 0..255
and clips everything outside, as a radiologist's viewer does. One window fills the three
channels alike; two or three windows (``data.window=[lung, mediastinum, bone]``) give each
channel its own, so the network sees lung parenchyma, soft tissue and bone at once.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from typing import Any, TypeAlias

import numpy as np

from medcls.errors import DataError

Window: TypeAlias = tuple[float, float]  # (width, level) in HU

WINDOWS: dict[str, Window] = {
    "lung": (1500.0, -600.0),
    "mediastinum": (350.0, 50.0),
    "bone": (1800.0, 400.0),
    "brain": (80.0, 40.0),
    "soft_tissue": (400.0, 40.0),
}
MAX_WINDOWS = 3  # one per RGB channel

_HELP = (
    f"use a window name ({', '.join(WINDOWS)}), a [width, level] pair in HU, or a list of up "
    f"to {MAX_WINDOWS} of those (one per channel)"
)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def _is_sequence(x: Any) -> bool:
    # OmegaConf's ListConfig is a Sequence too; a str is not a window list
    return isinstance(x, (Sequence, np.ndarray)) and not isinstance(x, (str, bytes))


def _one(item: Any, spec: Any) -> Window:
    """A name or a ``[width, level]`` pair → ``(width, level)``."""
    if isinstance(item, str):
        key = item.strip().lower().replace("-", "_").replace(" ", "_")
        if key in WINDOWS:
            return WINDOWS[key]
        close = difflib.get_close_matches(key, WINDOWS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise DataError(f"data.window={spec!r}: unknown window '{item}'{hint}; {_HELP}")
    if _is_sequence(item) and len(item) == 2 and all(_is_number(v) for v in item):
        width, level = float(item[0]), float(item[1])
        if not (math.isfinite(width) and math.isfinite(level)):
            raise DataError(f"data.window={spec!r}: width and level must be finite; {_HELP}")
        if width <= 0:
            raise DataError(f"data.window={spec!r}: width {item[0]} must be > 0; {_HELP}")
        return width, level
    raise DataError(f"data.window={spec!r}: {item!r} is not a window; {_HELP}")


def parse_window(spec: Any) -> tuple[Window, ...]:
    """A window spec → a tuple of 1 to 3 ``(width, level)`` pairs (HU).

    ``spec`` is a name (``"lung"``), a ``[width, level]`` pair (``[1500, -600]``), or a list of up
    to three names/pairs (``["lung", "mediastinum", [1800, 400]]``). Names are case-insensitive
    (``soft-tissue`` works too). An already parsed tuple of pairs parses to itself.

    Raises:
        DataError: unknown name (with the closest name), width ≤ 0, more than 3 windows, or a
            value of the wrong shape; the message names ``data.window=<spec>`` and the names.
    """
    if isinstance(spec, str):
        return (_one(spec, spec),)
    if not _is_sequence(spec) or len(spec) == 0:
        raise DataError(f"data.window={spec!r}: not a window; {_HELP}")
    if len(spec) == 2 and all(_is_number(v) for v in spec):  # one [width, level] pair
        return (_one(spec, spec),)
    if len(spec) > MAX_WINDOWS:
        raise DataError(
            f"data.window={spec!r}: {len(spec)} windows, at most {MAX_WINDOWS} (one per RGB "
            f"channel); {_HELP}"
        )
    return tuple(_one(item, spec) for item in spec)


def window_to_uint8(hu: np.ndarray, width: float, level: float) -> np.ndarray:
    """``hu`` (any shape, HU) → uint8 of the same shape: ``lo = level - width/2`` is 0,
    ``lo + width`` is 255, linear in between (rounded to the nearest), clipped outside. NaN
    (possible in NIfTI volumes) becomes 0."""
    lo = level - width / 2
    # float64, in the textbook order: the rounding agrees with a hand computation
    scaled = (np.asarray(hu, dtype=np.float64) - lo) / width * 255.0
    scaled = np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0)
    return np.rint(np.clip(scaled, 0.0, 255.0)).astype(np.uint8)


def apply_window(hu: np.ndarray, windows: Any) -> np.ndarray:
    """``(H, W)`` HU slice → ``(H, W, 3)`` uint8 RGB.

    Args:
        hu: ``(H, W)`` float array of Hounsfield units (:func:`~medcls.data.medical.dicom.read_hu`).
        windows: a spec for :func:`parse_window` or its result. One window is repeated on the
            three channels; two or three windows give one channel each, in order (with two, the
            third channel repeats the first: R and B show window 1, G window 2).
    """
    if hu.ndim != 2:
        raise ValueError(f"apply_window expects an (H, W) slice, got shape {hu.shape}")
    parsed = parse_window(windows)
    channels = [window_to_uint8(hu, w, lvl) for w, lvl in parsed]
    if len(channels) == 1:
        channels *= 3
    elif len(channels) == 2:
        channels.append(channels[0])
    return np.stack(channels, axis=-1)

"""Procedural dermoscopy-like lesion images: an embedded default dataset that needs no files.

Every sample is a pure function of ``(seed, index, num_classes, size, images_per_group)``: the same
arguments give byte-identical pixels in any process and in any call order, because each sample
derives its own generators from :class:`numpy.random.SeedSequence` (no ``hash()``, no global
state).

Samples are organised like a dermoscopy archive:

* **label** ``index % num_classes``: balanced and free to compute (no rendering).
* **group** (one "lesion"): up to ``images_per_group`` photographs of the same lesion. Geometry,
  colours and texture come from ``(seed, lesion)``; each photograph adds its own shift, rotation,
  scale, exposure, colour cast, blur, grain, hair and vignette from ``(seed, index)``.

Labels repeat with period 60 = lcm(1..5) and a lesion only collects indices with the same
``index % 60`` (indices ``r, r + 60, r + 120, ...`` chunked by ``images_per_group``). So all
images of a group share the label for *every* ``num_classes`` <= 5, and :func:`synthetic_group`
needs no ``num_classes``.

Classes (the first ``num_classes`` of :data:`SYNTHETIC_CLASSES` are used):

* ``nevus``: round/oval, smooth soft border, uniform brown, sometimes a darker centre.
* ``melanoma``: irregular asymmetric outline, mottled dark brown with black, blue-grey,
  light-brown and regression patches gathered on one side, peripheral dark globules.
* ``bcc``: translucent pink/pearly plaque, white shiny areas, thin red arborising vessels,
  sometimes small blue-grey nests.
* ``keratosis``: tan "stuck-on" plaque with a sharp border, cerebriform ridges, white
  milia-like and dark comedo-like dots.
* ``vascular``: cluster of red-to-purple lobules separated by pale septa, sharp border.

Implementation note: 3-channel float work goes through cv2 (``cvtColor``, ``transform``,
``blendLinear``) because numpy broadcasting over a trailing axis of 3 is ~10x slower; this keeps
a 128 px image well under a millisecond.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import NamedTuple

import cv2
import numpy as np

__all__ = ["SYNTHETIC_CLASSES", "render_synthetic", "synthetic_group", "synthetic_label"]

SYNTHETIC_CLASSES: tuple[str, ...] = ("nevus", "melanoma", "bcc", "keratosis", "vascular")

_PERIOD = 60  # lcm(1, 2, 3, 4, 5): index % 60 fixes the label for every supported num_classes
_MASK64 = (1 << 64) - 1
# Distinct first words keep the lesion, photograph and noise-tile streams independent.
_TAG_LESION, _TAG_IMAGE, _TAG_TILES = 0x4C45, 0x494D, 0x5449
_SHIFT = 4  # cv2 sub-pixel bits: smooth outlines even at small sizes
_ONE = float(1 << _SHIFT)
_MIN_SIZE = 16

_Renderer = Callable[[np.ndarray, "_Pose", np.random.Generator, int], tuple[np.ndarray, np.ndarray]]


# --------------------------------------------------------------------------- public API


def synthetic_label(seed: int, index: int, num_classes: int) -> int:
    """Class index of sample ``index``: ``index % num_classes`` (balanced, no rendering).

    ``seed`` is accepted for symmetry with the other functions; labels do not depend on it, so
    the class balance is the same for every seed.
    """
    _check_index(index)
    _check_num_classes(num_classes)
    return index % num_classes


def synthetic_group(seed: int, index: int, images_per_group: int) -> str:
    """Lesion id of sample ``index``, e.g. ``"lesion_00007"``.

    A lesion holds up to ``images_per_group`` indices with equal ``index % 60``, so all of them
    have the same label for any ``num_classes`` <= 5. The id does not depend on ``seed``.
    """
    _check_index(index)
    _check_images_per_group(images_per_group)
    return f"lesion_{_lesion_number(index, images_per_group):05d}"


def render_synthetic(
    seed: int,
    index: int,
    num_classes: int,
    size: int = 128,
    images_per_group: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """Render sample ``index``.

    Returns:
        ``(image, mask)``: ``image`` is ``(size, size, 3)`` uint8 RGB; ``mask`` is
        ``(size, size)`` uint8, 255 inside the lesion outline and 0 elsewhere (never empty).
    """
    _check_index(index)
    _check_num_classes(num_classes)
    _check_images_per_group(images_per_group)
    if not isinstance(size, (int, np.integer)) or size < _MIN_SIZE:
        raise ValueError(f"size={size!r}: synthetic images need an integer size >= {_MIN_SIZE}")
    size = int(size)
    lesion_rng = _rng(_TAG_LESION, seed, _lesion_number(index, images_per_group))
    image_rng = _rng(_TAG_IMAGE, seed, index)

    # Lesion level: skin tone, lesion size (20-45 % of the image area), position, orientation.
    skin = _skin_tone(lesion_rng)
    radius = size * math.sqrt(lesion_rng.uniform(0.20, 0.45) / math.pi)
    base_angle = lesion_rng.uniform(0.0, 2.0 * math.pi)
    offset = lesion_rng.uniform(-0.08, 0.08, 2) * size
    # Photograph level: the dermatoscope sits a little differently every time.
    pose = _Pose(
        centre=size / 2.0 + offset + image_rng.normal(0.0, 0.025 * size, 2),
        scale=radius * image_rng.uniform(0.94, 1.06),
        angle=base_angle + image_rng.normal(0.0, 0.2),
    )

    img = _background(skin, lesion_rng, image_rng, size)
    img, mask = _RENDERERS[index % num_classes](img, pose, lesion_rng, size)
    img = _finish(img, image_rng, size)
    np.clip(img, 0.0, 255.0, out=img)
    return cv2.convertScaleAbs(img), mask  # rounds and saturates to uint8


# --------------------------------------------------------------------------- helpers


class _Pose(NamedTuple):
    """Where one photograph puts the lesion: lesion-local units (radius ~1) -> pixels."""

    centre: np.ndarray  # (2,) x, y in pixels
    scale: float  # pixels per local unit
    angle: float  # radians

    def px(self, pts: np.ndarray) -> np.ndarray:
        """Map ``(..., 2)`` local points to pixel coordinates."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        rot = np.array([[c, s], [-s, c]]) * self.scale  # transposed rotation for row vectors
        return pts @ rot + self.centre

    def fixed(self, pts: np.ndarray) -> np.ndarray:
        """``(..., 2)`` local points as cv2 sub-pixel int32 coordinates."""
        return np.rint(self.px(pts) * _ONE).astype(np.int32)

    def length(self, r: float) -> int:
        """A local length in cv2 sub-pixel units (at least 1)."""
        return max(1, round(r * self.scale * _ONE))


def _rng(tag: int, seed: int, key: int) -> np.random.Generator:
    # SeedSequence needs non-negative words; masking keeps negative seeds usable and distinct.
    return np.random.default_rng(np.random.SeedSequence([tag, int(seed) & _MASK64, int(key)]))


def _lesion_number(index: int, images_per_group: int) -> int:
    return (index // (_PERIOD * images_per_group)) * _PERIOD + index % _PERIOD


def _check_index(index: int) -> None:
    if not isinstance(index, (int, np.integer)) or index < 0:
        raise ValueError(f"index={index!r}: synthetic sample indices are integers >= 0")


def _check_num_classes(num_classes: int) -> None:
    n = len(SYNTHETIC_CLASSES)
    if not isinstance(num_classes, (int, np.integer)) or not 1 <= num_classes <= n:
        raise ValueError(
            f"num_classes={num_classes!r}: the synthetic source renders 1 to {n} classes "
            f"({', '.join(SYNTHETIC_CLASSES)}); set num_classes <= {n} or use a real dataset"
        )


def _check_images_per_group(images_per_group: int) -> None:
    if not isinstance(images_per_group, (int, np.integer)) or images_per_group < 1:
        raise ValueError(f"images_per_group={images_per_group!r}: must be an integer >= 1")


@lru_cache(maxsize=8)
def _tiles(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fixed ``2*size`` px noise textures (fine, medium, coarse), cropped at random offsets.

    Cropping a cached tile is free, unlike drawing ``size**2`` normals per image; the fixed seed
    keeps the tiles identical in every process.
    """
    rng = _rng(_TAG_TILES, 0, size)
    n = 2 * size
    out = [rng.standard_normal((n, n), dtype=np.float32)]
    for cell in (size / 20.0, size / 7.0):  # feature size in px
        low = rng.standard_normal((max(4, round(n / cell)),) * 2, dtype=np.float32)
        smooth = cv2.resize(low, (n, n), interpolation=cv2.INTER_CUBIC)
        out.append((smooth - smooth.mean()) / smooth.std())
    for t in out:
        t.setflags(write=False)
    return out[0], out[1], out[2]


def _crop(tile: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    oy, ox = rng.random(2) * (size + 1)  # random() is ~7x cheaper than integers()
    return tile[int(oy) : int(oy) + size, int(ox) : int(ox) + size]


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur cut at 2.5 sigma; big sigmas run at half resolution (same look, ~2x faster)."""
    if sigma >= 2.0:
        h, w = x.shape[:2]
        small = cv2.resize(x, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        return cv2.resize(_blur(small, sigma / 2.0), (w, h), interpolation=cv2.INTER_LINEAR)
    k = 2 * math.ceil(2.5 * sigma) + 1
    return cv2.GaussianBlur(x, (k, k), sigma)


@lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalised coordinates in [-1, 1]: column ``v``, row ``u`` and the radius map."""
    t = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    v, u = t[:, None], t[None, :]
    rr = np.sqrt(u * u + v * v)
    for a in (u, v, rr):
        a.setflags(write=False)
    return v, u, rr


@lru_cache(maxsize=8)
def _dot_footprint(size: int) -> np.ndarray:
    """Pixel offsets ``(K, 2)`` (dy, dx) of one small dot, scaled with the image."""
    r = max(1.0, size / 110.0)
    k = math.ceil(r)
    dy, dx = np.mgrid[-k : k + 1, -k : k + 1]
    keep = dy * dy + dx * dx <= r * r
    return np.stack([dy[keep], dx[keep]], axis=1)


def _rgb(plane: np.ndarray, rgb: Sequence[float]) -> np.ndarray:
    """``plane[..., None] * rgb`` as a new float32 image, via cv2 (fast on 3 channels)."""
    m = np.zeros((3, 3), np.float32)
    np.fill_diagonal(m, rgb)
    plane = np.ascontiguousarray(plane, dtype=np.float32)
    return cv2.transform(cv2.cvtColor(plane, cv2.COLOR_GRAY2RGB), m)


def _solid(rgb: Sequence[float], size: int) -> np.ndarray:
    return _rgb(np.ones((size, size), np.float32), rgb)


def _blend(img: np.ndarray, top: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``top * alpha + img * (1 - alpha)`` with a single-channel ``alpha``."""
    return cv2.blendLinear(top, img, alpha, 1.0 - alpha)


def _colour(
    rng: np.random.Generator, lo: Sequence[float], hi: Sequence[float], jitter: float = 0.035
) -> np.ndarray:
    """A colour between ``lo`` and ``hi`` with a small per-channel cast."""
    t = rng.uniform()
    c = np.asarray(lo, np.float64) * (1.0 - t) + np.asarray(hi, np.float64) * t
    return c * (1.0 + rng.normal(0.0, jitter, 3))


def _skin_tone(rng: np.random.Generator) -> np.ndarray:
    # Biased towards light skin like most dermoscopy archives, with some darker tones.
    return _colour_t(rng.uniform() ** 1.6, (238, 204, 184), (176, 124, 94)) * (
        1.0 + rng.normal(0.0, 0.02, 3)
    )


def _colour_t(t: float, lo: Sequence[float], hi: Sequence[float]) -> np.ndarray:
    return np.asarray(lo, np.float64) * (1.0 - t) + np.asarray(hi, np.float64) * t


def _background(
    skin: np.ndarray, lrng: np.random.Generator, irng: np.random.Generator, size: int
) -> np.ndarray:
    """Skin with mottling and an illumination gradient (float32 RGB, 0-255)."""
    _, medium, coarse = _tiles(size)
    v, u = _grid(size)[:2]
    a = irng.uniform(0.0, 2.0 * math.pi)
    g = irng.uniform(0.0, 0.12)
    shade = (g * math.cos(a)) * u + (g * math.sin(a)) * v + 1.0
    shade += _crop(coarse, lrng, size) * 0.035
    shade += _crop(medium, lrng, size) * 0.015
    return _rgb(shade, skin)


def _outline(
    rng: np.random.Generator,
    *,
    amp: float,
    kmax: int,
    jitter: float,
    aspect: float,
    asym: float,
    n: int = 72,
) -> np.ndarray:
    """Closed lesion outline ``(n, 2)`` in local units: ellipse times a random radial profile."""
    theta, cos_t, sin_t = _angles(n)
    k = np.arange(2, kmax + 1)[:, None]
    a = amp * rng.uniform(0.3, 1.0, (k.size, 1)) / np.sqrt(k - 1)
    r = 1.0 + (a * np.cos(k * theta + rng.uniform(0.0, 2.0 * math.pi, (k.size, 1)))).sum(0)
    # A first harmonic bulges one side: asymmetry, not just a shift.
    r += asym * np.cos(theta - rng.uniform(0.0, 2.0 * math.pi))
    noise = rng.normal(0.0, jitter, n + 2)
    r += (noise[:-2] + noise[1:-1] + noise[2:]) / 3.0  # jagged but not spiky
    r = np.maximum(r, 0.35)
    e = math.sqrt(rng.uniform(1.0, aspect))
    out = np.empty((n, 2))
    out[:, 0] = r * cos_t * e
    out[:, 1] = r * sin_t / e
    return out


@lru_cache(maxsize=4)
def _angles(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    theta = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
    return theta, np.cos(theta), np.sin(theta)


def _fill_mask(pose: _Pose, outline: np.ndarray, size: int) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [pose.fixed(outline)], 255, cv2.LINE_8, _SHIFT)
    return mask


def _composite(
    img: np.ndarray, mask: np.ndarray, layer: np.ndarray, soft: float, opacity: float
) -> tuple[np.ndarray, np.ndarray]:
    """Blend ``layer`` into ``img`` through ``mask`` feathered by ``soft`` px; also return alpha."""
    alpha = mask.astype(np.float32)
    alpha *= opacity / 255.0
    if soft >= 0.3:
        alpha = _blur(alpha, soft)
    return _blend(img, layer, alpha), alpha


def _stamp(layer: np.ndarray, pts: np.ndarray, colour: Sequence[float], size: int) -> None:
    """Paint small dots at pixel positions ``pts`` (vectorised, no per-dot drawing calls)."""
    foot = _dot_footprint(size)
    xy = np.rint(pts).astype(np.intp)
    ys = np.clip(xy[:, 1, None] + foot[None, :, 0], 0, size - 1)
    xs = np.clip(xy[:, 0, None] + foot[None, :, 1], 0, size - 1)
    layer[ys, xs] = colour


def _disc_points(rng: np.random.Generator, n: int, r_max: float) -> np.ndarray:
    r = np.sqrt(rng.uniform(0.0, 1.0, n)) * r_max
    t = rng.uniform(0.0, 2.0 * math.pi, n)
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def _radius2(pose: _Pose, size: int) -> np.ndarray:
    """Squared distance from the lesion centre in local units (ignores the aspect ratio)."""
    t = np.arange(size, dtype=np.float32)
    dx = (t - np.float32(pose.centre[0])) / np.float32(pose.scale)
    dy = (t - np.float32(pose.centre[1])) / np.float32(pose.scale)
    return dy[:, None] ** 2 + dx[None, :] ** 2


# --------------------------------------------------------------------------- classes
# Each renderer takes the background and returns (image, 0/255 mask). Every lesion property comes
# from ``rng`` in a fixed order, so all photographs of a lesion show the same lesion; only
# ``pose`` (and what _finish adds) differs between them.


def _nevus(
    img: np.ndarray, pose: _Pose, rng: np.random.Generator, size: int
) -> tuple[np.ndarray, np.ndarray]:
    outline = _outline(rng, amp=0.05, kmax=4, jitter=0.0, aspect=1.4, asym=0.02)
    base = _colour(rng, (180, 126, 90), (100, 66, 46))
    centre_dark = rng.uniform(0.0, 0.25)
    coarse = _tiles(size)[2]
    mask = _fill_mask(pose, outline, size)
    # Benign, symmetric pigmentation: uniform with an optionally darker centre.
    shade = 1.0 - centre_dark * np.clip(1.0 - _radius2(pose, size), 0.0, 1.0)
    shade += _crop(coarse, rng, size) * 0.03
    img = _composite(img, mask, _rgb(shade, base), 0.06 * pose.scale, rng.uniform(0.85, 0.97))[0]
    return img, mask


def _melanoma(
    img: np.ndarray, pose: _Pose, rng: np.random.Generator, size: int
) -> tuple[np.ndarray, np.ndarray]:
    outline = _outline(rng, amp=0.22, kmax=8, jitter=0.05, aspect=1.7, asym=0.15)
    base = _colour(rng, (112, 72, 52), (70, 45, 36))
    palette = ((28, 20, 22), (98, 108, 132), (158, 108, 74), (150, 72, 70), (205, 188, 186))
    n_patch = int(rng.integers(3, 7))
    side = rng.uniform(0.0, 2.0 * math.pi)
    toward = np.array([math.cos(side), math.sin(side)])
    # Patches gather on one side: colour asymmetry is a key melanoma cue.
    centres = 0.35 * toward + rng.normal(0.0, 0.3, (n_patch, 2))
    axes = rng.uniform(0.15, 0.45, (n_patch, 2))
    tilt = rng.uniform(0.0, 180.0, n_patch)
    kinds = np.searchsorted([0.35, 0.6, 0.8, 0.9], rng.random(n_patch))  # black is likeliest
    globules = _disc_points(rng, int(rng.integers(4, 16)), 0.25) + 0.75 * toward
    medium, coarse = _tiles(size)[1:]
    mask = _fill_mask(pose, outline, size)
    layer = _solid(base, size)
    deg = math.degrees(pose.angle)
    for c, ax, t, k in zip(pose.fixed(centres), axes, tilt, kinds, strict=True):
        a = (pose.length(ax[0]), pose.length(ax[1]))
        cv2.ellipse(
            layer, tuple(c.tolist()), a, t + deg, 0, 360, palette[k], -1, cv2.LINE_AA, _SHIFT
        )
    layer = _blur(layer, 0.09 * pose.scale)
    _stamp(layer, pose.px(globules), palette[0], size)
    shade = 1.0 + _crop(medium, rng, size) * 0.12
    shade += _crop(coarse, rng, size) * 0.08
    layer = cv2.multiply(layer, cv2.cvtColor(shade, cv2.COLOR_GRAY2RGB))
    return _composite(img, mask, layer, 0.035 * pose.scale, rng.uniform(0.9, 1.0))[0], mask


def _bcc(
    img: np.ndarray, pose: _Pose, rng: np.random.Generator, size: int
) -> tuple[np.ndarray, np.ndarray]:
    outline = _outline(rng, amp=0.12, kmax=6, jitter=0.02, aspect=1.5, asym=0.05)
    base = _colour(rng, (230, 152, 158), (204, 116, 128))
    shiny = _disc_points(rng, int(rng.integers(1, 4)), 0.5)
    shiny_r = rng.uniform(0.12, 0.3, shiny.shape[0])
    nests = _disc_points(rng, int(rng.integers(1, 4)), 0.6) if rng.uniform() < 0.3 else None
    vessels = _vessel_paths(rng)
    vessel_colour = _colour(rng, (185, 30, 42), (150, 22, 48), jitter=0.04)
    opacity = rng.uniform(0.65, 0.9)
    medium = _tiles(size)[1]
    mask = _fill_mask(pose, outline, size)
    layer = _rgb(1.0 + _crop(medium, rng, size) * 0.05, base)
    for c, r in zip(pose.fixed(shiny), shiny_r, strict=True):
        cv2.circle(
            layer, tuple(c.tolist()), pose.length(r), (250, 238, 238), -1, cv2.LINE_AA, _SHIFT
        )
    if nests is not None:
        for c in pose.fixed(nests):
            cv2.circle(
                layer, tuple(c.tolist()), pose.length(0.1), (110, 112, 135), -1, cv2.LINE_AA, _SHIFT
            )
    layer = _blur(layer, 0.08 * pose.scale)
    img, alpha = _composite(img, mask, layer, 0.05 * pose.scale, opacity)
    # Vessels lie on the surface: drawn after the translucent blend so they stay crisp and red.
    lines = np.zeros((size, size), np.float32)
    thick = max(1, round(size / 128))
    paths = [*pose.fixed(vessels[0]), *pose.fixed(vessels[1])]
    cv2.polylines(lines, paths, False, 1.0, thick, cv2.LINE_AA, _SHIFT)
    lines *= alpha
    lines *= 0.9 / opacity
    return _blend(img, _solid(vessel_colour, size), lines), mask


def _vessel_paths(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Arborising vessels: 2-4 trunks curving inwards from the rim, each with side branches.

    Returns trunks ``(T, 7, 2)`` and branches ``(B, 4, 2)`` in local units.
    """
    n = int(rng.integers(2, 5))
    a = rng.uniform(0.0, 2.0 * math.pi, n)
    start = 0.8 * np.stack([np.cos(a), np.sin(a)], axis=1)
    trunks, heading = _walks(rng, start, a + math.pi, 6, 0.14)
    # 1-3 branches per trunk on average, leaving at a random joint, turning off to either side.
    owner = rng.integers(0, n, int(rng.integers(n, 3 * n + 1)))
    joint = rng.integers(1, 6, owner.size)
    turn = np.where(rng.random(owner.size) < 0.5, -1.0, 1.0) * rng.uniform(0.5, 1.2, owner.size)
    branches, _ = _walks(rng, trunks[owner, joint], heading[owner, joint] + turn, 3, 0.09)
    return trunks, branches


def _walks(
    rng: np.random.Generator, start: np.ndarray, heading: np.ndarray, steps: int, step: float
) -> tuple[np.ndarray, np.ndarray]:
    """Smoothly turning random walks ``(N, steps + 1, 2)`` from ``start`` ``(N, 2)``, vectorised.

    Also returns each segment's heading ``(N, steps)``.
    """
    h = heading[:, None] + np.cumsum(rng.normal(0.0, 0.45, (heading.size, steps)), axis=1)
    pts = np.empty((heading.size, steps + 1, 2))
    pts[:, 0] = start
    pts[:, 1:, 0] = start[:, :1] + np.cumsum(step * np.cos(h), axis=1)
    pts[:, 1:, 1] = start[:, 1:] + np.cumsum(step * np.sin(h), axis=1)
    return pts, h


def _keratosis(
    img: np.ndarray, pose: _Pose, rng: np.random.Generator, size: int
) -> tuple[np.ndarray, np.ndarray]:
    outline = _outline(rng, amp=0.09, kmax=5, jitter=0.025, aspect=1.6, asym=0.04)
    base = _colour(rng, (186, 142, 108), (122, 88, 66))
    white = _disc_points(rng, int(rng.integers(8, 30)), 0.85)
    dark = _disc_points(rng, int(rng.integers(8, 30)), 0.85)
    medium, coarse = _tiles(size)[1:]
    mask = _fill_mask(pose, outline, size)
    # Cerebriform ridges: thin dark bands along the zero crossings of a smooth noise field.
    shade = 1.0 - 0.2 * (np.abs(_crop(medium, rng, size)) < 0.22).astype(np.float32)
    shade += _crop(coarse, rng, size) * 0.1
    layer = _rgb(shade, base)
    _stamp(layer, pose.px(white), (236, 226, 196), size)
    _stamp(layer, pose.px(dark), (72, 52, 38), size)
    return _composite(img, mask, layer, 0.012 * pose.scale, rng.uniform(0.92, 1.0))[0], mask


def _vascular(
    img: np.ndarray, pose: _Pose, rng: np.random.Generator, size: int
) -> tuple[np.ndarray, np.ndarray]:
    n = int(rng.integers(4, 10))
    ang = rng.uniform(0.0, 2.0 * math.pi, n)
    dist = rng.uniform(0.3, 0.8, n)
    dist[0] = 0.0
    centres = np.stack([dist * np.cos(ang), dist * np.sin(ang)], axis=1)
    axes = rng.uniform(0.36, 0.62, (n, 1)) * rng.uniform(0.75, 1.0, (n, 2))
    tilt = rng.uniform(0.0, 180.0, n)
    t = rng.uniform(0.0, 1.0, (n, 1))
    colours = _colour_t(t, (178, 34, 48), (100, 34, 86)) * rng.uniform(0.55, 1.05, (n, 1))
    septa = _colour(rng, (222, 186, 186), (196, 156, 160), jitter=0.03).tolist()
    medium = _tiles(size)[1]
    mask = np.zeros((size, size), np.uint8)
    layer = _solid(colours[0], size)
    thick = max(1, round(size / 128))
    deg = math.degrees(pose.angle)
    for c, ax, tl, col in zip(pose.fixed(centres), axes, tilt, colours, strict=True):
        ctr, a = tuple(c.tolist()), (pose.length(ax[0]), pose.length(ax[1]))
        cv2.ellipse(mask, ctr, a, tl + deg, 0, 360, 255, -1, cv2.LINE_8, _SHIFT)
        cv2.ellipse(layer, ctr, a, tl + deg, 0, 360, col.tolist(), -1, cv2.LINE_AA, _SHIFT)
        # Pale septa between lobules: the lacunar look of angiomas.
        cv2.ellipse(layer, ctr, a, tl + deg, 0, 360, septa, thick, cv2.LINE_AA, _SHIFT)
    layer = _blur(layer, max(0.5, 0.02 * pose.scale))
    shade = 1.0 + _crop(medium, rng, size) * 0.08
    layer = cv2.multiply(layer, cv2.cvtColor(shade, cv2.COLOR_GRAY2RGB))
    return _composite(img, mask, layer, 0.02 * pose.scale, rng.uniform(0.9, 1.0))[0], mask


_RENDERERS: tuple[_Renderer, ...] = (_nevus, _melanoma, _bcc, _keratosis, _vascular)


# --------------------------------------------------------------------------- photograph


def _finish(img: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """Per-photograph effects: hair, exposure, colour cast, vignette, blur, grain."""
    if rng.uniform() < 0.35:
        _hair(img, rng, size)
    gain = rng.uniform(0.88, 1.12) * (1.0 + rng.normal(0.0, 0.025, 3))
    contrast = rng.uniform(0.85, 1.15)
    mean = np.asarray(cv2.mean(img)[:3])
    # Per-channel gain and contrast around the mean in one affine cv2.transform.
    m = np.zeros((3, 4), np.float32)
    np.fill_diagonal(m, gain * contrast)
    m[:, 3] = mean * gain * (1.0 - contrast)
    img = cv2.transform(img, m)
    if rng.uniform() < 0.3:
        # Dermatoscope field of view: dark rounded corners.
        edge = rng.uniform(1.05, 1.35)
        ring = np.clip((edge - _grid(size)[2]) / 0.12, 0.08, 1.0)
        img = cv2.multiply(img, cv2.cvtColor(ring, cv2.COLOR_GRAY2RGB))
    sigma = rng.uniform(0.3, 1.0) * size / 128.0
    if sigma >= 0.35:
        img = _blur(img, sigma)
    grain = _crop(_tiles(size)[0], rng, size) * rng.uniform(1.5, 4.5)
    return cv2.add(img, cv2.cvtColor(grain, cv2.COLOR_GRAY2RGB))


def _hair(img: np.ndarray, rng: np.random.Generator, size: int) -> None:
    """Draw 1-5 dark, slightly curved hairs crossing the image, in place."""
    n = int(rng.integers(1, 6))
    start = rng.uniform(-0.1, 1.1, (n, 2)) * size
    heading = rng.uniform(0.0, 2.0 * math.pi, n)
    length = rng.uniform(0.4, 1.2, n) * size
    bend = rng.normal(0.0, 0.25, n)
    colour = (np.array([42.0, 30.0, 24.0]) * rng.uniform(0.6, 1.3)).tolist()
    t = np.linspace(0.0, 1.0, 10)[None, :]
    h = heading[:, None] + bend[:, None] * t  # constant curvature
    step = length[:, None] / 9.0
    xs = start[:, :1] + np.cumsum(step * np.cos(h), axis=1)
    ys = start[:, 1:] + np.cumsum(step * np.sin(h), axis=1)
    pts = np.rint(np.stack([xs, ys], axis=2) * _ONE).astype(np.int32)
    thick = max(1, round(size / 128))
    cv2.polylines(img, list(pts), False, colour, thick, cv2.LINE_AA, _SHIFT)

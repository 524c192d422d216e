"""Reading images and masks from disk into numpy arrays."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from medcls.errors import BadImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def read_rgb(path: str | bytes, grayscale: bool = False) -> np.ndarray:
    """Decode ``path`` (a file, or an encoded image's bytes: PNG, JPEG, ...) to an
    ``(H, W, 3)`` uint8 RGB array.

    Any colour mode (L, LA, P, RGBA, I;16, CMYK) is accepted. With ``grayscale`` the image is first
    reduced to luminance and then repeated on three channels, so CT slices stored in mixed modes
    all look alike to an ImageNet backbone.
    """
    source = io.BytesIO(path) if isinstance(path, bytes) else path
    name = f"<{len(path)} bytes>" if isinstance(path, bytes) else path
    try:
        with Image.open(source) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I", "F"):
                arr = np.asarray(im, dtype=np.float32)
                lo, hi = float(arr.min()), float(arr.max())
                arr = ((arr - lo) / max(hi - lo, 1e-6) * 255).astype(np.uint8)
                im = Image.fromarray(arr)
            im = im.convert("L").convert("RGB") if grayscale else im.convert("RGB")
            return np.asarray(im, dtype=np.uint8)
    except FileNotFoundError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise BadImageError(f"{name}: cannot decode image ({type(e).__name__}: {e})") from e


def read_mask(path: str) -> np.ndarray:
    """Decode a segmentation mask to an ``(H, W)`` uint8 array with values 0 or 255."""
    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("L"), dtype=np.uint8)
    except FileNotFoundError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise BadImageError(f"{path}: cannot decode mask ({type(e).__name__}: {e})") from e
    return np.where(arr > 127, 255, 0).astype(np.uint8)

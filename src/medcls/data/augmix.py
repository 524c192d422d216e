"""AugMix (Hendrycks et al., ICLR 2020) as an albumentations step, on the cached uint8 arrays.

The mixing itself is timm's ``augment_and_mix_transform`` (PIL operations: autocontrast,
equalize, posterize, rotate, solarize, shear, translate), wrapped so that it sits in a
``conf/augmentation`` list like any albumentations op and follows albumentations' seed.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # never phone home on import

import albumentations as A  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from timm.data.auto_augment import augment_and_mix_transform  # noqa: E402

from medcls.errors import DataError


class AugMix(A.ImageOnlyTransform):
    """Mix ``width`` chains of 1–3 random PIL ops with the original image.

    Args:
        severity: strength of every op, 0–10 (timm's magnitude; the paper's "0–10 levels"),
            each op drawing its own strength in 0..severity. 0: the ops without a strength
            (autocontrast, equalize; posterize to 4 bits) only, no rotation, shear or shift.
        width: number of augmentation chains mixed (Dirichlet(alpha) weights).
        depth: ops per chain; ``-1`` draws 1–3 per chain.
        alpha: Dirichlet / Beta parameter of the mixing weights.
        blended: timm's cheaper blended variant (approximate).
        translate_fraction: largest shift as a fraction of the image side (timm: 0.45).
        p: probability of applying AugMix to an image.

    Shapes: ``(H, W, 3)`` uint8 → ``(H, W, 3)`` uint8 (geometry unchanged; masks untouched,
    as AugMix's shears and translations are part of a blend, not a geometric warp of the label).
    """

    def __init__(
        self,
        severity: int = 3,
        width: int = 3,
        depth: int = -1,
        alpha: float = 1.0,
        blended: bool = False,
        translate_fraction: float = 0.45,
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        if not 0 <= int(severity) <= 10:
            raise ValueError(f"AugMix severity={severity}: must be an integer in 0..10")
        if int(width) < 1 or (int(depth) < 1 and int(depth) != -1):
            raise ValueError(f"AugMix width={width}, depth={depth}: width >= 1, depth >= 1 or -1")
        if alpha <= 0:
            raise ValueError(f"AugMix alpha={alpha}: must be > 0")
        self.severity, self.width, self.depth = int(severity), int(width), int(depth)
        self.alpha, self.blended, self.translate_fraction = (
            float(alpha),
            bool(blended),
            float(translate_fraction),
        )
        self._transform: Any = None  # timm's, built on first use

    def _augmix(self):
        if self._transform is None:
            config = f"augmix-m{self.severity}-w{self.width}-a{self.alpha}-b{int(self.blended)}"
            if self.depth > 0:  # (timm's config string cannot spell -1, its default)
                config += f"-d{self.depth}"
            # AugMix translates by a fraction of the image side (timm's TranslateXRel/YRel read
            # translate_pct; translate_const is for the absolute ops AugMix does not use)
            hparams = {"translate_pct": self.translate_fraction}
            self._transform = augment_and_mix_transform(config, hparams)
        return self._transform

    def get_params(self) -> dict[str, int]:
        # drawn from albumentations' own (seeded) generator, so AugMix repeats run to run
        return {"augmix_seed": self.py_random.randrange(2**32)}

    def apply(self, img: np.ndarray, augmix_seed: int = 0, **params: Any) -> np.ndarray:
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise DataError(
                f"AugMix needs (H, W, 3) uint8 images, got {img.dtype} {img.shape}; put it "
                "before any step that changes the type (augmentation runs on the uint8 cache)."
            )
        with seeded_global_generators(augmix_seed):  # timm draws from python's and numpy's
            out = self._augmix()(Image.fromarray(img))
        return np.asarray(out, dtype=np.uint8)


@contextmanager
def seeded_global_generators(seed: int) -> Iterator[None]:
    """Seed python's and numpy's global generators (which timm's PIL policies draw from) for
    one image, and give them back their state after it: an albumentations seed then decides."""
    py_state, np_state = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return (
            "severity",
            "width",
            "depth",
            "alpha",
            "blended",
            "translate_fraction",
        )

"""Policy augmentations from timm as albumentations steps: ``RandAugment`` and
``TrivialAugment`` (``conf/augmentation/randaugment.yaml``, ``trivialaugment.yaml``).

Both draw random PIL operations per image from timm's RandAugment (Cubuk et al. 2020);
TrivialAugment (Müller & Hutter 2021) is its one-op form with the magnitude drawn uniformly
(timm's ``rand-n1-mstd101``). Like :class:`~medcls.data.augmix.AugMix`, the draws are seeded from
albumentations' generator, so a seeded run repeats.
"""

from __future__ import annotations

from typing import Any

import albumentations as A
import numpy as np
from PIL import Image
from timm.data.auto_augment import rand_augment_transform

from medcls.data.augmix import seeded_global_generators
from medcls.errors import DataError

# timm's "increasing" op set (a higher magnitude is always a stronger op), with the original
# posterize (4-8 bits kept): the increasing one asks PIL for 0 bits at full magnitude, which
# current Pillow refuses. Invert is left out: a negative is no dermoscopy or fundus photo.
OPS = [
    "AutoContrast", "Equalize", "Rotate", "PosterizeOriginal", "SolarizeIncreasing",
    "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing",
    "SharpnessIncreasing", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel",
]  # fmt: skip


class RandAugment(A.ImageOnlyTransform):
    """timm's RandAugment: ``num_ops`` random ops of ``magnitude`` (0–10, jittered by
    ``magnitude_std``; > 100: uniform in 0..magnitude) per image. ``config``: a timm config
    string instead (e.g. ``rand-m9-mstd0.5-inc1``)."""

    def __init__(
        self,
        num_ops: int = 2,
        magnitude: float = 9,
        magnitude_std: float = 0.5,
        config: str | None = None,
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        self.num_ops, self.magnitude, self.magnitude_std = int(num_ops), magnitude, magnitude_std
        self.config = config or f"rand-n{self.num_ops}-m{magnitude}-mstd{magnitude_std}"
        if not self.config.startswith("rand"):
            raise ValueError(f"RandAugment config={self.config!r}: a timm 'rand-…' string")
        # relative translations; grey fill where rotations and shears uncover the corners
        hparams = {"translate_pct": 0.45, "img_mean": (128, 128, 128)}
        self._transform = rand_augment_transform(self.config, hparams, transforms=OPS)

    def get_params(self) -> dict[str, int]:
        return {"policy_seed": self.py_random.randrange(2**32)}

    def apply(self, img: np.ndarray, policy_seed: int = 0, **params: Any) -> np.ndarray:
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise DataError(
                f"{type(self).__name__} needs (H, W, 3) uint8 images, got {img.dtype} "
                f"{img.shape}; put it before any step that changes the type."
            )
        with seeded_global_generators(policy_seed):  # timm: python's and numpy's generators
            out = self._transform(Image.fromarray(img))
        return np.asarray(out, dtype=np.uint8)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("num_ops", "magnitude", "magnitude_std", "config")


class TrivialAugment(RandAugment):
    """One random op per image at a magnitude drawn uniformly from 0..``max_magnitude``."""

    def __init__(self, max_magnitude: float = 10, p: float = 1.0) -> None:
        super().__init__(config=f"rand-n1-m{max_magnitude}-mstd101-p1.0", p=p)
        self.max_magnitude = max_magnitude

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("max_magnitude",)

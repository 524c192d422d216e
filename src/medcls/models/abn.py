"""Attention Branch Network (Fukui et al., CVPR 2019) over a timm ResNet / ResNeXt.

The ResNet is cut after ``layer3``. An *attention branch* (a fresh, stride-1 copy of ``layer4``,
then 1×1 convolutions to one map per class) yields class logits of its own and a one-channel
attention map ``M(x)`` in (0, 1); the *perception branch* (the network's own ``layer4``, pooled,
then a head) classifies the features re-weighted as ``f·M(x) + f``. The residual ``+ f`` keeps
every feature alive where the map is 0, so a poor early map cannot starve the classifier.

Nothing here knows about training: losses (mask supervision, scheduled weights) live in
``medcls.losses.abn``.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from timm.models.resnet import ResNet
from torch import nn

from medcls.models.heads import ClassifierHead
from medcls.models.timm_backbone import create_timm_backbone
from medcls.models.weights_sources import resolve_weights

log = logging.getLogger(__name__)


class ABNOutput(NamedTuple):
    """What an ABN forward returns.

    Attributes:
        logits: perception-branch logits ``(B, K)``: the prediction.
        attention_logits: attention-branch logits ``(B, K)``.
        attention: attention map ``M(x)`` ``(B, 1, h, w)`` in (0, 1), at the resolution of
            ``layer3`` (input size / 16 for standard ResNets).
    """

    logits: torch.Tensor
    attention_logits: torch.Tensor
    attention: torch.Tensor


class AttentionBranch(nn.Module):
    """``layer4``-like block (stride 1) → BN → 1×1 conv to K maps → BN/ReLU, then (a) 1×1 conv
    K→K + global average pool → logits and (b) 3×3 conv K→1 → BN → sigmoid → attention map.

    Shapes: features ``(B, C3, h, w)`` → logits ``(B, K)``, map ``(B, 1, h, w)``.
    """

    def __init__(self, block: nn.Module, channels: int, num_classes: int) -> None:
        super().__init__()
        k = num_classes
        self.block = block
        self.bn = nn.BatchNorm2d(channels)
        self.to_classes = nn.Sequential(
            nn.Conv2d(channels, k, 1, bias=False), nn.BatchNorm2d(k), nn.ReLU(inplace=True)
        )
        self.class_conv = nn.Conv2d(k, k, 1, bias=False)
        self.map_conv = nn.Sequential(nn.Conv2d(k, 1, 3, padding=1, bias=False), nn.BatchNorm2d(1))

    def forward(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.to_classes(self.bn(self.block(f)))
        logits = self.class_conv(a).mean(dim=(2, 3))  # GAP: any input size
        return logits, torch.sigmoid(self.map_conv(a))


class AttentionBranchNetwork(nn.Module):
    """ABN: shared trunk, attention branch, perception branch.

    Args:
        backbone: stem + ``layer1..3`` (the shared trunk): ``(B, 3, H, W)`` → ``(B, C3, h, w)``.
        attention: the :class:`AttentionBranch`.
        perception: the ResNet's ``layer4``: ``(B, C3, h, w)`` → ``(B, C4, h/2, w/2)``.
        head: pooled ``(B, C4)`` → logits ``(B, K)``.
        pretrained_cfg: the timm config (mean/std for ``data.normalize=backbone``).

    Shapes: ``(B, 3, H, W)`` → :class:`ABNOutput`. The attribute is called ``backbone`` so
    ``model.freeze_backbone_epochs`` freezes the shared trunk, as for every other model.
    """

    def __init__(
        self,
        backbone: nn.Module,
        attention: AttentionBranch,
        perception: nn.Module,
        head: nn.Module,
        pretrained_cfg: dict | None = None,
    ) -> None:
        super().__init__()
        self.backbone, self.attention, self.perception, self.head = (
            backbone,
            attention,
            perception,
            head,
        )
        self.pretrained_cfg = dict(pretrained_cfg or {})
        self.pretrained_keys: list[str] = []  # state-dict keys that came from pretrained weights

    def perceive(self, f: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        """Perception branch: ``(B, C3, h, w)`` features and ``(B, 1, h, w)`` map → logits."""
        x = self.perception(f * attention + f)
        return self.head(x.mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> ABNOutput:
        f = self.backbone(x)
        attention_logits, attention = self.attention(f)
        return ABNOutput(self.perceive(f, attention), attention_logits, attention)


def _unstride(module: nn.Module) -> None:
    """Make a downsampling residual stage keep its input size: stride-2 convolutions become
    stride 1, average-pool shortcuts (ResNet-D ``avg_down``) become identities."""
    for name, child in list(module.named_children()):
        if isinstance(child, nn.AvgPool2d) and child.stride not in (1, (1, 1)):
            setattr(module, name, nn.Identity())
            continue
        if isinstance(child, nn.Conv2d) and child.stride != (1, 1):
            child.stride = (1, 1)
        _unstride(child)


def _reset(module: nn.Module) -> None:
    """Fresh weights (the attention branch is new: it gets no pretrained ``layer4`` weights)."""
    for m in module.modules():
        if m is not module and hasattr(m, "reset_parameters"):
            m.reset_parameters()


def create_abn(
    name: str,
    num_classes: int,
    pretrained: bool = False,
    pretrained_file: str | None = None,
    dropout: float = 0.0,
    hidden: Sequence[int] = (),
    timm_kwargs: dict | None = None,
    pool: str = "gap",
    library: str = "auto",
    weights: str | None = None,
    **_: Any,
) -> AttentionBranchNetwork:
    """An ABN over the timm ResNet/ResNeXt ``name`` (``resnet18``, ``resnet50``,
    ``resnext50_32x4d``, ``resnet10t`` …), from a ``conf/model`` config.

    Pretrained weights (``weights``: a file, a weights package, a Hugging Face folder or ``hub``;
    ``pretrained``/``pretrained_file`` are its old names) go into the trunk and the perception
    ``layer4``, loaded and checked by the timm backbone factory; their keys are listed in
    ``pretrained_keys``. The attention branch and the head start fresh. Both branches pool globally (any input size), so
    ``model.pool`` must stay ``gap``; other ``conf/model`` keys (``image_size`` …) do not apply.
    """
    if pool != "gap":
        raise ValueError(f"task=abn pools both branches globally: model.pool={pool!r} must be gap")
    if library not in ("auto", "timm"):
        raise ValueError(f"task=abn builds on timm ResNets: model.library={library!r} must be timm")
    resolved = resolve_weights(weights, pretrained, pretrained_file)
    net = create_timm_backbone(name, resolved, "gap", **dict(timm_kwargs or {}))
    if not isinstance(net, ResNet):
        raise ValueError(
            f"task=abn builds on a ResNet/ResNeXt (resnet18, resnet50, resnext50_32x4d, …); "
            f"model.name={name!r} is a {type(net).__name__}."
        )
    shared = {k for k in net.state_dict()}
    trunk = nn.Sequential(
        net.conv1, net.bn1, net.act1, net.maxpool, net.layer1, net.layer2, net.layer3
    )
    block = copy.deepcopy(net.layer4)
    _unstride(block)
    _reset(block)
    channels4 = net.num_features
    model = AttentionBranchNetwork(
        backbone=trunk,
        attention=AttentionBranch(block, channels4, num_classes),
        perception=net.layer4,
        head=ClassifierHead(channels4, num_classes, hidden=list(hidden or ()), dropout=dropout),
        pretrained_cfg=getattr(net, "pretrained_cfg", None),
    )
    _check_geometry(model)
    if resolved is not None:
        model.pretrained_keys = _shared_keys(model, net, shared)
        log.info(
            "ABN %s: %d pretrained tensors in the trunk and perception layer4; the attention "
            "branch and the head start fresh",
            name,
            len(model.pretrained_keys),
        )
    return model


def _check_geometry(model: AttentionBranchNetwork) -> None:
    """The attention block must keep layer3's size, or ``f·M + f`` cannot be formed."""
    was = model.training
    model.eval()
    with torch.no_grad():
        f = model.backbone(torch.zeros(1, 3, 64, 64))
        out = model.attention.block(f)
    model.train(was)
    if out.shape[-2:] != f.shape[-2:]:
        raise ValueError(
            "task=abn: this ResNet's layer4 still downsamples after its strides were set to 1 "
            f"({tuple(f.shape[-2:])} → {tuple(out.shape[-2:])}); use a plain ResNet/ResNeXt."
        )


def _shared_keys(model: AttentionBranchNetwork, net: nn.Module, source: set[str]) -> list[str]:
    """ABN state-dict keys holding the ResNet's (pretrained) tensors; every ResNet tensor must
    land in exactly one such key (the modules are shared, so equal storage proves it)."""
    ptr = {v.data_ptr(): k for k, v in net.state_dict().items() if v.numel()}
    keys = [k for k, v in model.state_dict().items() if v.numel() and v.data_ptr() in ptr]
    found = {ptr[model.state_dict()[k].data_ptr()] for k in keys}
    lost = sorted(k for k in source if k not in found and net.state_dict()[k].numel())
    if lost:
        raise ValueError(f"ABN lost pretrained tensors {lost[:5]}: this is a medcls bug.")
    return keys

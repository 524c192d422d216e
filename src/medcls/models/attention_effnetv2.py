"""Attention EfficientNetV2 (Zhao & Yoshino): a Non-local block next to SE in every MBConv.

In timm's EfficientNet(V2) an MBConv is an ``InvertedResidual``; its ``se`` (squeeze-excitation,
channel attention) acts on the expanded ``(B, C_mid, H, W)`` map before the 1×1 projection.
The surgery replaces that ``se`` by ``SE → Non-local`` so the block gains position
(self-)attention on the same map. Fused-MBConv stages (``EdgeResidual``, no SE) are left alone.

The surgery runs on a backbone whose weights are already loaded; the Non-local blocks start as
the identity, so the modified network computes exactly what the pretrained one did, and
:func:`add_nonlocal` checks that.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from timm.models._efficientnet_blocks import InvertedResidual
from torch import nn

from medcls.models.non_local import NonLocalBlock


def _stage_indices(model: nn.Module, stages: str | Sequence[int]) -> list[int]:
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.Sequential):
        raise ValueError(
            f"{type(model).__name__} has no EfficientNet stages (`blocks`): the Non-local "
            "surgery needs a timm EfficientNet/EfficientNetV2 (tf_efficientnetv2_s, "
            "efficientnetv2_rw_s, tf_efficientnetv2_m, …)."
        )
    if isinstance(stages, str):
        if stages != "all":
            raise ValueError(f"model.nonlocal_stages={stages!r}: use all or a list like [4, 5]")
        return [i for i in range(len(blocks)) if _se_blocks(blocks[i])]
    chosen = sorted({int(s) for s in stages})
    for i in chosen:
        if not 0 <= i < len(blocks):
            raise ValueError(
                f"model.nonlocal_stages: stage {i} does not exist (0..{len(blocks) - 1})"
            )
        if not _se_blocks(blocks[i]):
            raise ValueError(
                f"model.nonlocal_stages: stage {i} has no MBConv block with SE (Fused-MBConv "
                "stages have none); choose among "
                f"{[j for j in range(len(blocks)) if _se_blocks(blocks[j])]}"
            )
    return chosen


def _se_blocks(stage: nn.Module) -> list[InvertedResidual]:
    return [
        b
        for b in stage.modules()
        if isinstance(b, InvertedResidual) and not isinstance(b.se, nn.Identity)
    ]


def add_nonlocal(
    model: nn.Module,
    stages: str | Sequence[int] = "all",
    reduction: int = 2,
    subsample: bool = True,
    check: bool = True,
) -> int:
    """Put a :class:`NonLocalBlock` after SE in each SE-bearing MBConv of ``stages``; in place.

    Args:
        model: a timm EfficientNet(V2) (with or without classifier), weights already loaded.
        stages: indices into ``model.blocks`` (e.g. ``[4, 5]``) or ``"all"``.
        reduction / subsample: see :class:`NonLocalBlock`.
        check: run a 64 px input through the network before and after and require the same
            output (the new blocks must start as the identity).

    Returns: the number of blocks modified.
    """
    indices = _stage_indices(model, stages)
    probe = before = None
    if check:
        probe = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
        before = _eval_forward(model, probe)
    count = 0
    for i in indices:
        for block in _se_blocks(model.blocks[i]):
            width = block.conv_pwl.in_channels  # the expanded width SE works on
            block.se = nn.Sequential(
                OrderedDict(se=block.se, non_local=NonLocalBlock(width, reduction, subsample))
            )
            count += 1
    if check and not torch.allclose(_eval_forward(model, probe), before, rtol=0, atol=1e-6):
        raise RuntimeError("Non-local surgery changed the network's output at initialisation")
    return count


@torch.no_grad()
def _eval_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    was_training = model.training
    model.eval()
    try:
        return model(x)
    finally:
        model.train(was_training)

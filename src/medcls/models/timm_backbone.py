"""timm networks as backbones, with a checked weight load.

timm loads pretrained weights non-strictly whenever the requested head differs from the
checkpoint's (``num_classes=0`` here), so a wrong or partial checkpoint would pass in silence.
Hub weights are therefore loaded into the network *with* its original classifier (a strict load)
before the classifier is removed, and a local file's keys are compared with the network's.
"""

from __future__ import annotations

import os
from typing import Any

import timm
from torch import nn

from medcls.models.weights import check_keys, read_weights


def _classifier_prefixes(model: nn.Module) -> tuple[str, ...]:
    names = model.pretrained_cfg.get("classifier") or ()
    return tuple(f"{n}." for n in ([names] if isinstance(names, str) else names))


def input_size_kwargs(name: str, image_size: int) -> dict[str, int]:
    """``{"img_size": image_size}`` for timm networks built for one input size (ViT, DeiT, Swin
    …: the patch grid and position embeddings are sized when the network is built; pretrained
    position embeddings are resampled to it), ``{}`` for every other network."""
    cfg = timm.models.get_pretrained_cfg(name)  # None for names timm does not know
    return {"img_size": int(image_size)} if cfg is not None and cfg.fixed_input_size else {}


def create_timm_backbone(
    name: str,
    pretrained: bool = False,
    pretrained_file: str | None = None,
    pool: str = "gap",
    **timm_kwargs: Any,
) -> nn.Module:
    """A timm network without its classifier: ``(B, 3, H, W)`` → ``(B, C)`` with ``pool="gap"``
    (timm's own global pooling), or the unpooled feature map with ``pool="flatten"``."""
    try:
        return _create(
            name, pretrained, pretrained_file, "avg" if pool == "gap" else "", timm_kwargs
        )
    except RuntimeError as e:
        if "Unknown model" in str(e):
            raise ValueError(
                f"model.name={name!r} is not a timm model; list them with "
                "python -c \"import timm; print(timm.list_models('*resnet*'))\""
            ) from e
        raise


def _create(
    name: str,
    pretrained: bool,
    pretrained_file: str | None,
    global_pool: str,
    timm_kwargs: dict[str, Any],
) -> nn.Module:
    if pretrained_file:
        weights = read_weights(pretrained_file)
        model = timm.create_model(
            name,
            pretrained=True,
            pretrained_cfg_overlay={"file": os.path.abspath(pretrained_file)},
            num_classes=0,
            global_pool=global_pool,
            **timm_kwargs,
        )
        loaded = model.state_dict()
        check_keys(
            [k for k in loaded if k not in weights],
            [k for k in weights if k not in loaded],
            f"model.pretrained_file={pretrained_file}",
            may_skip=_classifier_prefixes(model),
        )
        return model
    if pretrained:  # default num_classes = the checkpoint's: timm loads strictly
        model = timm.create_model(name, pretrained=True, global_pool=global_pool, **timm_kwargs)
        model.reset_classifier(0)
        return model
    return timm.create_model(
        name, pretrained=False, num_classes=0, global_pool=global_pool, **timm_kwargs
    )

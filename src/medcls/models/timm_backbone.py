"""timm networks as backbones, with a checked weight load.

timm loads pretrained weights non-strictly whenever the requested head differs from the
checkpoint's (``num_classes=0`` here), so a wrong or partial checkpoint would pass in silence.
Weights are therefore loaded into the network *with* its classifier (when they have one; a strict
load: every tensor used, every parameter filled) before the classifier is removed. Where they come
from (a file, a weights package, a Hugging Face folder, the hub) is
:mod:`medcls.models.weights_sources`'s business.
"""

from __future__ import annotations

import sys
from typing import Any

import timm
import torch
from torch import nn

from medcls.models.weights import check_keys, read_weights
from medcls.models.weights_sources import (
    Weights,
    check_architecture,
    hub_unreachable,
    map_by_position,
    record_provenance,
    tensors_sha256,
)


def input_size_kwargs(name: str, image_size: int) -> dict[str, int]:
    """``{"img_size": image_size}`` for timm networks built for one input size (ViT, DeiT, Swin
    …: the patch grid and position embeddings are sized when the network is built; pretrained
    position embeddings are resampled to it), ``{}`` for every other network."""
    cfg = timm.models.get_pretrained_cfg(name)  # None for names timm does not know
    return {"img_size": int(image_size)} if cfg is not None and cfg.fixed_input_size else {}


def create_timm_backbone(
    name: str, weights: Weights | None = None, pool: str = "gap", **timm_kwargs: Any
) -> nn.Module:
    """A timm network without its classifier: ``(B, 3, H, W)`` → ``(B, C)`` with ``pool="gap"``
    (timm's own global pooling), or the unpooled feature map with ``pool="flatten"``.
    ``weights``: resolved by :func:`medcls.models.weights_sources.resolve_weights` (``None``:
    random initialisation)."""
    global_pool = "avg" if pool == "gap" else ""
    try:
        if weights is None:
            return timm.create_model(
                name, pretrained=False, num_classes=0, global_pool=global_pool, **timm_kwargs
            )
        if weights.kind == "hub":
            return _from_hub(name, weights, global_pool, timm_kwargs)
        return _from_state(name, weights, global_pool, timm_kwargs)
    except RuntimeError as e:
        if "Unknown model" in str(e):
            raise ValueError(
                f"model.name={name!r} is not a timm model; list them with "
                "python -c \"import timm; print(timm.list_models('*resnet*'))\""
            ) from e
        raise


def _from_state(
    name: str, weights: Weights, global_pool: str, timm_kwargs: dict[str, Any]
) -> nn.Module:
    """Weights from a file: mapped onto timm's names, loaded strictly into the network with
    the classifier they carry (if any), then the classifier is removed."""
    check_architecture(weights, name)
    state = read_weights(str(weights.path))
    if weights.known is not None and weights.known.mapping == "position":
        # the reference order is timm's own network, with the classifier the weights have
        reference = timm.create_model(name, pretrained=False, **timm_kwargs).state_dict()
        state = map_by_position(state, reference, weights.given, name)
    head = _classifier_rows(name, state)
    # built with the network's own pooling, the layout the weights were saved in: a ViT built
    # with global_pool="avg" has an fc_norm where its weights have the final norm; the pooling
    # changes after the load (reset_classifier keeps the norm, as DINOv2/RETFound pool features)
    model = timm.create_model(name, pretrained=False, num_classes=head, **timm_kwargs)
    state = _timm_conversion(model, state)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # a shape differs: another architecture's weights
        raise ValueError(
            f"{weights.given} does not fit {name}: {str(e).splitlines()[-1].strip()}"
            " Check model.name against the weights."
        ) from None
    # num_batches_tracked: a BatchNorm step counter, not a weight (many files leave it out)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    check_keys(missing, unexpected, weights.given, architecture=name)
    model.reset_classifier(0, global_pool=global_pool)
    record_provenance(model, weights)
    return model


def _timm_conversion(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm's own conversion for the model's family where it has one, as timm applies when it
    loads pretrained weights (ViT & co: position embeddings resampled to ``img_size``)."""
    convert = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
    return convert(state, model) if convert is not None else state


def _classifier_rows(name: str, state: dict[str, torch.Tensor]) -> int:
    """How many classes the weights' classifier has (0: they carry none)."""
    cfg = timm.models.get_pretrained_cfg(name)
    names = (cfg.classifier if cfg is not None else None) or ()
    for n in [names] if isinstance(names, str) else names:
        if f"{n}.weight" in state:
            return int(state[f"{n}.weight"].shape[0])
    return 0


def _from_hub(
    name: str, weights: Weights, global_pool: str, timm_kwargs: dict[str, Any]
) -> nn.Module:
    """timm's own download; the default classifier = the checkpoint's, so timm loads strictly.
    Offline (or the download fails): one message saying what to install or give instead."""
    try:
        model = timm.create_model(name, pretrained=True, **timm_kwargs)  # (as in _from_state)
    except OSError as e:  # no network, HF_HUB_OFFLINE, not in the cache, a proxy's refusal
        raise hub_unreachable(weights, name, e) from e
    state = model.state_dict()
    model.reset_classifier(0, global_pool=global_pool)
    record_provenance(model, weights, tensors_sha256(state))
    return model

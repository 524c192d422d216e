"""Reading weight files and checking that a load used every weight it should."""

from __future__ import annotations

import os
from collections.abc import Iterable

import torch

from medcls.errors import WeightsError


def read_weights(path: str) -> dict[str, torch.Tensor]:
    """A state dict from ``.pth``/``.bin``/``.safetensors`` (``state_dict``/``model`` wrappers
    unpacked), loaded safely (tensors and plain containers only)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"model.pretrained_file={path} does not exist: give a PyTorch state_dict (.pth, .bin "
            "or .safetensors) for this architecture."
        )
    from timm.models import load_state_dict  # handles safetensors and the usual wrappers

    return load_state_dict(path, use_ema=False, weights_only=True)


def check_keys(
    missing: Iterable[str],
    unexpected: Iterable[str],
    source: str,
    may_miss: tuple[str, ...] = (),
    may_skip: tuple[str, ...] = (),
    architecture: str | None = None,
) -> None:
    """Raise unless the load was complete.

    Args:
        missing: model keys the weights did not provide.
        unexpected: weight keys the model has no place for.
        may_miss / may_skip: key prefixes of parts that are dropped anyway (the ImageNet
            classifier, auxiliary heads): allowed to be missing / unused.
        architecture: the network's name, for the message.
    """
    missing = [k for k in missing if not k.startswith(may_miss or ("\0",))]
    unexpected = [k for k in unexpected if not k.startswith(may_skip or ("\0",))]
    if missing or unexpected:
        raise WeightsError(
            f"{source} does not fit {architecture or 'this architecture'}: "
            f"{len(missing)} missing (e.g. {missing[:4]}), {len(unexpected)} unexpected "
            f"(e.g. {unexpected[:4]}). "
            "Check model.name against the weights."
        )

"""Grad-CAM heat maps (Selvaraju et al. 2017) of any single-output CNN, through the
``grad-cam`` package (pytorch-grad-cam).

The target layer is found automatically: the last module of the network that outputs a spatial
feature map (``(B, C, h, w)`` with ``h·w > 1``) — the last convolutional stage of a ResNet
(``backbone.layer4``), EfficientNet (``backbone.bn2``), VGG, DenseNet, … whatever library built
it. ``target_layer`` names another module (``cam.target_layer=backbone.layer3``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from medcls.errors import DataError

# Pooling that resizes to a fixed grid (AlexNet's 6×6) repeats values: not a feature stage.
NOT_STAGES = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


def spatial_layers(model: nn.Module, image_size: int) -> list[tuple[str, tuple[int, ...]]]:
    """``(name, output shape)`` of the modules that output a square spatial feature map
    ``(1, C, h, h)`` with ``h > 1``, in the order they finish during one forward pass of a
    ``(1, 3, image_size, image_size)`` input.

    Modules called more than once per pass (a shared activation) are left out: Grad-CAM needs
    one activation per layer. A network that goes on with token sequences ``(1, N, C)`` after
    its last feature map (a vision transformer: only its patch embedding is spatial) has no
    such layer worth explaining, and gets an empty list.
    """
    calls: dict[str, int] = {}
    finished: list[tuple[str, tuple[int, ...]]] = []

    def hook(name: str, module: nn.Module):
        def record(_module, _inputs, output) -> None:
            calls[name] = calls.get(name, 0) + 1
            if isinstance(output, torch.Tensor):
                finished.append((name, tuple(output.shape), isinstance(module, NOT_STAGES)))

        return record

    handles = [m.register_forward_hook(hook(n, m)) for n, m in model.named_modules() if n]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, image_size, image_size, device=_device(model)))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    spatial = [
        i
        for i, (n, shape, pooling) in enumerate(finished)
        if len(shape) == 4 and shape[-1] == shape[-2] > 1 and calls[n] == 1 and not pooling
    ]
    if spatial and any(len(shape) == 3 for _, shape, _ in finished[spatial[-1] + 1 :]):
        return []  # tokens after the last map: a transformer
    return [finished[i][:2] for i in spatial]


def find_target_layer(
    model: nn.Module, image_size: int, name: str | None = None
) -> tuple[str, nn.Module]:
    """The layer Grad-CAM weighs: ``name`` (a ``model.named_modules()`` name) if given, else the
    last module with a spatial output (see :func:`spatial_layers`)."""
    modules = dict(model.named_modules())
    if name:
        if name not in modules:
            candidates = [n for n, _ in spatial_layers(model, image_size)][-5:]
            raise DataError(
                f"cam.target_layer={name!r} is not a module of this model. Layers with a "
                f"spatial output, last ones: {candidates}."
            )
        return name, modules[name]
    found = spatial_layers(model, image_size)
    if not found:
        raise DataError(
            f"no layer of this model ends in a spatial feature map at {image_size} px, so "
            "Grad-CAM has no convolutional stage to weigh (a vision transformer, or images too "
            "small for the network's stride). Use a CNN or a larger data.image_size, or name a "
            "layer with cam.target_layer=<module name>."
        )
    return found[-1][0], modules[found[-1][0]]


def gradcam_heatmaps(
    model: nn.Module,
    images: torch.Tensor,
    target_layer: nn.Module,
    classes: Sequence[int] | None = None,
    batch_size: int = 16,
) -> np.ndarray:
    """Grad-CAM maps of ``classes`` (default: each image's predicted class).

    Shapes: ``images (N, 3, H, W)`` float, as ``model`` takes them (normalised) →
    ``(N, H, W)`` float32 in [0, 1], each map scaled to its own maximum (an all-zero map: no
    evidence for the class anywhere). The model is left in the train/eval mode it had.
    """
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    was_training = model.training
    out = []
    try:
        with torch.enable_grad(), GradCAM(model, [target_layer]) as cam:
            for start in range(0, len(images), batch_size):
                # an input that needs a gradient: the layer's output gets one even when its
                # weights are frozen (freeze_backbone_epochs)
                x = images[start : start + batch_size].detach().to(_device(model))
                x.requires_grad_(True)
                targets = None
                if classes is not None:
                    chunk = classes[start : start + batch_size]
                    targets = [ClassifierOutputTarget(int(c)) for c in chunk]
                out.append(np.asarray(cam(input_tensor=x, targets=targets), dtype=np.float32))
    finally:
        model.train(was_training)
    if not out:
        return np.zeros((0, *images.shape[-2:]), dtype=np.float32)
    return np.clip(np.concatenate(out), 0.0, 1.0)


def task_heatmaps(
    task: nn.Module,
    images: torch.Tensor,
    classes: Sequence[int] | None = None,
    target_layer: str | None = None,
) -> tuple[np.ndarray, str]:
    """Grad-CAM of a medcls task (``ClassificationTask``) on its own input.

    Shapes: ``images (N, 3, S, S)`` uint8, as the loaders give them → ``(N, S, S)`` in [0, 1].
    Returns the maps and the name of the layer used (relative to ``task.model``).
    """
    if hasattr(task, "forward_all"):
        raise DataError(
            "Grad-CAM is for single-output models: an Attention Branch Network (task=abn) has "
            "its own attention maps, saved as image | mask | map overlays under attention/."
        )
    name, layer = find_target_layer(task.model, int(images.shape[-1]), target_layer)
    with torch.no_grad():  # normalisation needs no gradient; Grad-CAM enables its own
        x = task.normalize(images.to(_device(task)))
    return gradcam_heatmaps(task.model, x, layer, classes), name


def _device(module: nn.Module) -> torch.device:
    p = next(module.parameters(), None)
    return p.device if p is not None else torch.device("cpu")

"""Grad-CAM heat maps: shape, per-map scaling and the classes asked for on a tiny ResNet, the
automatic target layer, the override, models it refuses, and that the map points at the
evidence (also through a task's uint8 input and a strided conv)."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from torch import nn

from medcls.errors import DataError
from medcls.explain import find_target_layer, gradcam_heatmaps, task_heatmaps
from medcls.models import create_model


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    torch.manual_seed(0)
    return create_model("resnet18", num_classes=3, pretrained=False, image_size=64)


def test_heatmaps_of_a_resnet_at_64px(resnet) -> None:
    images = torch.randn(5, 3, 64, 64)
    name, layer = find_target_layer(resnet, 64)
    assert name == "backbone.layer4"  # the last conv stage
    resnet.train()
    maps = gradcam_heatmaps(resnet, images, layer, classes=[0, 1, 2, 0, 1], batch_size=2)
    assert maps.shape == (5, 64, 64) and maps.dtype == np.float32
    peaks = maps.reshape(5, -1).max(axis=1)  # each map scaled to its own maximum (or all 0)
    assert np.all(np.isclose(peaks, 1.0, atol=1e-4) | (peaks == 0)) and (peaks > 0).any()
    # the classes asked for are the ones explained (batching does not mix them up)
    other = gradcam_heatmaps(resnet, images, layer, classes=[1, 2, 0, 1, 2])
    assert not np.allclose(maps, other, atol=1e-3)
    np.testing.assert_allclose(
        maps[1:2], gradcam_heatmaps(resnet, images[1:2], layer, [1]), atol=1e-5
    )
    assert resnet.training  # the caller's mode is restored
    default = gradcam_heatmaps(resnet, images[:2], layer)  # predicted classes
    predicted = resnet.eval()(images[:2]).argmax(1).tolist()
    np.testing.assert_allclose(default, gradcam_heatmaps(resnet, images[:2], layer, predicted))


def test_target_layer_override_and_bad_name(resnet) -> None:
    name, layer = find_target_layer(resnet, 64, "backbone.layer3")
    assert name == "backbone.layer3" and layer is resnet.backbone.layer3
    maps = gradcam_heatmaps(resnet, torch.randn(2, 3, 64, 64), layer)
    assert maps.shape == (2, 64, 64)
    with pytest.raises(DataError, match=r"backbone\.nope.*backbone\.layer4"):
        find_target_layer(resnet, 64, "backbone.nope")


def test_map_points_at_the_evidence() -> None:
    """Class 0's logit is the mean brightness: its map must light up the bright square."""
    conv = nn.Conv2d(3, 2, 1, bias=False)
    with torch.no_grad():
        conv.weight[:] = torch.tensor([1.0, -1.0]).view(2, 1, 1, 1).expand(2, 3, 1, 1)
    model = nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    images = torch.zeros(2, 3, 32, 32)
    images[0, :, 2:10, 3:11] = 1.0  # top left
    images[1, :, 20:30, 22:30] = 1.0  # bottom right
    name, layer = find_target_layer(model, 32)
    assert name == "1"  # the ReLU's map: the pooled (1×1) output is no spatial stage
    maps = gradcam_heatmaps(model, images, layer, classes=[0, 0])
    assert maps[0, 2:10, 3:11].mean() > 0.9 and maps[0, 16:, 16:].max() < 0.1
    assert maps[1, 20:30, 22:30].mean() > 0.9 and maps[1, :16, :16].max() < 0.1


def test_transformer_and_abn_are_refused() -> None:
    vit = create_model(
        "vit_tiny_patch16_224", num_classes=2, image_size=64, timm_kwargs={"img_size": 64}
    )
    with pytest.raises(DataError, match="vision transformer"):
        find_target_layer(vit, 64)
    abn = types.SimpleNamespace(forward_all=lambda x: x)
    with pytest.raises(DataError, match="task=abn"):
        task_heatmaps(abn, torch.zeros(1, 3, 32, 32, dtype=torch.uint8))


def test_task_heatmaps_take_uint8_images(resnet) -> None:
    from medcls.tasks import ClassificationTask

    task = ClassificationTask(resnet, ["a", "b", "c"], [0.5] * 3, [0.25] * 3).eval()
    images = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8)
    maps, name = task_heatmaps(task, images, [2, 1, 0])
    assert name == "backbone.layer4" and maps.shape == (3, 64, 64)
    x = task.normalize(images)
    np.testing.assert_allclose(
        maps, gradcam_heatmaps(resnet, x, resnet.backbone.layer4, [2, 1, 0]), atol=1e-5
    )


def test_task_map_peaks_at_the_evidence_through_a_strided_conv() -> None:
    """uint8 images through a task (normalisation, then a stride-4 3×3 conv whose class 0 is
    brightness, class 1 darkness, then the mean): class 0's map must peak on the bright square,
    off the diagonal so a transposed or flipped map fails; class 1's away from it."""
    from medcls.tasks import ClassificationTask

    conv = nn.Conv2d(3, 2, 3, stride=4, padding=1, bias=False)
    with torch.no_grad():
        conv.weight[:] = torch.tensor([1.0, -1.0]).view(2, 1, 1, 1).expand(2, 3, 3, 3) / 27
    model = nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    task = ClassificationTask(model, ["bright", "dark"], [0.5] * 3, [0.25] * 3).eval()
    images = torch.zeros(2, 3, 64, 64, dtype=torch.uint8)
    images[0, :, 4:20, 40:60] = 255  # top right
    images[1, :, 44:60, 8:24] = 255  # bottom left
    maps, name = task_heatmaps(task, images, [0, 0])
    assert name == "1" and maps.shape == (2, 64, 64)
    squares = [(slice(4, 20), slice(40, 60)), (slice(44, 60), slice(8, 24))]
    for m, (rows, cols) in zip(maps, squares, strict=True):
        r, c = np.unravel_index(m.argmax(), m.shape)
        assert rows.start <= r < rows.stop and cols.start <= c < cols.stop, (r, c)
        inside = np.zeros_like(m, dtype=bool)
        inside[rows, cols] = True
        assert m[inside].mean() > 4 * m[~inside].mean()
    dark, _ = task_heatmaps(task, images[:1], [1])
    r, c = np.unravel_index(dark[0].argmax(), dark[0].shape)
    assert not (4 <= r < 20 and 40 <= c < 60)

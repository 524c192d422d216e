"""create_model: head variants, shapes, and offline pretrained weights from a local file."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from torch import nn

from medcls.models import Classifier, create_model
from medcls.models.heads import ClassifierHead


def _linears(model: Classifier) -> list[nn.Linear]:
    return [m for m in model.head.modules() if isinstance(m, nn.Linear)]


@pytest.mark.parametrize(
    ("kwargs", "widths"),
    [
        ({}, [(256, 3)]),
        ({"dropout": 0.3}, [(256, 3)]),
        ({"hidden": [16, 8]}, [(256, 16), (16, 8), (8, 3)]),
        ({"pool": "flatten"}, [(256 * 2 * 2, 3)]),  # 64 px / stride 32 = 2x2 feature map
        ({"pool": "flatten", "hidden": [16], "dropout": 0.5}, [(1024, 16), (16, 3)]),
    ],
)
def test_head_variants(kwargs: dict, widths: list[tuple[int, int]]) -> None:
    model = create_model("test_efficientnet", num_classes=3, image_size=64, **kwargs)
    assert isinstance(model, Classifier)
    assert [(m.in_features, m.out_features) for m in _linears(model)] == widths
    drops = [m.p for m in model.head.modules() if isinstance(m, nn.Dropout)]
    assert drops == [kwargs.get("dropout", 0.0)] * len(widths)
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 3)
    assert torch.isfinite(out).all()


def test_gap_works_at_any_size_flatten_is_fixed() -> None:
    gap = create_model("test_efficientnet", num_classes=4, image_size=32).eval()
    flat = create_model("test_efficientnet", num_classes=4, image_size=32, pool="flatten").eval()
    with torch.no_grad():
        assert gap(torch.randn(1, 3, 96, 96)).shape == (1, 4)
        assert flat(torch.randn(1, 3, 32, 32)).shape == (1, 4)
        with pytest.raises(RuntimeError):
            flat(torch.randn(1, 3, 96, 96))  # flattened size was measured at 32 px


def test_head_alone() -> None:
    head = ClassifierHead(12, 5, hidden=[7], dropout=0.0)
    assert head(torch.randn(3, 12)).shape == (3, 5)
    assert head(torch.randn(3, 3, 2, 2)).shape == (3, 5)  # flattened


def test_timm_kwargs_and_pretrained_cfg() -> None:
    model = create_model("resnet10t", num_classes=2, timm_kwargs={"drop_rate": 0.1})
    assert model.backbone.drop_rate == 0.1
    assert len(model.pretrained_cfg["mean"]) == 3


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="not a timm model"):
        create_model("no_such_net_xyz", num_classes=2)
    with pytest.raises(ValueError, match="pool"):
        create_model("test_efficientnet", num_classes=2, pool="max")
    with pytest.raises(FileNotFoundError, match="pretrained_file"):
        create_model("test_efficientnet", num_classes=2, pretrained_file="/no/such/weights.pth")


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_pretrained_file_loads_backbone_weights(tmp_path: Path, suffix: str) -> None:
    """A local state_dict (with its 1000-class classifier) goes in through timm's
    ``pretrained_cfg_overlay=dict(file=...)``: offline, classifier dropped, backbone intact."""
    torch.manual_seed(123)
    source = timm.create_model("resnet10t", pretrained=False)  # with its 1000-class fc
    state = {k: v.clone() for k, v in source.state_dict().items()}
    path = tmp_path / f"weights{suffix}"
    if suffix == ".pth":
        torch.save(state, path)
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))

    model = create_model("resnet10t", num_classes=3, pretrained_file=str(path))
    loaded = model.backbone.state_dict()
    backbone_keys = [k for k in state if not k.startswith("fc.")]
    assert set(loaded) == set(backbone_keys)
    for k in backbone_keys:
        assert torch.equal(loaded[k], state[k]), k
    fresh = create_model("resnet10t", num_classes=3)
    assert not torch.equal(fresh.backbone.conv1[0].weight, state["conv1.0.weight"])
    assert model.head.layers[-1].out_features == 3

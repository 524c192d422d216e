"""The backbone factory: library choice, torchvision families without their classifier, and
weight loads that must use every kept weight (timm and torchvision, file and hub paths)."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
import torchvision

from medcls.models import create_backbone, create_model
from medcls.models import timm_backbone as timm_backbone_module
from medcls.models.backbone import resolve_library

TV = {"alexnet": 4096, "googlenet": 1024, "shufflenet_v2_x0_5": 1024}
TV_CHANNELS = {"alexnet": 256, "googlenet": 1024, "shufflenet_v2_x0_5": 1024}


def test_library_resolution() -> None:
    assert resolve_library("alexnet") == "torchvision"
    assert resolve_library("googlenet") == "torchvision"
    assert resolve_library("shufflenet_v2_x1_0") == "torchvision"
    assert resolve_library("resnet18") == "timm"
    assert resolve_library("tf_efficientnetv2_s") == "timm"
    assert resolve_library("resnet18", "torchvision") == "torchvision"
    with pytest.raises(ValueError, match="library"):
        resolve_library("resnet18", "keras")
    with pytest.raises(ValueError, match="from torchvision"):
        create_backbone("resnet18", library="torchvision")


@pytest.mark.parametrize("name", sorted(TV))
def test_torchvision_backbones(name: str) -> None:
    torch.manual_seed(0)
    gap = create_model(name, num_classes=3, image_size=64).eval()
    assert gap.backbone.num_features == TV[name]
    assert gap.head.layers[-1].in_features == TV[name]
    assert not [n for n, _ in gap.backbone.named_parameters() if n.startswith(("fc", "aux"))]
    flat = create_model(name, num_classes=3, image_size=64, pool="flatten", hidden=[8]).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert gap(x).shape == (2, 3)
        assert flat(x).shape == (2, 3)
        fmap = flat.backbone(x)
    assert fmap.ndim == 4 and fmap.shape[1] == TV_CHANNELS[name]
    assert len(gap.pretrained_cfg["mean"]) == 3


def _drop_classifier_keys(state: dict, prefixes: tuple[str, ...]) -> dict:
    return {k: v for k, v in state.items() if not k.startswith(prefixes)}


@pytest.mark.parametrize(
    ("name", "build", "dropped"),
    [
        ("shufflenet_v2_x0_5", {}, ("fc.",)),
        ("googlenet", {"aux_logits": True, "init_weights": True}, ("fc.", "aux1.", "aux2.")),
    ],
)
def test_torchvision_pretrained_file(tmp_path: Path, name: str, build: dict, dropped) -> None:
    """A full torchvision checkpoint (classifier, GoogLeNet's aux heads) loads offline; every
    kept weight comes from it; a checkpoint lacking a kept weight is refused."""
    torch.manual_seed(3)
    source = torchvision.models.get_model(name, weights=None, **build)
    state = source.state_dict()
    torch.save(state, tmp_path / "full.pth")
    model = create_model(name, num_classes=2, pretrained_file=str(tmp_path / "full.pth"))
    kept = model.backbone.state_dict()
    originals = _drop_classifier_keys(state, dropped)
    assert len(kept) == len(originals)
    kept_values = sorted(float(v.double().sum()) for v in kept.values() if v.is_floating_point())
    orig_values = sorted(
        float(v.double().sum()) for v in originals.values() if v.is_floating_point()
    )
    assert kept_values == pytest.approx(orig_values)

    headless = _drop_classifier_keys(state, dropped)  # also fine: the dropped parts absent
    torch.save(headless, tmp_path / "headless.pth")
    create_model(name, num_classes=2, pretrained_file=str(tmp_path / "headless.pth"))

    broken = dict(state)
    broken.pop(next(k for k in state if k.startswith("conv1")))
    torch.save(broken, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match="1 missing"):
        create_model(name, num_classes=2, pretrained_file=str(tmp_path / "broken.pth"))
    extra = {**state, "extra.weight": torch.zeros(1)}
    torch.save(extra, tmp_path / "extra.pth")
    with pytest.raises(ValueError, match="1 unexpected"):
        create_model(name, num_classes=2, pretrained_file=str(tmp_path / "extra.pth"))


def test_torchvision_weight_enum(monkeypatch: pytest.MonkeyPatch) -> None:
    """pretrained=true takes torchvision's DEFAULT weights enum (faked here: no network)."""
    torch.manual_seed(4)
    state = torchvision.models.alexnet().state_dict()

    class FakeWeights:
        def get_state_dict(self, progress: bool = True) -> dict:
            return state

    class FakeEnum:
        DEFAULT = FakeWeights()

    monkeypatch.setattr(torchvision.models, "get_model_weights", lambda name: FakeEnum)
    model = create_model("alexnet", num_classes=2, pretrained=True)
    assert torch.equal(model.backbone.features[0].weight, state["features.0.weight"])
    assert torch.equal(model.backbone.pool[3].weight, state["classifier.1.weight"])  # fc6 kept


def test_timm_headless_and_broken_files(tmp_path: Path) -> None:
    torch.manual_seed(5)
    source = timm.create_model("resnet10t", num_classes=0)
    torch.save(source.state_dict(), tmp_path / "headless.pth")
    model = create_model("resnet10t", num_classes=2, pretrained_file=str(tmp_path / "headless.pth"))
    assert torch.equal(model.backbone.conv1[0].weight, source.conv1[0].weight)

    broken = source.state_dict()
    broken.pop("layer1.0.conv1.weight")
    torch.save(broken, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match="1 missing"):
        create_model("resnet10t", num_classes=2, pretrained_file=str(tmp_path / "broken.pth"))


def test_timm_hub_weights_load_strictly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pretrained=true: timm loads the checkpoint into the network with its own classifier
    (strict), then medcls removes the classifier. The hub is replaced by a local file here."""
    torch.manual_seed(6)
    full = timm.create_model("resnet10t").state_dict()
    real_create = timm.create_model

    def from_file(path: Path):
        def create(*args, **kwargs):
            if kwargs.get("pretrained"):
                kwargs["pretrained_cfg_overlay"] = {"file": str(path)}
            return real_create(*args, **kwargs)

        return create

    torch.save(full, tmp_path / "full.pth")
    monkeypatch.setattr(timm_backbone_module.timm, "create_model", from_file(tmp_path / "full.pth"))
    model = create_model("resnet10t", num_classes=3, pretrained=True)
    assert torch.equal(model.backbone.conv1[0].weight, full["conv1.0.weight"])
    assert model.backbone.num_classes == 0 and model.head.layers[-1].out_features == 3

    partial = {k: v for k, v in full.items() if k != "layer1.0.conv1.weight"}
    torch.save(partial, tmp_path / "partial.pth")
    monkeypatch.setattr(
        timm_backbone_module.timm, "create_model", from_file(tmp_path / "partial.pth")
    )
    with pytest.raises(RuntimeError, match="Missing key"):
        create_model("resnet10t", num_classes=3, pretrained=True)

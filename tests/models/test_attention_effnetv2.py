"""Non-local surgery on timm EfficientNet(V2): which blocks, identity at initialisation, weights
loaded before surgery, state-dict round trip, training step at 64 px, head switches."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from timm.models._efficientnet_blocks import InvertedResidual
from torch import nn

from medcls.models import NonLocalBlock, add_nonlocal, attention_effnetv2, create_model

# tf_efficientnetv2_s: stages 0-2 Fused-MBConv (no SE), then 6, 9 and 15 MBConv blocks with SE
EFFNETV2_S_SE_BLOCKS = {3: 6, 4: 9, 5: 15}
# The other EfficientNetV2s (timm's arch definitions): MBConv-with-SE blocks per stage; the
# stages before are a stem-like ConvBnAct (M, L) and Fused-MBConv stages, without SE.
OTHER_SE_BLOCKS = {
    "efficientnetv2_rw_s": {3: 6, 4: 9, 5: 15},
    "tf_efficientnetv2_m": {3: 7, 4: 14, 5: 18, 6: 5},
    "tf_efficientnetv2_l": {3: 10, 4: 19, 5: 25, 6: 7},
}


def _nonlocal_blocks(model: nn.Module) -> list[NonLocalBlock]:
    return [m for m in model.modules() if isinstance(m, NonLocalBlock)]


def _se_blocks(stage: nn.Module) -> list[InvertedResidual]:
    return [
        b
        for b in stage.modules()
        if isinstance(b, InvertedResidual) and not isinstance(b.se, nn.Identity)
    ]


@pytest.mark.parametrize(("stages", "expected"), [("all", 30), ([4, 5], 24), ([3], 6), ((5,), 15)])
def test_every_se_block_of_the_chosen_stages(stages, expected: int) -> None:
    model = timm.create_model("tf_efficientnetv2_s", num_classes=0)
    assert add_nonlocal(model, stages, reduction=16, check=False) == expected
    chosen = EFFNETV2_S_SE_BLOCKS if stages == "all" else {s: 0 for s in stages}
    for i, stage in enumerate(model.blocks):
        for block in _se_blocks(stage):
            modified = isinstance(block.se, nn.Sequential)
            assert modified == (i in chosen), (i, block)
            if modified:  # SE first, then attention on the same expanded map
                assert isinstance(block.se.non_local, NonLocalBlock)
                assert block.se.non_local.channels == block.conv_pwl.in_channels
    assert len(_nonlocal_blocks(model)) == expected


def test_identity_at_initialisation() -> None:
    torch.manual_seed(0)
    model = timm.create_model("tf_efficientnetv2_s", num_classes=5).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
        add_nonlocal(model, "all", check=False)
        after = model(x)
    torch.testing.assert_close(after, before, rtol=0, atol=0)


@pytest.mark.parametrize("name", list(OTHER_SE_BLOCKS))
def test_surgery_on_other_efficientnetv2s(name: str) -> None:
    """One Non-local block in each SE-bearing MBConv, and still the plain network at first.
    reduction=16 keeps the wide M/L stages' attention small (the structure is the same)."""
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=0).eval()
    x = torch.randn(1, 3, 32, 32)  # the last stages see 1×1 maps: pooling must cope
    with torch.no_grad():
        before = model(x)
    expected = OTHER_SE_BLOCKS[name]
    assert add_nonlocal(model, "all", reduction=16, check=False) == sum(expected.values())
    for i, stage in enumerate(model.blocks):
        modified = [isinstance(b.se, nn.Sequential) for b in _se_blocks(stage)]
        assert modified == [True] * expected.get(i, 0), i
    assert len(_nonlocal_blocks(model)) == sum(expected.values())
    with torch.no_grad():  # eval again: the new blocks were made in training mode
        torch.testing.assert_close(model.eval()(x), before, rtol=0, atol=0)


class _SwitchedOn(NonLocalBlock):
    """A block whose BN scale does not start at zero: no longer the identity when inserted."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        nn.init.ones_(self.norm.weight)


def test_surgery_check_catches_a_block_that_is_not_the_identity(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = timm.create_model("test_efficientnet", num_classes=0)
    add_nonlocal(model, "all")  # the real block passes the check
    monkeypatch.setattr(attention_effnetv2, "NonLocalBlock", _SwitchedOn)
    model = timm.create_model("test_efficientnet", num_classes=0)
    with pytest.raises(RuntimeError, match="changed the network's output"):
        add_nonlocal(model, "all")
    assert add_nonlocal(timm.create_model("test_efficientnet"), "all", check=False) == 2


def test_surgery_refuses_what_it_cannot_do() -> None:
    model = timm.create_model("test_efficientnet", num_classes=0)
    with pytest.raises(ValueError, match="no MBConv block with SE"):
        add_nonlocal(model, [1])  # a Fused-MBConv stage
    with pytest.raises(ValueError, match="does not exist"):
        add_nonlocal(model, [9])
    with pytest.raises(ValueError, match="use all"):
        add_nonlocal(model, "last")
    with pytest.raises(ValueError, match="EfficientNet"):
        add_nonlocal(timm.create_model("resnet10t", num_classes=0))


def test_weights_are_loaded_before_surgery(tmp_path: Path) -> None:
    """Offline 'pretrained' weights (a full timm checkpoint, classifier included) end up in the
    modified network unchanged; the attention network starts out computing the plain one."""
    torch.manual_seed(1)
    source = timm.create_model("test_efficientnet")  # with its 1000-class classifier
    path = tmp_path / "weights.pth"
    torch.save(source.state_dict(), path)

    model = create_model(
        "test_efficientnet", num_classes=3, pretrained_file=str(path), nonlocal_stages="all"
    ).eval()
    assert len(_nonlocal_blocks(model)) == 2
    loaded = model.backbone.state_dict()
    for key, value in source.state_dict().items():
        if key.startswith("classifier."):
            continue
        mapped = key.replace(".se.", ".se.se.")  # SE now sits inside SE → Non-local
        assert torch.equal(loaded[mapped], value), key
    x = torch.randn(2, 3, 64, 64)
    source.reset_classifier(0)
    with torch.no_grad():
        torch.testing.assert_close(model.backbone(x), source.eval()(x), rtol=0, atol=0)


def test_state_dict_round_trip(tmp_path: Path) -> None:
    kwargs = {"num_classes": 4, "nonlocal_stages": [4], "nonlocal_reduction": 4}
    model = create_model("test_efficientnet", **kwargs)
    with torch.no_grad():  # as if trained: the attention is switched on
        for block in _nonlocal_blocks(model):
            block.norm.weight.normal_()
    torch.save(model.state_dict(), tmp_path / "model.pth")
    again = create_model("test_efficientnet", **kwargs)
    again.load_state_dict(torch.load(tmp_path / "model.pth", weights_only=True))  # strict
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(x), model.eval()(x))


def test_forward_backward_effnetv2_s_at_64px() -> None:
    torch.manual_seed(0)
    model = create_model(
        "tf_efficientnetv2_s", num_classes=8, nonlocal_stages="all", nonlocal_reduction=8
    ).train()
    x, y = torch.randn(2, 3, 64, 64), torch.tensor([0, 7])
    logits = model(x)
    assert logits.shape == (2, 8)
    nn.functional.cross_entropy(logits, y).backward()
    blocks = _nonlocal_blocks(model)
    assert len(blocks) == 30
    zero = set()
    for name, p in model.named_parameters():
        assert p.requires_grad and p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        if not p.grad.any():
            zero.add(name)
    # Exactly zero, by design: a Non-local block's θ, φ, g and W_z until its BN scale leaves
    # zero (everything before that BN is multiplied by it; tests/models/test_non_local.py).
    before_bn = {
        f"{name}.{p}"
        for name, m in model.named_modules()
        if isinstance(m, NonLocalBlock)
        for p, _ in m.named_parameters()
        if not p.startswith("norm.")
    }
    assert zero == before_bn
    assert all(b.norm.weight.grad.abs().sum() > 0 for b in blocks)


@pytest.mark.parametrize(
    "head", [{}, {"dropout": 0.3, "hidden": [16]}, {"pool": "flatten", "hidden": [8]}]
)
def test_head_switches(head: dict) -> None:
    model = create_model(
        "test_efficientnet", num_classes=3, image_size=64, nonlocal_stages="all", **head
    )
    with torch.no_grad():
        assert model.eval()(torch.randn(2, 3, 64, 64)).shape == (2, 3)

"""Attention Branch Network: shapes and gradients of both branches at several input sizes, the
residual attention (a zero map leaves the perception branch on plain features), pretrained
weights loaded into exactly the shared parts."""

from __future__ import annotations

import pytest
import timm
import torch

from medcls.models.abn import ABNOutput, AttentionBranchNetwork, create_abn

K = 3


@pytest.fixture(scope="module")
def abn() -> AttentionBranchNetwork:
    torch.manual_seed(0)
    return create_abn("resnet18", num_classes=K)


@pytest.mark.parametrize("size", [64, 96])
def test_shapes_and_gradients_of_both_branches(abn: AttentionBranchNetwork, size: int) -> None:
    abn.train()
    abn.zero_grad()
    out = abn(torch.randn(2, 3, size, size))
    assert isinstance(out, ABNOutput)
    assert out.logits.shape == (2, K) and out.attention_logits.shape == (2, K)
    assert out.attention.shape == (2, 1, size // 16, size // 16)
    assert ((out.attention > 0) & (out.attention < 1)).all()

    # perception loss alone: reaches the map head through x·M(x), and the shared trunk
    out.logits.sum().backward(retain_graph=True)
    grads = {n: p.grad for n, p in abn.named_parameters()}
    assert grads["attention.map_conv.0.weight"].abs().sum() > 0
    assert grads["perception.0.bn2.weight"].abs().sum() > 0  # (timm zero-inits bn2: conv1 gets 0)
    assert grads["backbone.0.weight"].abs().sum() > 0
    assert grads["attention.class_conv.weight"] is None  # not on the perception path
    # attention-branch loss: its own head
    out.attention_logits.sum().backward()
    assert abn.attention.class_conv.weight.grad.abs().sum() > 0


def test_any_input_shape(abn: AttentionBranchNetwork) -> None:
    abn.eval()
    with torch.no_grad():
        out = abn(torch.randn(1, 3, 64, 112))
    assert out.logits.shape == (1, K) and out.attention.shape == (1, 1, 4, 7)


def test_zero_attention_gives_the_plain_perception_branch(abn: AttentionBranchNetwork) -> None:
    """x·0 + x = x: with the map forced to 0 the perception branch sees the bare features."""
    abn.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        f = abn.backbone(x)
        plain = abn.head(abn.perception(f).mean(dim=(2, 3)))
        zero = abn.perceive(f, torch.zeros(2, 1, *f.shape[-2:]))
        one = abn.perceive(f, torch.ones(2, 1, *f.shape[-2:]))  # 2x features: a different answer
    torch.testing.assert_close(zero, plain)
    assert not torch.allclose(one, plain)


def test_forward_uses_the_attention_map(abn: AttentionBranchNetwork, monkeypatch) -> None:
    """forward feeds the attention branch's own map into f·M + f: with a non-zero map the
    logits equal the residual attention recomputed by hand, and differ from the bare features."""
    abn.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        f = abn.backbone(x)
        logits, _ = abn.attention(f)
    gen = torch.Generator().manual_seed(3)
    fixed = torch.rand(2, 1, *f.shape[-2:], generator=gen) * 2 + 0.5  # far from 0 everywhere
    monkeypatch.setattr(abn.attention, "forward", lambda feats: (logits, fixed))
    with torch.no_grad():
        out = abn(x)
        by_hand = abn.head(abn.perception(f * fixed + f).mean(dim=(2, 3)))
        bare = abn.head(abn.perception(f).mean(dim=(2, 3)))
    torch.testing.assert_close(out.logits, by_hand)
    torch.testing.assert_close(out.attention, fixed)
    assert (out.logits - bare).abs().max() > 1e-3  # the map changed the answer


def test_attention_block_is_fresh_and_keeps_resolution() -> None:
    torch.manual_seed(0)
    abn = create_abn("resnet10t", num_classes=2)  # ResNet-D: average-pool shortcut
    block0 = abn.attention.block[0]
    assert not torch.equal(block0.conv1.weight, abn.perception[0].conv1.weight)
    f = torch.randn(1, abn.perception[0].conv1.in_channels, 5, 5)
    abn.eval()
    assert abn.attention.block(f).shape[-2:] == (5, 5)
    assert abn.perception(f).shape[-2:] == (3, 3)


def test_pretrained_file_fills_exactly_the_shared_parts(tmp_path) -> None:
    torch.manual_seed(1)
    resnet = timm.create_model("resnet18", num_classes=1000)  # stands in for ImageNet weights
    path = tmp_path / "resnet18.pth"
    torch.save(resnet.state_dict(), path)
    abn = create_abn("resnet18", num_classes=K, pretrained_file=str(path))
    state, source = abn.state_dict(), resnet.state_dict()
    loaded = set(abn.pretrained_keys)
    assert loaded == {k for k in state if k.startswith(("backbone.", "perception."))}
    assert not any(k.startswith(("attention.", "head.")) for k in loaded)
    torch.testing.assert_close(state["backbone.0.weight"], source["conv1.weight"])
    torch.testing.assert_close(state["backbone.6.1.bn2.weight"], source["layer3.1.bn2.weight"])
    torch.testing.assert_close(state["perception.1.conv2.weight"], source["layer4.1.conv2.weight"])
    n_trunk = sum(v.numel() for k, v in source.items() if not k.startswith("fc."))
    assert sum(state[k].numel() for k in loaded) == n_trunk


def test_pretrained_file_of_another_architecture_is_refused(tmp_path) -> None:
    path = tmp_path / "resnet34.pth"
    torch.save(timm.create_model("resnet34").state_dict(), path)
    with pytest.raises(ValueError, match="does not fit resnet18"):
        create_abn("resnet18", num_classes=K, pretrained_file=str(path))


def test_only_resnets() -> None:
    with pytest.raises(ValueError, match="ResNet/ResNeXt"):
        create_abn("test_efficientnet", num_classes=K)

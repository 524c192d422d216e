"""NonLocalBlock: shapes, identity at initialisation, the attention it computes, gradients."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from medcls.models import NonLocalBlock


def _perturbed(block: NonLocalBlock) -> NonLocalBlock:
    """The block as training would leave it: a non-zero output projection."""
    with torch.no_grad():
        block.norm.weight.fill_(1.0)
        block.norm.bias.normal_()
    return block


@pytest.mark.parametrize("subsample", [True, False])
@pytest.mark.parametrize("hw", [(1, 1), (2, 3), (7, 7), (5, 8)])
def test_shapes(subsample: bool, hw: tuple[int, int]) -> None:
    block = _perturbed(NonLocalBlock(16, reduction=4, subsample=subsample)).eval()
    x = torch.randn(3, 16, *hw)
    y = block(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()
    assert block.inter_channels == 4


@pytest.mark.parametrize("train", [True, False])
def test_identity_at_init(train: bool) -> None:
    block = NonLocalBlock(24, reduction=2).train(train)
    x = torch.randn(2, 24, 6, 6)
    assert torch.equal(block(x), x)


def test_embedded_gaussian_attention() -> None:
    """Without subsampling: y_i = Σ_j softmax_j(θ_i·φ_j) g_j, then z = x + BN(W y)."""
    torch.manual_seed(0)
    block = _perturbed(NonLocalBlock(8, reduction=2, subsample=False)).eval()
    x = torch.randn(2, 8, 3, 4)
    theta = block.theta(x).flatten(2)  # (B, C', N)
    phi, g = block.phi(x).flatten(2), block.g(x).flatten(2)
    attn = torch.softmax(theta.transpose(1, 2) @ phi, dim=-1)  # (B, N, N), no 1/sqrt(d)
    y = (attn @ g.transpose(1, 2)).transpose(1, 2).reshape(2, 4, 3, 4)
    expected = x + block.norm(block.out(y))
    torch.testing.assert_close(block(x), expected, rtol=1e-5, atol=1e-5)


def test_subsampling_pools_keys_and_values() -> None:
    block = _perturbed(NonLocalBlock(8, subsample=True)).eval()
    x = torch.randn(1, 8, 6, 6)
    assert block.pool(block.phi(x)).shape[-2:] == (3, 3)  # 36 queries attend to 9 keys
    assert block(x).shape == x.shape


def test_gradients_reach_every_weight_once_trained() -> None:
    block = NonLocalBlock(8, reduction=2)
    x = torch.randn(4, 8, 5, 5, requires_grad=True)
    block(x).square().sum().backward()
    # at initialisation only the zero-initialised norm can move (everything before it is
    # multiplied by zero), which is what lets training switch the block on
    assert block.norm.weight.grad.abs().sum() > 0
    assert block.theta.weight.grad.abs().sum() == 0
    block.zero_grad()
    _perturbed(block)(x).square().sum().backward()
    for name, p in block.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize(("subsample", "keys"), [(True, 16), (False, 64)])
def test_flop_counter_sees_the_attention(subsample: bool, keys: int) -> None:
    """benchmarks/attention_memory.py counts MACs with FlopCounterMode alone: the counter must
    see the attention inside scaled_dot_product_attention (θᵀφ and the weighted sum of g,
    2·N·M·C'), else the benchmark under-counts; adding it by hand as well double-counted."""
    batch, c, h, w = 2, 32, 8, 8
    block = NonLocalBlock(c, reduction=4, subsample=subsample).eval()
    n, inter = h * w, block.inter_channels
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        block(torch.randn(batch, c, h, w))
    counts = {str(op): flops // 2 for op, flops in counter.get_flop_counts()["Global"].items()}
    convs = counts.pop("aten.convolution")
    assert convs == batch * 4 * n * c * inter  # θ, φ, g on x; W_z on y (1×1 convolutions)
    assert sum(counts.values()) == batch * 2 * n * keys * inter, counts  # the attention


def test_bad_reduction() -> None:
    with pytest.raises(ValueError, match="reduction"):
        NonLocalBlock(8, reduction=0)

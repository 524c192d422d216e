"""Non-local block: embedded-Gaussian self-attention over all positions of a feature map.

Wang, Girshick, Gupta & He, "Non-local Neural Networks" (CVPR 2018):
``z = x + BN(W_z y)``, ``y_i = Σ_j softmax_j(θ(x_i)ᵀ φ(x_j)) g(x_j)`` with 1×1 convolutions
θ, φ, g, W_z. BN's scale and shift start at zero, so a freshly inserted block is exactly the
identity and a pretrained network keeps its function until training moves it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class NonLocalBlock(nn.Module):
    """Residual embedded-Gaussian self-attention.

    Args:
        channels: ``C``, channels of the input (and output).
        reduction: the embedding has ``max(1, C // reduction)`` channels (2 in the paper); the
            block costs about ``4·C²/reduction`` weights, so wide MBConv stages want more.
        subsample: 2×2 max-pool on φ and g (keys and values): the attention matrix shrinks from
            ``N×N`` to ``N×N/4`` positions (``N = H·W``), as in the paper's memory-saving variant.

    Shapes: ``(B, C, H, W)`` → ``(B, C, H, W)``.
    """

    def __init__(self, channels: int, reduction: int = 2, subsample: bool = True) -> None:
        super().__init__()
        if reduction < 1:
            raise ValueError(f"reduction={reduction}: must be >= 1")
        inter = max(1, channels // reduction)
        self.channels, self.inter_channels = channels, inter
        self.theta = nn.Conv2d(channels, inter, 1)
        self.phi = nn.Conv2d(channels, inter, 1)
        self.g = nn.Conv2d(channels, inter, 1)
        # ceil_mode: a 1×1 map (tiny inputs) still pools to 1×1 instead of failing
        self.pool = nn.MaxPool2d(2, ceil_mode=True) if subsample else nn.Identity()
        self.out = nn.Conv2d(inter, channels, 1, bias=False)
        self.norm = nn.BatchNorm2d(channels)
        nn.init.zeros_(self.norm.weight)  # identity at initialisation
        nn.init.zeros_(self.norm.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        q = self.theta(x).flatten(2).transpose(1, 2)  # (B, N, C')
        k = self.pool(self.phi(x)).flatten(2).transpose(1, 2)  # (B, M, C'), M = N or ~N/4
        v = self.pool(self.g(x)).flatten(2).transpose(1, 2)  # (B, M, C')
        # scale=1: the embedded Gaussian exp(θᵀφ) of the paper, without the 1/√d of
        # transformers. The fused kernel never materialises the (N, M) matrix for backward.
        y = F.scaled_dot_product_attention(
            q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1), scale=1.0
        )
        y = y.squeeze(1).transpose(1, 2).reshape(b, self.inter_channels, h, w)  # (B, C', H, W)
        return x + self.norm(self.out(y))

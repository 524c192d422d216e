"""Classification heads on top of a backbone's features."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class ClassifierHead(nn.Module):
    """features → [flatten] → dropout → (Linear → ReLU → dropout) × len(hidden) → Linear.

    Args:
        in_features: size of the (pooled or flattened) feature vector.
        hidden: widths of extra dense layers, e.g. ``[512, 256]``.
        dropout: drop rate before each dense layer.

    Shapes: input ``(B, C)`` (pooled) or ``(B, C, H, W)`` / ``(B, N, C)`` (flattened);
    output ``(B, num_classes)`` logits.
    """

    def __init__(
        self, in_features: int, num_classes: int, hidden: Sequence[int] = (), dropout: float = 0.0
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten(1)]
        width = in_features
        for h in hidden:
            layers += [nn.Dropout(dropout), nn.Linear(width, int(h)), nn.ReLU(inplace=True)]
            width = int(h)
        layers += [nn.Dropout(dropout), nn.Linear(width, num_classes)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

"""RejectUnknown: the (B, K) → (B, K+1) extension whose argmax is the max-probability rule."""

from __future__ import annotations

import pytest
import torch

from medcls.metrics.open_set import RejectUnknown


@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.8, 0.95])
def test_argmax_is_unknown_exactly_below_the_threshold(threshold: float) -> None:
    probs = torch.softmax(torch.randn(500, 4, generator=torch.Generator().manual_seed(0)) * 3, 1)
    out = RejectUnknown("UNK", threshold).extend(probs)
    assert out.shape == (500, 5)
    torch.testing.assert_close(out.sum(1), torch.ones(500))
    top, known = probs.max(1)
    expected = torch.where(top < threshold, torch.tensor(4), known)
    assert torch.equal(out.argmax(1), expected)
    assert (out >= 0).all()


def test_unknown_score_falls_as_the_model_grows_sure() -> None:
    probs = torch.tensor([[0.3, 0.3, 0.4], [0.1, 0.1, 0.8], [0.0, 0.0, 1.0]])
    unk = RejectUnknown(threshold=0.5).extend(probs)[:, -1]
    assert unk[0] > unk[1] > unk[2] == 0


def test_threshold_must_be_below_one() -> None:
    with pytest.raises(ValueError, match="unknown_threshold"):
        RejectUnknown(threshold=1.0)

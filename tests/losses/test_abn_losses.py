"""ABN losses (abn, abn_map, abn_scheduled): the formulas, the masked map error, the α schedule."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from medcls.losses import create_loss
from medcls.losses.abn import (
    ABNLoss,
    ABNMapLoss,
    ScheduledABNLoss,
    mask_to_map,
    masked_map_mse,
)
from medcls.losses.schedules import WeightSchedule
from medcls.models.abn import ABNOutput


def outputs(b: int = 4, k: int = 3, seed: int = 0) -> tuple[ABNOutput, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = ABNOutput(
        torch.randn(b, k, generator=g),
        torch.randn(b, k, generator=g),
        torch.rand(b, 1, 4, 4, generator=g),
    )
    return out, torch.arange(b) % k


def masks(b: int = 4, size: int = 16) -> torch.Tensor:
    m = torch.zeros(b, 1, size, size, dtype=torch.uint8)
    m[:, :, : size // 2] = 255  # top half
    return m


def test_mask_is_area_averaged_to_the_map() -> None:
    m = torch.zeros(1, 1, 8, 8, dtype=torch.uint8)
    m[..., :2, :] = 255  # a quarter of the rows
    small = mask_to_map(m, (2, 2))
    torch.testing.assert_close(small, torch.tensor([[[[0.5, 0.5], [0.0, 0.0]]]]))


def test_map_error_ignores_samples_without_masks() -> None:
    out, _ = outputs()
    mask, has = masks(), torch.tensor([True, False, True, False])
    target = mask_to_map(mask, (4, 4))
    expected = ((out.attention[[0, 2]] - target[[0, 2]]) ** 2).mean()
    torch.testing.assert_close(masked_map_mse(out.attention, mask, has), expected)
    # whatever the unmasked samples' masks hold, the loss is the same
    junk = mask.clone()
    junk[[1, 3]] = 255
    torch.testing.assert_close(masked_map_mse(out.attention, junk, has), expected)
    # no sample with a mask: no map loss, and no NaN
    none = masked_map_mse(out.attention, mask, torch.zeros(4, dtype=torch.bool))
    assert none.item() == 0.0


def test_map_error_gradient_only_from_masked_samples() -> None:
    att = torch.rand(2, 1, 4, 4, requires_grad=True)
    masked_map_mse(att, masks(2), torch.tensor([True, False])).backward()
    assert att.grad[0].abs().sum() > 0 and att.grad[1].abs().sum() == 0


def test_loss_formulas() -> None:
    out, y = outputs()
    mask, has = masks(), torch.ones(4, dtype=torch.bool)
    per, att = F.cross_entropy(out.logits, y), F.cross_entropy(out.attention_logits, y)
    lmap = masked_map_mse(out.attention, mask, has)

    t = ABNLoss()(out, y, mask, has)
    torch.testing.assert_close(t.total, att + per)  # eq. 1: no mask term
    torch.testing.assert_close(t.map, lmap)  # … but measured

    t = ABNMapLoss(gamma=2.5)(out, y, mask, has)
    torch.testing.assert_close(t.total, att + per + 2.5 * lmap)  # eq. 3

    loss = ScheduledABNLoss(WeightSchedule("step", 0.9, 0.1))
    assert loss.set_epoch(0, 10) == 0.9
    torch.testing.assert_close(loss(out, y, mask, has).total, 0.1 * per + 0.9 * (lmap + att))
    assert loss.set_epoch(5, 10) == 0.1  # eq. 4
    torch.testing.assert_close(loss(out, y, mask, has).total, 0.9 * per + 0.1 * (lmap + att))


def test_without_masks_the_map_term_is_zero() -> None:
    out, y = outputs()
    t = ABNMapLoss(gamma=1.0)(out, y)
    assert t.map.item() == 0.0
    torch.testing.assert_close(t.total, t.attention + t.perception)


@pytest.mark.parametrize(
    ("kind", "epochs", "expected"),
    [
        # the paper (eq. 5): 0.9 for epochs n < E/2, then 0.1
        ("step", 10, [0.9] * 5 + [0.1] * 5),
        ("step", 5, [0.9, 0.9, 0.9, 0.1, 0.1]),
        ("step", 1, [0.9]),
        ("linear", 5, [0.9, 0.7, 0.5, 0.3, 0.1]),
        (
            "cosine",
            5,
            [0.9, 0.9 - 0.8 * (1 - 0.5**0.5) / 2, 0.5, 0.1 + 0.8 * (1 - 0.5**0.5) / 2, 0.1],
        ),
        ("constant", 3, [0.9, 0.9, 0.9]),
    ],
)
def test_alpha_schedule_per_epoch(kind: str, epochs: int, expected: list[float]) -> None:
    schedule = WeightSchedule(kind, 0.9, 0.1)
    assert [schedule(e, epochs) for e in range(epochs)] == pytest.approx(expected)


def test_schedule_needs_the_number_of_epochs() -> None:
    with pytest.raises(ValueError, match="trainer.max_epochs"):
        WeightSchedule("linear")(0, -1)
    with pytest.raises(ValueError, match="use one of"):
        WeightSchedule("exponential")


@pytest.mark.parametrize("name", ["abn", "abn_map", "abn_scheduled"])
def test_configs_build_the_losses(name: str, workdir, helpers) -> None:
    cfg = helpers.compose_cfg(["task=abn", f"loss={name}", "loss.class_weights=inverse"])
    loss = create_loss(cfg.loss, [10, 30])
    expected = {"abn": ABNLoss, "abn_map": ABNMapLoss, "abn_scheduled": ScheduledABNLoss}[name]
    assert type(loss) is expected
    assert loss.ce.weight is not None and loss.ce.weight[0] > loss.ce.weight[1]
    if name == "abn_scheduled":
        assert loss.schedule == WeightSchedule("step", 0.9, 0.1)
        cfg = OmegaConf.merge(cfg.loss, {"alpha": {"schedule": "cosine", "end": 0.2}})
        assert create_loss(cfg, [1, 1]).schedule == WeightSchedule("cosine", 0.9, 0.2)

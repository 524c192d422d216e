"""The measured choice of memory format and precision (``auto``): the candidates a setting
allows, the fastest one taken and remembered per machine × network × input, the model left
untouched by the timing, and short runs keeping the rule."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from medcls.utils import hardware
from medcls.workflows.train import MEASURE_MIN_STEPS, _planned_steps


@pytest.mark.parametrize("fast_bf16", [True, False])
def test_candidates_follow_the_settings(monkeypatch, fast_bf16: bool) -> None:
    monkeypatch.setattr(hardware, "cpu_has_fast_bf16", lambda: fast_bf16)
    both = [("32-true", False), ("32-true", True)]
    bf16 = [("bf16-mixed", False), ("bf16-mixed", True)] if fast_bf16 else []
    assert hardware.speed_candidates("auto", "auto") == both + bf16
    assert hardware.speed_candidates("32-true", "auto") == both  # a fixed precision stays
    assert hardware.speed_candidates("auto", False) == [("32-true", False)] + bf16[:1]
    assert hardware.speed_candidates("bf16-mixed", True) == [("bf16-mixed", True)]


def test_the_fastest_is_taken_and_remembered(monkeypatch, tmp_path) -> None:
    seconds = {("32-true", False): 0.30, ("32-true", True): 0.17, ("bf16-mixed", True): 0.25}
    calls: list[tuple] = []

    def fake(model, size, batch, precision, channels_last):
        calls.append((precision, channels_last))
        return seconds[(precision, channels_last)]

    monkeypatch.setattr(hardware, "step_seconds", fake)
    cache = tmp_path / "speed.json"
    cands = list(seconds)
    assert hardware.fastest_settings(nn.Linear(2, 2), 96, 64, cands, str(cache), "k") == (
        "32-true",
        True,
    )
    assert sorted(calls) == sorted(cands)
    assert json.loads(cache.read_text())["k"]["precision"] == "32-true"
    calls.clear()  # the same key again: read back, nothing timed
    assert hardware.fastest_settings(nn.Linear(2, 2), 96, 64, cands, str(cache), "k") == (
        "32-true",
        True,
    )
    assert calls == []
    # the remembered choice is not among these candidates (a fixed setting): timed anew
    fixed = [("32-true", False), ("bf16-mixed", True)]
    assert hardware.fastest_settings(nn.Linear(2, 2), 96, 64, fixed, str(cache), "k") == (
        "bf16-mixed",
        True,
    )
    assert sorted(calls) == sorted(fixed)
    calls.clear()  # another network or input: its own key
    hardware.fastest_settings(nn.Linear(2, 2), 128, 64, cands, str(cache), "other")
    assert len(calls) == 3


def test_timing_leaves_the_model_untouched() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(4, 3))  # fmt: skip
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for precision, channels_last in [("32-true", True), ("bf16-mixed", False)]:
        assert hardware.step_seconds(model, 16, 4, precision, channels_last) > 0
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BN statistics
    assert model[0].weight.is_contiguous()  # still NCHW


def test_planned_steps_keep_short_runs_on_the_rule() -> None:
    dm = SimpleNamespace(partitions={"train": np.arange(1000)})

    def steps(**trainer) -> int:
        cfg = OmegaConf.create(
            {"trainer": {"max_epochs": 10, **trainer}, "data": {"batch_size": 64}}
        )
        return _planned_steps(cfg, dm)

    assert steps() == 10 * 16  # ceil(1000 / 64) batches
    assert steps(limit_train_batches=2) == 20 < MEASURE_MIN_STEPS  # the test tier's runs
    assert steps(limit_train_batches=0.5) == 10 * 8
    assert steps(fast_dev_run=True) == 0
    assert steps(max_epochs=100) >= MEASURE_MIN_STEPS  # a real run measures

"""Same seed, same config, same machine: identical validation metrics, run after run."""

from __future__ import annotations

import pytest

from medcls.utils.hardware import cpu_has_fast_bf16, resolve_precision
from medcls.workflows.train import run_train

PRECISIONS = ["32-true", "bf16-mixed"]


def _val(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if k.startswith("val/")}


def _twice(helpers, *extra: str, epochs: int = 2) -> tuple[dict, dict, list[str]]:
    overrides = helpers.train_overrides(
        f"trainer.max_epochs={epochs}", "++trainer.limit_train_batches=3", "test=false", *extra
    )
    first = run_train(helpers.compose_cfg(overrides))
    second = run_train(helpers.compose_cfg(overrides))
    assert "val/balanced_accuracy" in first and "val/loss" in first
    return first, second, overrides


@pytest.mark.parametrize("precision", PRECISIONS)
def test_same_seed_same_metrics(precision: str, helpers, workdir) -> None:
    first, second, overrides = _twice(
        helpers, "augmentation=none", "model.dropout=0.2", f"trainer.precision={precision}"
    )
    assert _val(first) == _val(second)  # exact, not approximate
    if precision != PRECISIONS[0]:
        return
    other_seed = run_train(helpers.compose_cfg([*overrides, "seed=7"]))
    assert _val(other_seed) != _val(first)  # the seed matters: the comparison can fail


def test_same_seed_same_metrics_with_augmentation(helpers, workdir) -> None:
    first, second, _ = _twice(helpers, "augmentation=strong", "trainer.precision=32-true", epochs=1)
    assert _val(first) == _val(second)


def test_default_precision_is_one_of_the_tested() -> None:
    """``precision: auto`` resolves to one of the precisions tested above on CPU."""
    expected = "bf16-mixed" if cpu_has_fast_bf16() else "32-true"
    assert resolve_precision("auto", "cpu") == expected
    assert expected in PRECISIONS

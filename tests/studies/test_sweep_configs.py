"""sweep_configs: a sweep's jobs grouped by their overrides with the fold left out (one group
per ablation row), in job order; the seed keeps jobs apart (it also seeds the test split)."""

from __future__ import annotations

from pathlib import Path

import pytest

from medcls.errors import DataError
from medcls.studies.sweep_configs import config_key, sweep_configs


def job(root: Path, name: str, overrides: list[str], trained: bool = True) -> None:
    (root / name / ".hydra").mkdir(parents=True)
    (root / name / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if trained:
        (root / name / "checkpoints").mkdir()
        (root / name / "checkpoints" / "best.ckpt").write_bytes(b"")


def test_jobs_grouped_by_configuration_in_job_order(tmp_path: Path) -> None:
    rows = ["no_gap", "full"]
    for n in range(12):  # ablation × fold, as the sweep numbers them (10 sorts after 9)
        job(tmp_path, str(n), [f"ablation={rows[n // 6]}", f"data.fold={n % 6}", "x=1"])
    groups = sweep_configs(str(tmp_path))
    assert list(groups) == ["ablation=no_gap x=1", "ablation=full x=1"]
    assert groups["ablation=no_gap x=1"] == ["0", "1", "2", "3", "4", "5"]
    assert groups["ablation=full x=1"] == ["6", "7", "8", "9", "10", "11"]


def test_untrained_jobs_left_out_and_seed_kept(tmp_path: Path) -> None:
    job(tmp_path, "0", ["seed=1", "data.fold=0"])
    job(tmp_path, "1", ["seed=2", "data.fold=0"])
    job(tmp_path, "2", ["seed=2", "data.fold=1"])
    job(tmp_path, "3", ["seed=2", "data.fold=2"], trained=False)  # failed: no best.ckpt
    assert sweep_configs(str(tmp_path)) == {"seed=1": ["0"], "seed=2": ["1", "2"]}


def test_config_key_ignores_patterns() -> None:
    overrides = ["+ablation=no_dropout", "data.fold=3", "hydra.verbose=true", "model=resnet50"]
    assert config_key(overrides) == "+ablation=no_dropout hydra.verbose=true model=resnet50"
    assert config_key(overrides, ["data.fold", "hydra.*"]) == "+ablation=no_dropout model=resnet50"


def test_missing_records_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no <job>/checkpoints/best.ckpt"):
        sweep_configs(str(tmp_path))
    (tmp_path / "0" / "checkpoints").mkdir(parents=True)
    (tmp_path / "0" / "checkpoints" / "best.ckpt").write_bytes(b"")
    with pytest.raises(DataError, match=r"0/.hydra/overrides.yaml not found.*output_subdir"):
        sweep_configs(str(tmp_path))

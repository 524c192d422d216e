"""``medcls-train``: one training run, or a sweep with ``-m``."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from medcls.config import CONFIG_DIR, run_guarded


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    from medcls.workflows.train import run_train

    metrics = run_guarded(run_train, cfg)
    metric = cfg.get("optimized_metric")
    return metrics.get(metric) if metric and metrics else None


if __name__ == "__main__":
    main()

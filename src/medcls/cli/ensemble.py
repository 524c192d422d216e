"""``medcls-ensemble sweep_dir=... | checkpoints=[...] | run_ids=[...] [eval.tta=[hflip,vflip]]``;
``per_config=true``: one ensemble per configuration of the sweep (its folds)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from medcls.config import CONFIG_DIR, run_guarded


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="ensemble")
def main(cfg: DictConfig) -> None:
    from medcls.workflows.ensemble import run_ensemble, run_ensembles_per_config

    per_config = cfg.get("per_config") and cfg.get("sweep_dir")
    run_guarded(run_ensembles_per_config if per_config else run_ensemble, cfg)


if __name__ == "__main__":
    main()

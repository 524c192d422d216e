"""``medcls-ensemble sweep_dir=... | checkpoints=[...] | run_ids=[...] [tta=[hflip,vflip]]``."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from medcls.config import CONFIG_DIR, run_guarded


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="ensemble")
def main(cfg: DictConfig) -> None:
    from medcls.workflows.ensemble import run_ensemble

    run_guarded(run_ensemble, cfg)


if __name__ == "__main__":
    main()

"""``medcls-eval ckpt_path=... data=...``: evaluate a checkpoint on any configured dataset."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from medcls.config import CONFIG_DIR, run_guarded


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="eval")
def main(cfg: DictConfig) -> None:
    from medcls.workflows.evaluate import run_eval

    run_guarded(run_eval, cfg)


if __name__ == "__main__":
    main()

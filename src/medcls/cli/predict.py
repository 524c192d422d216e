"""``medcls-predict ckpt_path=... input=<folder or image>``: per-class probabilities as CSV."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from medcls.config import CONFIG_DIR, run_guarded


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="predict")
def main(cfg: DictConfig) -> None:
    from medcls.workflows.predict import run_predict

    run_guarded(run_predict, cfg)


if __name__ == "__main__":
    main()

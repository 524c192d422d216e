"""``medcls-report experiment_name=... [parent_run_id=... | sweep_dir=...]``: a study's table."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from medcls.config import CONFIG_DIR, run_guarded


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="report")
def main(cfg: DictConfig) -> None:
    from medcls.workflows.report import run_report

    run_guarded(run_report, cfg)


if __name__ == "__main__":
    main()

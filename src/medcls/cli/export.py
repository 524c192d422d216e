"""``medcls-export ckpt_path=... format=onnx|torchscript``: a checkpoint as a deployable file."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from medcls.config import CONFIG_DIR, run_guarded


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="export")
def main(cfg: DictConfig) -> None:
    from medcls.workflows.export import run_export

    run_guarded(run_export, cfg)


if __name__ == "__main__":
    main()

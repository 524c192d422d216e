"""An attention EfficientNetV2 run's checkpoint rebuilds (surgery included) for evaluation and
gives the training run's test predictions back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from medcls.models import NonLocalBlock
from medcls.tasks.checkpoint import load_task
from medcls.workflows.evaluate import run_eval
from medcls.workflows.train import run_train


def test_attention_checkpoint_round_trip(helpers, workdir: Path) -> None:
    cfg = helpers.compose_cfg(
        helpers.train_overrides(
            "model=attention_effnetv2",
            "model.name=test_efficientnet",  # the timm test EfficientNet: two SE stages
            "model.nonlocal_reduction=4",
            "trainer.max_epochs=1",
        )
    )
    run_train(cfg)
    ckpt = Path(cfg.paths.output_dir) / "checkpoints" / "best.ckpt"
    task, meta = load_task(str(ckpt))
    assert meta["model"]["nonlocal_stages"] == "all"
    blocks = [m for m in task.modules() if isinstance(m, NonLocalBlock)]
    assert len(blocks) == 2 and blocks[0].inter_channels == blocks[0].channels // 4

    trained = pd.read_csv(Path(cfg.paths.output_dir) / "test_predictions.csv")
    eval_cfg = helpers.compose_cfg(
        [
            f"ckpt_path={ckpt}",
            "print_config=false",
            "logger=none",
            "trainer.precision=32-true",
            "++trainer.enable_progress_bar=false",
            *helpers.TINY_SYNTHETIC,
        ],
        config_name="eval",
    )
    run_eval(eval_cfg)
    evaluated = pd.read_csv(Path(eval_cfg.paths.output_dir) / "test_predictions.csv")
    probs = [c for c in trained.columns if c.startswith("p_")]
    np.testing.assert_allclose(
        evaluated.sort_values("path")[probs].to_numpy(),
        trained.sort_values("path")[probs].to_numpy(),
        atol=1e-4,
    )

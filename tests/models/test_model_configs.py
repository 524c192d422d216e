"""Every ``conf/model`` entry of the backbone study composes with its experiment and builds a
network that classifies 64 px images (no pretrained weights: tests stay offline)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from medcls.config import CONFIG_DIR
from medcls.models import NonLocalBlock, create_model

MODELS = sorted(p.stem for p in Path(CONFIG_DIR, "model").glob("*.yaml") if p.stem != "timm")
STUDY = [
    "regnet",
    "densenet",
    "shufflenet",
    "alexnet",
    "vgg",
    "googlenet",
    "mobilenet",
    "resnet50",
    "efficientnet_b0",
    "efficientnetv2",
    "attention_effnetv2",
]


def test_the_study_sweeps_every_family(helpers) -> None:
    cfg = helpers.compose_cfg(["experiment=isic2019_backbones"])
    assert set(STUDY) <= set(MODELS)
    assert cfg.data.name == "isic2019" and cfg.augmentation.name == "seed_isic2019"
    assert cfg.data.normalize == "dataset" and cfg.model.pretrained
    assert (cfg.data.test_fraction, cfg.data.val_fraction) == (0.2, 0.1)
    # the sweep (hydra.sweeper.params) is Hydra's own node, read from the file itself
    exp = OmegaConf.load(Path(CONFIG_DIR, "experiment", "isic2019_backbones.yaml"))
    assert exp.hydra.sweeper.params.model.split(",") == STUDY


@pytest.mark.parametrize("model", MODELS)
def test_model_config_builds(helpers, model: str) -> None:
    cfg = helpers.compose_cfg(
        ["experiment=isic2019_backbones", f"model={model}", "model.pretrained=false"]
    )
    assert cfg.tags.backbone == model and cfg.run_name == f"{model}-isic2019"
    kwargs = OmegaConf.to_container(cfg.model, resolve=True)
    net = create_model(**kwargs, num_classes=8, image_size=64).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 3, 64, 64)).shape == (1, 8)
    has_nonlocal = any(isinstance(m, NonLocalBlock) for m in net.modules())
    assert has_nonlocal == (model == "attention_effnetv2")

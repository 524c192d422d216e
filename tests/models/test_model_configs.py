"""Every ``conf/model`` entry of the backbone study composes with its experiment and builds a
network that classifies 64 px images (no pretrained weights: tests stay offline)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import OmegaConf

from medcls.config import CONFIG_DIR
from medcls.models import NonLocalBlock, create_model

MODELS = sorted(p.stem for p in Path(CONFIG_DIR, "model").glob("*.yaml"))
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


def sweep_jobs(cli: list[str]) -> list[list[str]]:
    """The jobs ``medcls-train -m *cli`` launches, expanded as Hydra's BasicSweeper.sweep does
    (the composed hydra.sweeper.params, then the command line, which wins), without running
    them."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        cfg = loader.load_configuration("train", cli, run_mode=RunMode.MULTIRUN)
        params = [f"{k}={v}" for k, v in cfg.hydra.sweeper.params.items()]
        overrides = OverridesParser.create(config_loader=loader).parse_overrides([*params, *cli])
    [batch] = BasicSweeper.split_arguments(overrides, max_batch_size=None)
    return batch


def job_models(jobs: list[list[str]]) -> list[str]:
    return [o.removeprefix("model=") for job in jobs for o in job if o.startswith("model=")]


def test_the_experiment_sweep_runs_exactly_the_paper_backbones() -> None:
    assert job_models(sweep_jobs(["experiment=isic2019_backbones"])) == STUDY


def test_glob_over_models_runs_every_model_config_and_nothing_else(helpers) -> None:
    # conf/model/base/timm.yaml (name: ???) must not become a job: it failed at run time.
    jobs = sweep_jobs(["experiment=isic2019_backbones", "model=glob(*)"])
    assert job_models(jobs) == MODELS and len(jobs) == len(MODELS)
    for job in jobs:
        cfg = helpers.compose_cfg(job)
        assert not OmegaConf.is_missing(cfg.model, "name"), job
        assert isinstance(cfg.model.name, str) and cfg.model.name, job


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

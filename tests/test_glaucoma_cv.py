"""``experiment=glaucoma_cv`` (papers/002): fundus preprocessing, label smoothing, AugMix,
4 folds, AUC; every backbone of the study builds at the data's image size (ViTs included)."""

from __future__ import annotations

import timm
import torch

from medcls.data.preprocess import Preprocess
from medcls.data.transforms import create_transform
from medcls.models import create_model
from medcls.models.timm_backbone import input_size_kwargs
from medcls.tasks.factory import create_task_model

BACKBONES = [
    "efficientnet_b0",
    "efficientnet_b2",
    "resnext50_32x4d",
    "resnest50d",
    "deit_small_patch16_224",
    "deit_base_patch16_224",
]


def test_the_experiment_composes_the_papers_recipe(helpers) -> None:
    cfg = helpers.compose_cfg(["experiment=glaucoma_cv"])
    helpers.resolved_ok(cfg)
    pre = Preprocess.from_cfg(cfg.data)
    assert pre.crop_black_border and 0 < pre.center_crop_fraction < 1
    assert cfg.data.name == "glaucoma_airogs" and cfg.data.positive_class == "RG"
    assert cfg.data.num_folds == 4 and cfg.monitor == "val/auroc_positive"
    assert cfg.loss.label_smoothing > 0 and cfg.model.name == "efficientnet_b0"
    t = create_transform(cfg.augmentation.train)
    assert [type(op).__name__ for op in t.transforms] == [
        "HorizontalFlip",
        "VerticalFlip",
        "AugMix",
    ]


def test_every_backbone_of_the_study_is_a_timm_model() -> None:
    assert all(timm.is_model(name) for name in BACKBONES)


def test_vits_are_built_at_the_data_image_size(helpers) -> None:
    assert input_size_kwargs("deit_small_patch16_224", 64) == {"img_size": 64}
    assert input_size_kwargs("resnet18", 64) == {}  # CNNs take any size
    assert input_size_kwargs("no_such_model", 64) == {}
    cfg = helpers.compose_cfg(
        ["experiment=glaucoma_cv", "model.name=deit_small_patch16_224", "data.image_size=32"]
    )
    model_cfg = {**helpers.resolved_ok(cfg)["model"], "pretrained": False}
    model = create_task_model(None, model_cfg, num_classes=2, image_size=32).eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 2)
    assert model.backbone.patch_embed.img_size == (32, 32)


def test_an_explicit_img_size_wins() -> None:
    model = create_model(
        "deit_tiny_patch16_224", 2, image_size=32, timm_kwargs={"img_size": 48}
    ).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 48, 48)).shape == (1, 2)


def test_cnn_backbones_of_the_study_classify_small_images() -> None:
    for name in ("efficientnet_b0", "resnest50d"):
        model = create_model(name, 2, image_size=32).eval()
        with torch.no_grad():
            assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 2), name

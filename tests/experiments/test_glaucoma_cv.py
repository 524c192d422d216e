"""``experiment=glaucoma_cv`` (papers/002): fundus preprocessing, label smoothing, AugMix,
4 folds, AUC; every backbone of the study (its ``study_backbones``) builds at the data's image
size (ViTs included); medcls-report shows AUC first and the fold ensemble's row."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import timm
import torch

from medcls.data.preprocess import Preprocess
from medcls.data.transforms import create_transform
from medcls.models import create_model
from medcls.models.timm_backbone import input_size_kwargs
from medcls.studies.report import runs_table, summarize
from medcls.tasks.factory import create_task_model
from medcls.workflows.report import _display_names


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


def study_backbones() -> list[str]:
    from omegaconf import OmegaConf

    from medcls.config import CONFIG_DIR

    return list(OmegaConf.load(f"{CONFIG_DIR}/experiment/glaucoma_cv.yaml").study_backbones)


def test_the_study_lists_its_backbones(helpers) -> None:
    names = study_backbones()
    cfg = helpers.compose_cfg(["experiment=glaucoma_cv"])
    assert names[0] == cfg.model.name  # the default is one of them
    assert {"efficientnet_b6", "deit_base_patch16_224"} <= set(names) and len(set(names)) == 7


@pytest.mark.parametrize("name", study_backbones())
def test_every_backbone_of_the_study_builds(helpers, name) -> None:
    """Each listed name, set as ``model.name`` on the experiment, is a timm model that builds
    (random weights) and classifies at a small data.image_size (ViTs at that size too)."""
    assert timm.is_model(name), name
    cfg = helpers.compose_cfg(
        ["experiment=glaucoma_cv", f"model.name={name}", "data.image_size=32"]
    )
    model_cfg = {**helpers.resolved_ok(cfg)["model"], "pretrained": False}
    model = create_task_model(None, model_cfg, num_classes=2, image_size=32).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 2)


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


def cv_run(run_id: str, fold: int | None, auc: float, start: int) -> SimpleNamespace:
    """A fold run of ``medcls-cv k=4 experiment=glaucoma_cv``, or (``fold=None``) the fold
    ensemble medcls-cv runs after it (``medcls-ensemble per_config=true``)."""
    common = "experiment=glaucoma_cv data.root=/data/airogs data.num_folds=4"
    tags = {"mlflow.runName": run_id}
    if fold is None:
        tags.update(
            {"medcls.role": "ensemble", "medcls.config": common, "tta": "hflip",
             "checkpoints": " ".join(f"{j}/checkpoints/best.ckpt" for j in range(4))}
        )  # fmt: skip
    else:
        tags["overrides"] = f"{common} data.fold={fold}"
    metrics = {"test/auroc_positive": auc, "test/sensitivity": 0.5, "test/specificity": 0.9}
    return SimpleNamespace(
        info=SimpleNamespace(run_id=run_id, start_time=start),
        data=SimpleNamespace(tags=tags, metrics=metrics),
    )


def test_the_report_shows_auc_first_and_the_fold_ensemble(helpers) -> None:
    cfg = helpers.compose_cfg(["experiment=glaucoma_cv"], config_name="report")
    assert cfg.experiment_name == "glaucoma_cv"
    metrics = list(cfg.metrics)
    assert metrics == [
        "test/auroc_positive",
        "test/sensitivity",
        "test/specificity",
        "test/accuracy",
        "test/balanced_accuracy",
    ]
    assert cfg.ensemble == "rows" and not cfg.latest_sweep and cfg.label_tag is None
    runs = [cv_run(f"f{j}", j, 0.80 + j / 100, j) for j in range(4)] + [cv_run("e", None, 0.9, 9)]
    table = runs_table(runs, metrics, list(cfg.ignore_keys), cfg.label_tag, cfg.ensemble)
    summary = summarize(table, metrics)
    shown, names = _display_names(summary, metrics, dict(cfg.metric_names))
    assert names[0] == "AUC" and len(shown) == 2
    folds, ensemble = shown.index
    assert ensemble == "ensemble (4 models) hflip" and "data.fold" not in folds
    assert shown.loc[folds, "runs"] == 4 and shown.loc[ensemble, "AUC"] == 0.9
    assert shown.loc[folds, "AUC"] == pytest.approx(0.815)

"""Every config in conf/ composes and resolves; every data source, head variant, loss and
augmentation trains end to end (``fast_dev_run``) from the real configs."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from medcls.config import CONFIG_DIR
from medcls.workflows.common import build_datamodule
from medcls.workflows.train import run_train

GROUPS = sorted(
    d for d in os.listdir(CONFIG_DIR) if os.path.isdir(os.path.join(CONFIG_DIR, d)) and d != "hydra"
)
TRAIN_GROUPS = [g for g in GROUPS if g != "paths"]


def options(group: str) -> list[str]:
    return sorted(
        n[:-5]
        for n in os.listdir(os.path.join(CONFIG_DIR, group))
        if n.endswith(".yaml") and not n.startswith("_")
    )


ALL_OPTIONS = [(g, o) for g in TRAIN_GROUPS for o in options(g)]

# Keys a config leaves as ??? (the user must give them).
REQUIRED = {
    "imagefolder": ["data.root=/data/folder"],
    "dicom": ["data.root=/data/ct"],
    "nifti": ["data.root=/data/volumes"],
    "isic_csv": ["data.csv=gt.csv", "data.images_dir=images"],
}


def test_every_group_has_options() -> None:
    expected = {"data", "augmentation", "model", "loss", "optimizer", "scheduler", "trainer"}
    expected |= {"callbacks", "logger", "experiment", "hparams_search", "paths"}
    assert expected <= set(GROUPS)
    assert "_common" not in options("data")
    assert {"synthetic", "imagefolder", "glaucoma", "ham10000", "isic_csv", "covid_ct"} <= set(
        options("data")
    )


@pytest.mark.parametrize(("group", "option"), ALL_OPTIONS, ids=[f"{g}={o}" for g, o in ALL_OPTIONS])
def test_train_config_composes_and_resolves(
    group: str, option: str, workdir: Path, helpers
) -> None:
    cfg = helpers.compose_cfg([f"{group}={option}", *REQUIRED.get(option, [])])
    container = helpers.resolved_ok(cfg)
    assert container["paths"]["output_dir"].startswith(str(workdir))
    assert container["paths"]["root_dir"] == str(workdir)
    if group == "data":
        assert container["data"]["source"] in {
            "synthetic",
            "imagefolder",
            "ham10000",
            "isic_csv",
            "covid_ct",
            "combined",  # several of the above (data.sources), tests/data/test_combined.py
            "dicom",  # CT series, tests/data/medical/test_ct_sources.py
            "nifti",  # CT volumes, the same
        }
        assert container["data"]["name"] not in (None, "???")
    elif group in ("model", "loss", "augmentation"):
        assert container[group]["name"]
    elif group == "experiment":
        assert option.split("_")[0] in cfg.experiment_name  # e.g. abn_covid_ct → abn-covid_ct
    elif group == "callbacks" and option == "default":
        ckpt = container["callbacks"]["model_checkpoint"]
        assert ckpt["dirpath"] == os.path.join(container["paths"]["output_dir"], "checkpoints")
        assert ckpt["monitor"] == "val/balanced_accuracy"
    elif group == "scheduler" and option == "cosine":
        assert container["scheduler"]["T_max"] == container["trainer"]["max_epochs"]


@pytest.mark.parametrize("option", options("data"))
def test_eval_config_composes_for_every_dataset(option: str, workdir: Path, helpers) -> None:
    cfg = helpers.compose_cfg(
        [f"data={option}", "ckpt_path=/x/best.ckpt", *REQUIRED.get(option, [])],
        config_name="eval",
    )
    container = helpers.resolved_ok(cfg)
    assert container["split"] == "test"
    assert container["run_name"] == f"eval-{container['data']['name']}"


def test_predict_config_composes(workdir: Path, helpers) -> None:
    cfg = helpers.compose_cfg(["ckpt_path=/x/best.ckpt", "input=/x/images"], config_name="predict")
    assert helpers.resolved_ok(cfg)["output"] == "predictions.csv"


def test_paths_follow_the_working_directory(workdir: Path, helpers) -> None:
    cfg = helpers.compose_cfg()
    assert cfg.paths.log_dir == str(workdir / "outputs")
    assert cfg.paths.cache_dir == str(workdir / ".cache" / "medcls")
    assert cfg.logger.mlflow.tracking_uri == "sqlite:///mlflow.db"


# ----------------------------------------------------------------------------- fast_dev_run
DATA = {
    "synthetic": [],
    "imagefolder": ["data=imagefolder", "data.root={imagefolder}"],
    "glaucoma": ["data=glaucoma", "data.root={glaucoma}"],
    "ham10000": [
        "data=ham10000",
        "data.root={ham10000}",
        "data.classes=[bkl,mel,nv]",  # the tiny set is a subset of the seven
        "data.load_masks=true",
    ],
    "isic_csv": [
        "data=isic_csv",
        "data.root={isic_csv}",
        "data.csv=GroundTruth.csv",
        "data.images_dir=images",
        "data.classes=[MEL,NV,BCC]",  # its UNK column has no images
    ],
    "covid_ct": ["data=covid_ct", "data.root={covid_ct}"],
}
VARIANTS = {
    **{f"data-{k}": v for k, v in DATA.items()},
    "head-gap": ["model.pool=gap"],
    "head-flatten": ["model.pool=flatten", "data.image_size=64"],
    "head-dropout": ["model.dropout=0.5"],
    "head-hidden": ["model.hidden=[16,8]"],
    "head-freeze": ["model.freeze_backbone_epochs=1"],
    "model-resnet10t": ["model.name=resnet10t"],
    # the ABN losses train an Attention Branch Network (task=abn) over a ResNet
    **{
        f"loss-{o}": [f"loss={o}", *(["task=abn", "model.name=resnet10t"] if "abn" in o else [])]
        for o in options("loss")
    },
    "loss-focal-weighted": ["loss=focal", "loss.class_weights=inverse_sqrt"],
    **{f"augmentation-{o}": [f"augmentation={o}"] for o in options("augmentation")},
    "sgd-no-scheduler-no-callbacks-csv": [
        "optimizer=sgd",
        "scheduler=none",
        "callbacks=none",
        "logger=csv",
    ],
    "precision-auto": ["trainer.precision=auto"],
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_fast_dev_run(
    variant: str, workdir: Path, datasets: dict[str, Path], cache_dir: Path, helpers
) -> None:
    extra = [o.format(**datasets) for o in VARIANTS[variant]]
    cfg = helpers.compose_cfg(
        helpers.train_overrides("++trainer.fast_dev_run=true", *extra, cache=cache_dir)
    )
    helpers.resolved_ok(cfg)
    metrics = run_train(cfg)

    for key in ("val/balanced_accuracy", "test/balanced_accuracy", "test/auroc_macro"):
        assert key in metrics, sorted(metrics)
    out = Path(cfg.paths.output_dir)
    helpers.assert_metrics_match_predictions(metrics, out / "test_predictions.csv")
    preds = pd.read_csv(out / "test_predictions.csv")
    dm = build_datamodule(cfg)
    dm.setup()
    assert len(preds) == min(len(dm.partitions["test"]), cfg.data.batch_size)  # one batch
    probs = preds[[f"p_{c}" for c in dm.class_names]].to_numpy()
    assert probs.sum(axis=1) == pytest.approx(1.0, abs=1e-4)
    assert (out / "confusion_matrix.png").stat().st_size > 0
    assert (out / "test_set_isic.csv").is_file()
    if variant.startswith("augmentation-"):
        ops = OmegaConf.to_container(cfg.augmentation.train, resolve=True)
        assert (dm.train_transform is None) == (not ops)
    if variant == "data-covid_ct":
        assert dm.class_names == ["CT_NonCOVID", "CT_COVID"]
        assert cfg.data.grayscale
    if variant == "data-ham10000":
        assert dm.decoded.has_mask.all()


def test_fast_dev_run_logs_to_mlflow(workdir: Path, mlflow_uri: str, helpers) -> None:
    from mlflow.tracking import MlflowClient

    cfg = helpers.compose_cfg(
        helpers.train_overrides(
            "++trainer.fast_dev_run=true", *helpers.mlflow_overrides(mlflow_uri, "fast-dev-run")
        )
    )
    run_train(cfg)
    client = MlflowClient(tracking_uri=mlflow_uri)
    exp = client.get_experiment_by_name("fast-dev-run")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.data.params["model.name"] == "test_efficientnet"
    assert run.data.tags["dataset"] == "synthetic"
    assert run.data.tags["model"] == "test_efficientnet"
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"resolved_config.yaml", "test_predictions.csv", "confusion_matrix.png"} <= names

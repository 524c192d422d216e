"""experiment=ham10000_ablation composes the paper's set-up (ResNet-50, GAP + dropout + two
dense layers, class-weighted focal loss, crop/flip/rotate/cutout, lesion-grouped 5-fold CV), and
each conf/ablation option switches exactly one technique off; ham10000_backbones sweeps the four
base networks. (Training on real data: tests/realdata/test_ham10000_ablation.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from medcls.config import CONFIG_DIR
from medcls.losses import FocalLoss, class_weights, create_loss
from medcls.models import create_model

ROWS = sorted(p.stem for p in Path(CONFIG_DIR, "ablation").glob("*.yaml"))
# what each row changes, as (config key, value); "full" changes nothing
SWITCHED = {
    "no_dropout": ("model.dropout", 0.0),
    "no_augmentation": ("augmentation.train", []),
    "no_class_weights": ("loss.class_weights", None),
    "no_focal": ("loss.gamma", 0.0),
    "no_dense": ("model.hidden", []),
    "no_gap": ("model.pool", "flatten"),
}
LABELS = {
    "full": "full",
    "no_dropout": "no dropout",
    "no_augmentation": "no augmentation",
    "no_class_weights": "no class weights",
    "no_focal": "no focal loss",
    "no_dense": "no dense layers",
    "no_gap": "no GAP",
}


def compose(helpers, *overrides: str):
    cfg = helpers.compose_cfg(["experiment=ham10000_ablation", *overrides])
    return OmegaConf.to_container(cfg, resolve=True)


def test_full_configuration(helpers, workdir) -> None:
    cfg = compose(helpers)
    assert cfg["data"]["name"] == "ham10000" and cfg["data"]["num_folds"] == 5
    assert cfg["data"]["test_fraction"] == 0.2 and cfg["data"]["image_size"] == 224
    assert cfg["model"]["name"] == "resnet50" and cfg["model"]["pretrained"]
    assert (cfg["model"]["pool"], cfg["model"]["dropout"], cfg["model"]["hidden"]) == (
        "gap",
        0.5,
        [512],
    )
    assert cfg["loss"]["name"] == "focal" and cfg["loss"]["gamma"] == 2.0
    assert cfg["loss"]["class_weights"] == "inverse"
    ops = [next(iter(op)) for op in cfg["augmentation"]["train"]]
    assert ops == ["RandomResizedCrop", "HorizontalFlip", "VerticalFlip", "Rotate", "CoarseDropout"]
    assert cfg["tags"]["ablation"] == "full" and cfg["run_name"] == "full-resnet50-fold0"
    assert cfg["experiment_name"] == "ham10000-ablation"


def test_the_sweep_covers_every_row_and_five_folds() -> None:
    exp = OmegaConf.load(Path(CONFIG_DIR, "experiment", "ham10000_ablation.yaml"))
    params = exp.hydra.sweeper.params
    assert sorted(params.ablation.split(",")) == ROWS == sorted(LABELS)
    assert params.ablation.split(",")[-1] == "full" and params["data.fold"] == "range(0,5)"


@pytest.mark.parametrize("row", ROWS)
def test_each_row_switches_one_thing_off(helpers, workdir, row: str) -> None:
    full, cfg = compose(helpers), compose(helpers, f"ablation={row}")
    assert cfg["tags"]["ablation"] == LABELS[row]
    changed = {
        f"{group}.{k}"
        for group in ("model", "loss", "augmentation", "data", "optimizer", "trainer")
        for k in set(full[group]) | set(cfg[group])
        if full[group].get(k) != cfg[group].get(k) and k != "default_root_dir"  # the run dir
    }
    if row == "full":
        assert changed == set()
        return
    key, value = SWITCHED[row]
    group, name = key.split(".")
    assert cfg[group][name] == value
    # augmentation=none also renames the pipeline; nothing else moves
    assert changed == {key} | ({"augmentation.name", "augmentation.eval"} & changed)


@pytest.mark.parametrize(
    ("row", "n_linear", "dropout", "flatten_width"),
    [("full", 2, 0.5, None), ("no_dropout", 2, 0.0, None), ("no_dense", 1, 0.5, None),
     ("no_gap", 2, 0.5, 512 * 2 * 2)],
)  # fmt: skip
def test_heads_of_the_rows(helpers, workdir, row, n_linear, dropout, flatten_width) -> None:
    """ResNet-18 stands in for ResNet-50 (same head switches), 64 px, no download."""
    model = compose(helpers, f"ablation={row}", "model.name=resnet18", "model.pretrained=false")
    net = create_model(**model["model"], num_classes=7, image_size=64).eval()
    linears = [m for m in net.head.modules() if isinstance(m, nn.Linear)]
    drops = [m for m in net.head.modules() if isinstance(m, nn.Dropout)]
    assert len(linears) == n_linear and {d.p for d in drops} == {dropout}
    assert linears[0].in_features == (flatten_width or 512)  # GAP: one value per channel
    assert linears[-1].out_features == 7
    with torch.no_grad():
        assert net(torch.randn(2, 3, 64, 64)).shape == (2, 7)


def test_losses_of_the_rows(helpers, workdir) -> None:
    """Class weights come from the training partition's counts; "no focal loss" is the
    class-weighted cross-entropy itself."""
    counts = [262, 411, 879, 92, 890, 5364, 114]
    g = torch.Generator().manual_seed(0)
    logits, target = torch.randn(64, 7, generator=g) * 2, torch.randint(0, 7, (64,), generator=g)
    full = create_loss(OmegaConf.create(compose(helpers)["loss"]), counts)
    assert isinstance(full, FocalLoss) and full.gamma == 2.0
    assert torch.allclose(full.weight, class_weights(counts, "inverse"))
    no_focal = create_loss(OmegaConf.create(compose(helpers, "ablation=no_focal")["loss"]), counts)
    assert no_focal(logits, target).item() == pytest.approx(
        F.cross_entropy(logits, target, weight=class_weights(counts, "inverse")).item(), rel=1e-5
    )
    no_cw = create_loss(
        OmegaConf.create(compose(helpers, "ablation=no_class_weights")["loss"]), counts
    )
    assert no_cw.weight is None and no_cw.gamma == 2.0


def test_backbones_experiment(helpers, workdir) -> None:
    exp = OmegaConf.load(Path(CONFIG_DIR, "experiment", "ham10000_backbones.yaml"))
    models = exp.hydra.sweeper.params.model.split(",")
    assert models == ["resnet50", "vgg", "mobilenet", "efficientnet_b1"]
    names = []
    for m in models:
        cfg = helpers.compose_cfg(["experiment=ham10000_backbones", f"model={m}"])
        assert cfg.tags.backbone == m and cfg.loss.name == "focal"
        assert (cfg.model.pool, cfg.model.dropout, list(cfg.model.hidden)) == ("gap", 0.5, [512])
        names.append(cfg.model.name)
    assert names == ["resnet50", "vgg16_bn", "mobilenetv1_100", "efficientnet_b1"]

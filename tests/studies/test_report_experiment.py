"""medcls-report for a study defined by a training experiment: ``experiment=isic2019_backbones``
sets the MLflow experiment and the Table-2 layout; configurations are named by a tag (the
backbone), runs of the newest sweep only."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
from omegaconf import OmegaConf

from medcls.studies.report import latest_sweep, runs_table
from medcls.workflows.report import _display_names

IGNORE = ["data.fold", "seed", "hydra.*"]


def _run(run_id: str, start: int, overrides: str, backbone: str | None, acc: float, role=None):
    tags = {"overrides": overrides, "mlflow.runName": run_id}
    if backbone:
        tags["backbone"] = backbone
    if role:
        tags["medcls.role"] = role
    return SimpleNamespace(
        info=SimpleNamespace(run_id=run_id, start_time=start),
        data=SimpleNamespace(tags=tags, metrics={"test/accuracy": acc}),
    )


def test_report_config_from_the_training_experiment(helpers) -> None:
    cfg = helpers.compose_cfg(["experiment=isic2019_backbones"], config_name="report")
    assert cfg.experiment_name == "backbones-isic2019"
    assert list(cfg.metrics) == [
        "test/accuracy",
        "test/precision_macro",
        "test/recall_macro",
        "test/f1_macro",
    ]
    assert cfg.layout == "metrics_as_rows" and cfg.label_tag == "backbone" and cfg.latest_sweep
    assert OmegaConf.to_container(cfg.metric_names)["test/f1_macro"] == "F1-score"
    ham = helpers.compose_cfg(
        ["experiment=isic2019_backbones", "data=ham10000", "layout=configs_as_rows"],
        config_name="report",
    )
    assert ham.experiment_name == "backbones-ham10000"  # the study's HAM10000 variant
    assert ham.layout == "configs_as_rows"  # the command line wins over the experiment
    plain = helpers.compose_cfg([], config_name="report")
    assert plain.label_tag is None and not plain.latest_sweep
    assert plain.layout == "configs_as_rows" and "test/balanced_accuracy" in plain.metrics


def test_configurations_named_by_tag_in_start_order() -> None:
    common = "experiment=isic2019_backbones data=ham10000 data.image_size=64"
    runs = [
        _run("r2", 2, f"model=alexnet {common}", "alexnet", 0.5),
        _run("r1", 1, f"model=shufflenet {common}", "shufflenet", 0.6),
        _run("r3", 3, f"model=alexnet {common} seed=2", "alexnet", 0.7),
    ]
    table = runs_table(runs, ["test/accuracy"], IGNORE, label_tag="backbone")
    assert table["config"].tolist() == ["shufflenet", "alexnet", "alexnet"]  # seeds pooled
    assert list(table.columns) == ["config", "run_id", "test/accuracy"]


def test_runs_that_differ_beyond_the_tag_stay_apart() -> None:
    runs = [
        _run("a", 1, "model=vgg data.image_size=64", "vgg", 0.5),
        _run("b", 2, "model=vgg data.image_size=128", "vgg", 0.6),
        _run("c", 3, "model=resnet50 data.image_size=64", None, 0.6),  # untagged: overrides
    ]
    table = runs_table(runs, ["test/accuracy"], IGNORE, label_tag="backbone")
    assert table["config"].tolist() == [
        "vgg data.image_size=64",
        "vgg data.image_size=128",
        "model=resnet50 data.image_size=64",
    ]


def test_latest_sweep_is_the_newest_parent_run() -> None:
    runs = [  # as MLflow returns them: newest first
        _run("job", 5, "", "x", 0.1),
        _run("sweep2", 4, "", None, 0.0, role="sweep"),
        _run("sweep1", 1, "", None, 0.0, role="sweep"),
    ]

    class Client:
        def get_experiment_by_name(self, name):
            return SimpleNamespace(experiment_id="1") if name == "study" else None

        def search_runs(self, ids, order_by=None, max_results=None):
            assert order_by == ["attributes.start_time DESC"]
            return runs

    assert latest_sweep(Client(), "study") == "sweep2"
    assert latest_sweep(Client(), "other") is None


def test_display_names() -> None:
    summary = pd.DataFrame(
        {"runs": [1], "test/accuracy": [0.5], "test/accuracy std": [float("nan")],
         "test/accuracy n": [1]}, index=["a"],
    )  # fmt: skip
    shown, metrics = _display_names(summary, ["test/accuracy"], {"test/accuracy": "Acc"})
    assert metrics == ["Acc"] and list(shown.columns) == ["runs", "Acc", "Acc std", "Acc n"]

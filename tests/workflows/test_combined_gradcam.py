"""One short training run on data=combined (two image folders with different label names, one
capped) with Grad-CAM overlays on: per-source test metrics in MLflow and the CSVs, overlays as
artifacts; then, on its checkpoint, medcls-ensemble and medcls-eval (per-source metrics too,
eval with cam.num_images) and medcls-predict cam.num_images=-1."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from medcls.explain.overlays import CAPTION, TILE
from medcls.workflows.ensemble import run_ensemble
from medcls.workflows.evaluate import run_eval
from medcls.workflows.predict import run_predict
from medcls.workflows.train import run_train

SOURCES = {"a": [("NRG", 24), ("RG", 12)], "b": [("healthy", 12), ("Glaucoma", 12)]}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, helpers, mlflow_uri) -> dict:
    base = tmp_path_factory.mktemp("combined_run")
    rng = np.random.default_rng(1)
    for src, classes in SOURCES.items():
        for label, (c, n) in enumerate(classes):
            for i in range(n):
                helpers.write_image(base / src / c / f"{src}{c}{i:03d}.jpg", rng, label)
    data = [
        "data=combined",
        "data.classes=[normal,glaucoma]",
        "+data@data.sources.a=imagefolder",
        f"data.sources.a.root={base / 'a'}",
        "+data.sources.a.class_map={NRG: normal, RG: glaucoma}",
        "+data.sources.a.max_per_class=16",
        "+data@data.sources.b=imagefolder",
        f"data.sources.b.root={base / 'b'}",
        "+data.sources.b.class_map={healthy: normal}",  # Glaucoma: matched by name
    ]
    with helpers.chdir(base):
        cfg = helpers.compose_cfg(
            helpers.train_overrides(
                *data,
                "data.image_size=64",
                "trainer.max_epochs=1",
                "cam.num_images=4",
                *helpers.mlflow_overrides(mlflow_uri, "combined-gradcam"),
            )
        )
        metrics = run_train(cfg)
    out = Path(cfg.paths.output_dir)
    client = MlflowClient(tracking_uri=mlflow_uri)
    exp = client.get_experiment_by_name("combined-gradcam")
    (run,) = client.search_runs([exp.experiment_id])
    return {
        "base": base,
        "out": out,
        "metrics": metrics,
        "client": client,
        "run": run,
        "data": data,
        "ckpt": out / "checkpoints" / "best.ckpt",
    }


PER_SOURCE = ("test/a/auroc_macro", "test/b/balanced_accuracy", "test/b/sensitivity")


def test_metrics_per_source_and_overall(trained) -> None:
    m, logged = trained["metrics"], trained["run"].data.metrics
    for key in (
        "test/auroc_macro",
        "test/a/auroc_macro",
        "test/b/auroc_macro",
        "test/a/balanced_accuracy",
        "test/b/sensitivity",
    ):
        assert key in m and key in logged, key
        assert logged[key] == pytest.approx(m[key])
    test = pd.read_csv(trained["out"] / "test_predictions.csv")
    assert m["test/a/images"] + m["test/b/images"] == len(test)
    for s in ("a", "b"):  # recomputed from the CSV's source column
        rows = test[test["source"] == s]
        assert len(rows) == m[f"test/{s}/images"]
        assert (rows["label"] == rows["prediction"]).mean() == pytest.approx(
            m[f"test/{s}/accuracy"]
        )
    table = pd.read_csv(trained["out"] / "per_source_metrics.csv", index_col="source")
    assert table.loc["b", "auroc_macro"] == pytest.approx(m["test/b/auroc_macro"], abs=1e-4)


def test_records_and_splits_follow_the_sources(trained) -> None:
    test = pd.read_csv(trained["out"] / "test_predictions.csv")
    val = pd.read_csv(trained["out"] / "val_predictions.csv")
    every = pd.concat([test, val])
    assert set(every["label"]) == {"normal", "glaucoma"}
    for _, row in every.iterrows():  # each image under its own source and mapped class
        folder = Path(row["path"]).parent.name
        assert Path(row["path"]).parts[-3] == row["source"]
        assert {"NRG": "normal", "RG": "glaucoma", "healthy": "normal", "Glaucoma": "glaucoma"}[
            folder
        ] == row["label"]
    # stratified by label × source: every (source, class) cell is in the test partition
    assert set(Counter(zip(test["source"], test["label"], strict=True))) == {
        (s, c) for s in "ab" for c in ("normal", "glaucoma")
    }


def test_gradcam_overlays_logged(trained) -> None:
    cams = sorted((trained["out"] / "gradcam").glob("*.png"))
    names = [p.name for p in cams]
    assert "overview.png" in names and len(cams) == 4 + 1
    shown = [n for n in names if n != "overview.png"]
    assert {n.split("_pred-")[0].split("true-")[1] for n in shown} == {"normal", "glaucoma"}
    assert np.asarray(Image.open(cams[0])).shape == (CAPTION + TILE, 2 * TILE, 3)
    client, run_id = trained["client"], trained["run"].info.run_id
    logged = {a.path for a in client.list_artifacts(run_id, "gradcam")}
    assert logged == {f"gradcam/{n}" for n in names}
    top = {a.path for a in client.list_artifacts(run_id)}
    assert {"per_source_metrics.csv", "test_predictions.csv"} <= top


def test_the_ensemble_reports_each_source(helpers, trained, workdir) -> None:
    """medcls-ensemble on the combined data (one model, no TTA): the same per-source numbers
    as the training run's test step, and its own per_source_metrics.csv."""
    cfg = helpers.compose_cfg(
        ["logger=none", *trained["data"], f"checkpoints=['{trained['ckpt']}']"],
        config_name="ensemble",
    )
    result = run_ensemble(cfg)
    for key in PER_SOURCE:
        assert result[key] == pytest.approx(trained["metrics"][key], abs=1e-6), key
    table = pd.read_csv(Path(cfg.paths.output_dir) / "per_source_metrics.csv", index_col="source")
    assert table.loc["a", "images"] + table.loc["b", "images"] == len(
        pd.read_csv(Path(cfg.paths.output_dir) / "ensemble_predictions.csv")
    )


def test_eval_reports_each_source_and_writes_gradcam(helpers, trained, workdir, mlflow_uri) -> None:
    cfg = helpers.compose_cfg(
        [
            f"ckpt_path={trained['ckpt']}",
            *trained["data"],
            "print_config=false",
            "trainer.precision=32-true",
            "++trainer.enable_progress_bar=false",
            "cam.num_images=2",
            *helpers.mlflow_overrides(mlflow_uri, "combined-eval"),
        ],
        config_name="eval",
    )
    metrics = run_eval(cfg)
    out = Path(cfg.paths.output_dir)
    for key in PER_SOURCE:
        assert metrics[key] == pytest.approx(trained["metrics"][key], abs=1e-6), key
    assert (out / "per_source_metrics.csv").is_file()
    cams = sorted(p.name for p in (out / "gradcam").glob("*.png"))
    assert len(cams) == 2 + 1 and "overview.png" in cams
    assert np.asarray(Image.open(out / "gradcam" / cams[0])).shape == (CAPTION + TILE, 2 * TILE, 3)
    client = MlflowClient(tracking_uri=mlflow_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("combined-eval").experiment_id])
    assert {a.path for a in client.list_artifacts(run.info.run_id, "gradcam")} == {
        f"gradcam/{n}" for n in cams
    }
    assert "per_source_metrics.csv" in {a.path for a in client.list_artifacts(run.info.run_id)}
    assert run.data.metrics["test/b/sensitivity"] == pytest.approx(metrics["test/b/sensitivity"])


def test_predict_with_cam_writes_overlays_next_to_the_csv(helpers, trained, workdir) -> None:
    folder = trained["base"] / "b"
    cfg = helpers.compose_cfg(
        [
            f"ckpt_path={trained['out'] / 'checkpoints' / 'best.ckpt'}",
            f"input={folder}",
            "output=preds/b.csv",
            "cam.num_images=-1",
        ],
        config_name="predict",
    )
    df = pd.read_csv(run_predict(cfg))
    pngs = sorted((workdir / "preds" / "b_gradcam").glob("*.png"))
    assert [p.stem for p in pngs] == sorted(df["image_id"])
    tile = np.asarray(Image.open(pngs[0]))
    assert tile.shape == (CAPTION + TILE, 2 * TILE, 3)
    heat = tile[CAPTION:, TILE:].astype(int) - tile[CAPTION:, :TILE].astype(int) // 2
    assert heat.std() > 5  # the right tile carries a heat map, not a copy of the image


def test_predict_with_an_unknown_target_layer_is_a_clear_error(helpers, trained, workdir) -> None:
    from medcls.errors import DataError

    cfg = helpers.compose_cfg(
        [
            f"ckpt_path={trained['out'] / 'checkpoints' / 'best.ckpt'}",
            f"input={trained['base'] / 'b' / 'healthy'}",
            "cam.num_images=-1",
            "cam.target_layer=backbone.nope",
        ],
        config_name="predict",
    )
    with pytest.raises(DataError, match=r"cam.target_layer='backbone.nope'.*backbone\.bn2"):
        run_predict(cfg)

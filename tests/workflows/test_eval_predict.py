"""Evaluation and prediction on a trained checkpoint: class names matched by name (any case,
or an explicit class_map), a clean error for classes that match nothing, probability CSVs."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from medcls.workflows.evaluate import run_eval
from medcls.workflows.predict import run_predict
from medcls.workflows.train import run_train

CLASSES = ["akiec", "bcc", "nv"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, helpers, datasets, mlflow_uri) -> dict:
    """One short real training run (2 epochs, MLflow, class-weighted loss) on the tiny image
    folder with lower-case classes akiec/bcc/nv."""
    work = tmp_path_factory.mktemp("trained")
    with helpers.chdir(work):
        cfg = helpers.compose_cfg(
            helpers.train_overrides(
                "data=imagefolder",
                f"data.root={datasets['imagefolder']}",
                "trainer.max_epochs=2",
                "loss=class_weighted",  # its weight buffer must not stop evaluation
                *helpers.mlflow_overrides(mlflow_uri, "eval-predict"),
            )
        )
        metrics = run_train(cfg)
    out = Path(cfg.paths.output_dir)
    return {"work": work, "out": out, "ckpt": out / "checkpoints" / "best.ckpt", "metrics": metrics}


def eval_cfg(helpers, trained, *overrides: str):
    return helpers.compose_cfg(
        [
            f"ckpt_path={trained['ckpt']}",
            "print_config=false",
            "logger=none",
            "trainer.precision=32-true",
            "++trainer.enable_progress_bar=false",
            *overrides,
        ],
        config_name="eval",
    )


def probs_of(df: pd.DataFrame, classes=CLASSES) -> np.ndarray:
    return df[[f"p_{c}" for c in classes]].to_numpy()


def test_checkpoints_load_weights_only(trained) -> None:
    for name in ("best.ckpt", "last.ckpt"):
        ckpt = torch.load(trained["ckpt"].parent / name, map_location="cpu", weights_only=True)
        meta = ckpt["medcls"]
        assert meta["class_names"] == CLASSES
        assert meta["preprocess"]["image_size"] == 32
        assert meta["model"]["name"] == "test_efficientnet"
        assert len(meta["mlflow_run_id"]) == 32
        assert ckpt["epoch"] in (0, 1)


def test_eval_reproduces_training_test_metrics(helpers, trained, workdir, datasets) -> None:
    cfg = eval_cfg(helpers, trained, "data=imagefolder", f"data.root={datasets['imagefolder']}")
    metrics = run_eval(cfg)
    for key in ("test/accuracy", "test/balanced_accuracy", "test/auroc_macro"):
        assert metrics[key] == pytest.approx(trained["metrics"][key], abs=1e-6), key
    ours = pd.read_csv(Path(cfg.paths.output_dir) / "test_predictions.csv")
    theirs = pd.read_csv(trained["out"] / "test_predictions.csv")
    assert list(ours["path"]) == list(theirs["path"])
    np.testing.assert_allclose(probs_of(ours), probs_of(theirs), atol=1e-5)


def test_eval_matches_class_names_case_insensitively(helpers, trained, workdir) -> None:
    """ISIC-format CSV with upper-case columns (AKIEC, BCC, NV and an empty UNK)."""
    data = helpers.make_isic_csv(
        workdir / "isic", classes=("AKIEC", "BCC", "NV"), per_class=8, seed=5
    )
    cfg = eval_cfg(
        helpers,
        trained,
        "data=isic_csv",
        "data.root=/",
        f"data.csv={data / 'GroundTruth.csv'}",
        f"data.images_dir={data / 'images'}",
        "data.drop_empty_classes=true",
        "split=all",
    )
    metrics = run_eval(cfg)
    preds = pd.read_csv(Path(cfg.paths.output_dir) / "test_predictions.csv")
    assert len(preds) == 24
    assert sorted(preds["label"]) == sorted(CLASSES * 8)  # the checkpoint's names
    assert probs_of(preds).sum(axis=1) == pytest.approx(1.0, abs=1e-4)
    assert metrics["test/accuracy"] == pytest.approx(
        (preds["label"] == preds["prediction"]).mean(), abs=1e-6
    )


def test_eval_all_of_a_small_set(helpers, trained, workdir, caplog, capsys) -> None:
    """split=all evaluates every image; a set too small to split into folds is fine. The log
    and the printed config say what is used: all 9 images, at the checkpoint's 32 px (the
    imagefolder preset's own size is another)."""
    data = helpers.make_imagefolder(workdir / "small", CLASSES, per_class=3)
    cfg = eval_cfg(helpers, trained, "data=imagefolder", f"data.root={data}", "split=all")
    assert cfg.data.image_size != 32
    cfg.print_config = True
    with caplog.at_level("INFO"):
        run_eval(cfg)
    assert len(pd.read_csv(Path(cfg.paths.output_dir) / "test_predictions.csv")) == 9
    assert "all 9 images" in caplog.text and "train 0 / val 0" not in caplog.text
    printed = capsys.readouterr().out
    assert "image_size: 32" in printed


def test_eval_with_explicit_class_map(helpers, trained, workdir) -> None:
    data = helpers.make_imagefolder(workdir / "mapped", ["akiec", "basal", "naevus"], per_class=8)
    cfg = eval_cfg(
        helpers,
        trained,
        "data=imagefolder",
        f"data.root={data}",
        "split=all",
        "+class_map.basal=bcc",
        "+class_map.naevus=NV",  # the map's target is matched case-insensitively too
    )
    run_eval(cfg)
    preds = pd.read_csv(Path(cfg.paths.output_dir) / "test_predictions.csv")
    assert sorted(preds["label"]) == sorted(CLASSES * 8)
    basal = preds[preds["path"].str.contains("/basal/")]
    assert set(basal["label"]) == {"bcc"}


def test_eval_unmapped_class_is_a_clean_error(helpers, trained, workdir) -> None:
    data = helpers.make_imagefolder(workdir / "unmapped", ["akiec", "basal", "nv"], per_class=8)
    proc = helpers.run_cli(
        "medcls-eval",
        [
            f"ckpt_path={trained['ckpt']}",
            "data=imagefolder",
            f"data.root={data}",
            "split=all",
            "logger=none",
            "print_config=false",
        ],
        cwd=workdir,
    )
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2, text
    assert "basal" in text and "class_map" in text
    assert "Traceback" not in text


def test_predict_folder_with_a_corrupt_image(helpers, trained, workdir, datasets) -> None:
    folder = workdir / "incoming"
    shutil.copytree(datasets["imagefolder"], folder)
    helpers.write_corrupt(folder / "nv" / "broken.jpg")
    cfg = helpers.compose_cfg(
        [f"ckpt_path={trained['ckpt']}", f"input={folder}", "output=preds/out.csv"],
        config_name="predict",
    )
    out = run_predict(cfg)
    assert out == str(workdir / "preds" / "out.csv")
    df = pd.read_csv(out)
    assert len(df) == 3 * 8  # every readable image, the broken one left out
    assert [c for c in df.columns if c.startswith("p_")] == [f"p_{c}" for c in CLASSES]
    assert probs_of(df).sum(axis=1) == pytest.approx(1.0, abs=1e-4)
    assert (probs_of(df) >= 0).all()
    assert "label" not in df.columns
    assert set(df["prediction"]) <= set(CLASSES)
    skipped = pd.read_csv(workdir / "preds" / "out.skipped.csv")
    assert list(skipped["path"]) == [str(folder / "nv" / "broken.jpg")]

    # the same images through the training run's test step: same probabilities
    test = pd.read_csv(trained["out"] / "test_predictions.csv")
    test["path"] = test["path"].str.replace(str(datasets["imagefolder"]), str(folder))
    both = test.merge(df, on="path", suffixes=("_test", ""))
    assert len(both) == len(test)
    np.testing.assert_allclose(
        both[[f"p_{c}_test" for c in CLASSES]].to_numpy(), probs_of(both), atol=1e-4
    )


def test_predict_one_image(helpers, trained, workdir, datasets) -> None:
    image = datasets["imagefolder"] / "bcc" / "bcc_000.jpg"
    cfg = helpers.compose_cfg(
        [f"ckpt_path={trained['ckpt']}", f"input={image}"], config_name="predict"
    )
    df = pd.read_csv(run_predict(cfg))
    assert len(df) == 1
    assert df.loc[0, "path"] == str(image)
    assert df.loc[0, "image_id"] == "bcc_000"
    assert probs_of(df).sum() == pytest.approx(1.0, abs=1e-4)
    assert not (workdir / "predictions.skipped.csv").exists()

"""run_ensemble: the metrics of an ensemble are those of its averaged softmax; models of other
studies and empty inputs are refused with a DataError."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from medcls.errors import DataError
from medcls.metrics.classification import compute_metrics
from medcls.metrics.groups import group_mean
from medcls.workflows.ensemble import run_ensemble
from medcls.workflows.train import run_train

DATA = ["data=synthetic", "data.num_samples=100", "data.native_size=32"]


@pytest.fixture(scope="module")
def models(tmp_path_factory, helpers) -> dict:
    """Two tiny models of one study (same data and split, different learning rates)."""
    work = tmp_path_factory.mktemp("ensemble_models")
    out = {}
    with helpers.chdir(work):
        for name, lr in (("a", "1e-3"), ("b", "3e-2")):
            cfg = helpers.compose_cfg(
                helpers.train_overrides(
                    "trainer.max_epochs=1", "++trainer.limit_train_batches=2", f"optimizer.lr={lr}"
                )
            )
            metrics = run_train(cfg)
            run_dir = Path(cfg.paths.output_dir)
            out[name] = {
                "metrics": metrics,
                "ckpt": run_dir / "checkpoints" / "best.ckpt",
                "test": pd.read_csv(run_dir / "test_predictions.csv"),
                "val": run_dir / "val_predictions.csv",
            }
    assert out["a"]["ckpt"].is_file() and out["b"]["ckpt"].is_file()
    return out


def ensemble_cfg(helpers, *overrides: str, logger: str = "none"):
    return helpers.compose_cfg([f"logger={logger}", *DATA, *overrides], config_name="ensemble")


def ckpt_list(*paths: Path) -> str:
    return "checkpoints=[" + ",".join(f"'{p}'" for p in paths) + "]"


def probs_of(df: pd.DataFrame, names: list[str]) -> np.ndarray:
    return df[[f"p_{c}" for c in names]].to_numpy()


def class_names(df: pd.DataFrame) -> list[str]:
    return [c[2:] for c in df.columns if c.startswith("p_")]


def test_ensemble_metrics_are_those_of_the_averaged_probs(helpers, models, workdir) -> None:
    cfg = ensemble_cfg(helpers, ckpt_list(models["a"]["ckpt"], models["b"]["ckpt"]))
    result = run_ensemble(cfg)
    out = Path(cfg.paths.output_dir)
    ens = pd.read_csv(out / "ensemble_predictions.csv")
    names = class_names(ens)

    # Each model's own test predictions (from trainer.test, at training time), same images.
    a = models["a"]["test"].set_index("path").loc[ens["path"]]
    b = models["b"]["test"].set_index("path").loc[ens["path"]]
    assert len(ens) == len(a) == 20
    pa, pb = probs_of(a, names), probs_of(b, names)
    assert np.abs(pa - pb).max() > 1e-3  # two different models, or the test proves nothing
    averaged = (pa + pb) / 2
    np.testing.assert_allclose(probs_of(ens, names), averaged, atol=2e-6)
    np.testing.assert_allclose(probs_of(ens, names).sum(axis=1), 1.0, atol=1e-5)

    labels = np.array([names.index(c) for c in ens["label"]])
    expected, _ = compute_metrics(averaged, labels, names)
    for key in ("accuracy", "balanced_accuracy", "f1_macro", "precision_macro"):
        assert result[f"test/{key}"] == pytest.approx(expected[key], abs=1e-6), key
    # the CSVs' 6 decimals make ties that move AUROC a little
    assert result["test/auroc_macro"] == pytest.approx(expected["auroc_macro"], abs=1e-2)

    # Group level: softmax averaged per lesion, then the same metrics.
    gp, gl, _ = group_mean(averaged, labels, list(ens["group"]))
    group_expected, _ = compute_metrics(gp, gl, names)
    assert len(gp) < len(ens)  # the synthetic set has several images per lesion
    assert result["group/balanced_accuracy"] == pytest.approx(
        group_expected["balanced_accuracy"], abs=1e-6
    )
    assert result["group/accuracy"] == pytest.approx(group_expected["accuracy"], abs=1e-6)

    assert not any(k.startswith("oof/") for k in result)  # no sweep: no out-of-fold metrics
    for f in ("test_predictions.csv", "per_class_metrics.csv", "confusion_matrix.png"):
        assert (out / f).is_file(), f


def test_one_checkpoint_twice_equals_the_model_alone(helpers, models, workdir) -> None:
    """... exactly: the metrics trainer.test computed for that model at training time."""
    ckpt = models["a"]["ckpt"]
    result = run_ensemble(ensemble_cfg(helpers, ckpt_list(ckpt, ckpt)))
    own = models["a"]["metrics"]
    tested = [k for k in own if k.startswith("test/")]
    assert "test/auroc_macro" in tested and "test/balanced_accuracy" in tested
    for key in tested:
        assert result[key] == pytest.approx(own[key], abs=1e-5, nan_ok=True), key


def fake_sweep(root: Path, ckpt: Path, val_parts: list[pd.DataFrame]) -> Path:
    """``root/<job>/checkpoints/best.ckpt`` + ``root/<job>/val_predictions.csv`` per job."""
    for job, part in enumerate(val_parts):
        (root / str(job) / "checkpoints").mkdir(parents=True)
        (root / str(job) / "checkpoints" / "best.ckpt").write_bytes(ckpt.read_bytes())
        part.to_csv(root / str(job) / "val_predictions.csv", index=False)
    return root


def test_sweep_out_of_fold_metrics(helpers, models, workdir) -> None:
    val = pd.read_csv(models["a"]["val"], dtype={"image_id": str})
    assert len(val) > 10 and val["path"].is_unique
    sweep = fake_sweep(workdir / "sweep", models["a"]["ckpt"], [val[:6], val[6:]])
    cfg = ensemble_cfg(helpers, f"sweep_dir={sweep}")
    result = run_ensemble(cfg)
    names = class_names(val)
    labels = np.array([names.index(c) for c in val["label"]])
    expected, _ = compute_metrics(probs_of(val, names), labels, names)
    for key in ("accuracy", "balanced_accuracy", "f1_macro"):
        assert result[f"oof/{key}"] == pytest.approx(expected[key], abs=1e-6), key
    # two copies of one model: the test metrics are that model's
    assert result["test/balanced_accuracy"] == pytest.approx(
        models["a"]["metrics"]["test/balanced_accuracy"], abs=1e-6
    )
    oof = pd.read_csv(Path(cfg.paths.output_dir) / "oof_predictions.csv", dtype=str)
    assert sorted(oof["path"]) == sorted(val["path"])
    assert sorted(oof["job"].astype(int)) == [0] * 6 + [1] * (len(val) - 6)


def test_sweep_out_of_fold_predictions_keep_image_ids(helpers, models, workdir) -> None:
    """oof_predictions.csv repeats the folds' rows: ids like ``000123`` stay strings."""
    val = pd.read_csv(models["a"]["val"], dtype={"image_id": str})
    assert val["image_id"].str.startswith("0").all()  # synthetic ids are zero-padded
    sweep = fake_sweep(workdir / "sweep", models["a"]["ckpt"], [val[:5], val[5:]])
    cfg = ensemble_cfg(helpers, f"sweep_dir={sweep}")
    run_ensemble(cfg)
    oof = pd.read_csv(Path(cfg.paths.output_dir) / "oof_predictions.csv", dtype=str)
    assert sorted(oof["image_id"]) == sorted(val["image_id"])


def test_sweep_out_of_fold_with_numeric_class_names(helpers, models, workdir) -> None:
    """Class folders named 0, 1, ... are common; their labels must not turn into integers."""
    val = pd.read_csv(models["a"]["val"], dtype={"image_id": str})
    names = class_names(val)
    digits = {c: str(i) for i, c in enumerate(names)}
    val = val.rename(columns={f"p_{c}": f"p_{d}" for c, d in digits.items()})
    val[["label", "prediction"]] = val[["label", "prediction"]].replace(digits)

    def digit_classes(meta: dict) -> None:
        meta["class_names"] = [digits[c] for c in meta["class_names"]]

    ckpt = edited_checkpoint(models["a"]["ckpt"], workdir / "digits.ckpt", digit_classes)
    sweep = fake_sweep(workdir / "sweep", ckpt, [val[:6], val[6:]])
    class_map = [f"+class_map.{c}='{d}'" for c, d in digits.items()]
    result = run_ensemble(ensemble_cfg(helpers, f"sweep_dir={sweep}", *class_map))
    labels = np.array([int(c) for c in val["label"]])
    expected, _ = compute_metrics(
        probs_of(val, list(digits.values())), labels, list(digits.values())
    )
    assert result["oof/balanced_accuracy"] == pytest.approx(expected["balanced_accuracy"], abs=1e-6)
    assert result["test/balanced_accuracy"] == pytest.approx(
        models["a"]["metrics"]["test/balanced_accuracy"], abs=1e-6
    )


def test_sweep_with_overlapping_validation_sets_is_refused(helpers, models, workdir) -> None:
    val = pd.read_csv(models["a"]["val"])
    sweep = fake_sweep(workdir / "sweep", models["a"]["ckpt"], [val, val[:5]])
    with pytest.raises(DataError, match="two folds' validation sets"):
        run_ensemble(ensemble_cfg(helpers, f"sweep_dir={sweep}"))


def edited_checkpoint(src: Path, dst: Path, edit) -> Path:
    ckpt = torch.load(src, map_location="cpu", weights_only=True)
    edit(ckpt["medcls"])
    torch.save(ckpt, dst)
    return dst


def reverse_classes(meta: dict) -> None:
    meta["class_names"] = list(reversed(meta["class_names"]))


def other_resize(meta: dict) -> None:
    meta["preprocess"]["resize_mode"] = (
        "stretch" if meta["preprocess"]["resize_mode"] != "stretch" else "pad"
    )


@pytest.mark.parametrize("edit", [reverse_classes, other_resize], ids=["classes", "preprocess"])
def test_models_of_another_study_are_refused(helpers, models, workdir, edit) -> None:
    other = edited_checkpoint(models["b"]["ckpt"], workdir / "other.ckpt", edit)
    cfg = ensemble_cfg(helpers, ckpt_list(models["a"]["ckpt"], other))
    with pytest.raises(DataError, match="other classes or preprocessing"):
        run_ensemble(cfg)


def test_nothing_to_ensemble(helpers, workdir) -> None:
    with pytest.raises(DataError, match="nothing to ensemble"):
        run_ensemble(ensemble_cfg(helpers))


def test_sweep_without_checkpoints(helpers, workdir) -> None:
    sweep = workdir / "multirun" / "empty"
    (sweep / "0").mkdir(parents=True)
    with pytest.raises(DataError, match="no <job>/checkpoints/best.ckpt"):
        run_ensemble(ensemble_cfg(helpers, f"sweep_dir={sweep}"))


def test_missing_checkpoint_file(helpers, workdir) -> None:
    with pytest.raises(DataError, match="checkpoint not found"):
        run_ensemble(ensemble_cfg(helpers, ckpt_list(workdir / "nope.ckpt")))


def test_run_without_best_checkpoint_tag(helpers, workdir, mlflow_uri) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_uri)
    exp = client.get_experiment_by_name("ensemble-tags")
    exp_id = exp.experiment_id if exp else client.create_experiment("ensemble-tags")
    run = client.create_run(exp_id)
    client.set_terminated(run.info.run_id)
    cfg = ensemble_cfg(
        helpers,
        f"run_ids=[{run.info.run_id}]",
        f"logger.mlflow.tracking_uri={mlflow_uri}",
        logger="mlflow",
    )
    with pytest.raises(DataError, match="no best_checkpoint tag"):
        run_ensemble(cfg)

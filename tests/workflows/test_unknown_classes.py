"""ISIC-style test data with UNK images, end to end: training with data.unknown=reject scores
them as a rejected class (metrics, predictions, per-class tables, ISIC ground truth), and
medcls-eval does the same for classes a checkpoint lacks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medcls.workflows.evaluate import run_eval
from medcls.workflows.train import run_train

TRAIN = ["MEL", "NV", "BCC"]


@pytest.fixture(scope="module")
def run(tmp_path_factory, helpers) -> dict:
    root = tmp_path_factory.mktemp("isic_unk_data")
    data = [*helpers.isic_with_unknown(root, TRAIN), "data.unknown_threshold=0.6"]
    work = tmp_path_factory.mktemp("isic_unk_run")
    with helpers.chdir(work):
        cfg = helpers.compose_cfg(helpers.train_overrides(*data, "trainer.max_epochs=1"))
        metrics = run_train(cfg)
    return {"root": root, "work": work, "out": Path(cfg.paths.output_dir), "metrics": metrics}


def test_training_run_scores_unk_as_a_rejected_class(run) -> None:
    m, out = run["metrics"], run["out"]
    preds = pd.read_csv(out / "test_predictions.csv")
    assert len(preds) == 16 and (preds["label"] == "UNK").sum() == 4
    # UNK's figures are those of the written predictions (rejections scored as a class)
    truth, said = preds["label"] == "UNK", preds["prediction"] == "UNK"
    assert m["test/recall_UNK"] == pytest.approx((truth & said).sum() / truth.sum())
    assert m["test/accuracy_UNK"] == pytest.approx((truth == said).mean())
    if said.any():
        assert m["test/precision_UNK"] == pytest.approx((truth & said).sum() / said.sum())
    probs = preds[[f"p_{c}" for c in [*TRAIN, "UNK"]]].to_numpy()
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    top = probs[:, :3].max(1) * (1 + probs[:, 3])  # undo the renormalisation: the model's p_max
    rejected = preds["prediction"] == "UNK"
    assert (rejected == (top < 0.6)).all()
    per_class = pd.read_csv(out / "per_class_metrics.csv")
    assert per_class["class"].tolist() == [*TRAIN, "UNK"]
    assert per_class["support"].tolist() == [4, 4, 4, 4]
    table1 = (out / "per_class_metrics.md").read_text()
    assert "UNK (n=4)" in table1 and "| F1-score |" in table1
    isic = pd.read_csv(out / "test_set_isic.csv")
    assert list(isic.columns) == ["image", *TRAIN, "UNK"]
    assert isic["UNK"].sum() == 4


def test_eval_rejects_classes_the_checkpoint_lacks(run, helpers) -> None:
    cfg = helpers.compose_cfg(
        [
            f"ckpt_path={run['out'] / 'checkpoints' / 'best.ckpt'}",
            "print_config=false",
            "logger=none",
            "trainer.precision=32-true",
            "++trainer.enable_progress_bar=false",
            "data=isic_csv",
            f"data.root={run['root']}",
            "data.csv=Test.csv",
            "data.images_dir=test_images",
            "data.drop_empty_classes=false",
            "split=all",
            "data.unknown=reject",
            "data.unknown_threshold=0.6",
        ],
        config_name="eval",
    )
    with helpers.chdir(run["work"]):
        metrics = run_eval(cfg)
    preds = pd.read_csv(Path(cfg.paths.output_dir) / "test_predictions.csv")
    assert (preds["label"] == "UNK").sum() == 4 and "p_UNK" in preds
    truth, said = preds["label"] == "UNK", preds["prediction"] == "UNK"
    assert metrics["test/recall_UNK"] == pytest.approx((truth & said).sum() / truth.sum())
    # the same images, the same model, the same rule: the training run's test predictions
    ours = preds.set_index("image_id").sort_index()
    theirs = pd.read_csv(run["out"] / "test_predictions.csv").set_index("image_id").sort_index()
    assert (ours["prediction"] == theirs["prediction"]).all()

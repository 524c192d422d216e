"""Short runs on the real datasets in ../shared/data (skipped when that folder is absent):
HAM10000 (the session's lesion subset) with a lesion-grouped split, then its checkpoint evaluated on the ISIC-format CSV of
its test partition (upper-case classes); glaucoma (EyePACS-AIROGS) train + eval."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medcls.workflows.common import build_datamodule
from medcls.workflows.evaluate import run_eval
from medcls.workflows.train import run_train

HAM_CLASSES = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

REAL = [
    "model.name=resnet10t",
    "data.batch_size=128",
    "trainer.max_epochs=1",
    "++trainer.limit_train_batches=4",
]


def _probs(df: pd.DataFrame, classes) -> np.ndarray:
    return df[[f"p_{c}" for c in classes]].to_numpy()


@pytest.fixture(scope="module")
def ham_run(tmp_path_factory, helpers, cache_dir, ham10000_subset) -> dict:
    ham = helpers.shared_data("ham10000", "HAM10000_metadata.csv")
    work = tmp_path_factory.mktemp("ham")
    with helpers.chdir(work):
        data = [
            "data=ham10000",
            f"data.root={ham}",
            f"data.metadata_csv={ham10000_subset}",
            f"data.image_size={helpers.HAM_SUBSET_SIZE}",
        ]
        cfg = helpers.compose_cfg(
            helpers.train_overrides(
                *data, *REAL, "eval.subgroups=[sex,age_group]", "eval.curves=true", cache=cache_dir
            )
        )
        out = Path(cfg.paths.output_dir)
        metrics = run_train(cfg)
        dm = build_datamodule(cfg)  # the decode cache is warm: no JPEG is decoded again
        dm.setup()
    subset = pd.read_csv(ham10000_subset)
    return {"ham": ham, "work": work, "out": out, "metrics": metrics, "dm": dm, "subset": subset}


def test_ham10000_trains_and_tests(ham_run, helpers) -> None:
    """The returned test metrics are those of the predictions written (recomputed here), on
    every image of the subset's test partition. (All 10,015 records: test_sources_splits.py.)"""
    helpers.assert_metrics_match_predictions(
        ham_run["metrics"], ham_run["out"] / "test_predictions.csv"
    )
    assert (ham_run["out"] / "checkpoints" / "best.ckpt").is_file()
    dm = ham_run["dm"]
    assert dm.class_names == HAM_CLASSES
    assert len(dm.records) == len(ham_run["subset"]) and not dm.skipped


def test_ham10000_subgroups_are_the_metadatas(ham_run) -> None:
    """The issue's acceptance run at subset scale: sex and age groups of the real metadata, each
    subgroup's balanced accuracy recomputed with scikit-learn from the test predictions."""
    from sklearn.metrics import balanced_accuracy_score

    from medcls.evaluation.subgroups import age_group

    out, meta = ham_run["out"], ham_run["subset"].set_index("image_id")
    preds = pd.read_csv(out / "test_predictions.csv").set_index("image_id")
    sub = pd.read_csv(out / "subgroups.csv", keep_default_na=False)
    sex = meta.loc[preds.index, "sex"].fillna("unknown").replace({"": "unknown"})
    ages = [age_group(a, (30, 45, 60, 75)) or "unknown" for a in meta.loc[preds.index, "age"]]
    for attribute, values in (("sex", sex.to_numpy()), ("age_group", np.array(ages))):
        rows = sub[sub["attribute"] == attribute].set_index("subgroup")
        assert set(rows.index) == set(values), attribute
        for value, row in rows.iterrows():
            keep = values == value
            assert row["images"] == keep.sum()
            expected = balanced_accuracy_score(preds["label"][keep], preds["prediction"][keep])
            assert row["balanced_accuracy"] == pytest.approx(expected, abs=1e-6), (attribute, value)
    for name in ("roc_curves.png", "pr_curves.png", "reliability.png", "subgroups.png"):
        assert (out / name).is_file(), name
    m = ham_run["metrics"]
    assert m["test/ece_ci_low"] <= m["test/ece_ci_high"] and "test/auroc_macro_ci_low" in m


def test_ham10000_split_is_grouped_by_lesion(ham_run) -> None:
    dm = ham_run["dm"]
    groups = {k: {dm.records[i].group for i in dm.partitions[k]} for k in ("train", "val", "test")}
    assert not groups["train"] & groups["val"]
    assert not groups["train"] & groups["test"]
    assert not groups["val"] & groups["test"]

    preds = pd.read_csv(ham_run["out"] / "test_predictions.csv")
    assert len(preds) == len(dm.partitions["test"])
    assert preds["group"].str.startswith("HAM_").all()
    assert not set(preds["group"]) & (groups["train"] | groups["val"])


def test_ham10000_checkpoint_on_isic_csv(ham_run, helpers, cache_dir) -> None:
    """medcls-eval on the run's test_set_isic.csv: AKIEC..VASC columns must meet the
    checkpoint's akiec..vasc, and reproduce the training run's test predictions."""
    isic = ham_run["out"] / "test_set_isic.csv"
    header = isic.read_text().splitlines()[0]
    assert header == "image," + ",".join(c.upper() for c in HAM_CLASSES)
    work = ham_run["work"] / "eval"
    work.mkdir()
    proc = helpers.run_cli(
        "medcls-eval",
        [
            f"ckpt_path={ham_run['out'] / 'checkpoints' / 'best.ckpt'}",
            "data=isic_csv",
            "data.root=/",
            f"data.csv={isic}",
            f"data.images_dir={ham_run['ham'] / 'images'}",
            "split=all",
            "logger=none",
            "print_config=false",
            "trainer.precision=32-true",
            f"paths.cache_dir={cache_dir}",
        ],
        cwd=work,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (evaluated,) = work.glob("outputs/eval/runs/*/test_predictions.csv")
    ours = pd.read_csv(evaluated).set_index("image_id").sort_index()
    theirs = pd.read_csv(ham_run["out"] / "test_predictions.csv").set_index("image_id")
    theirs = theirs.sort_index()
    assert list(ours.index) == list(theirs.index)
    assert (ours["label"] == theirs["label"]).all()  # same classes, whatever the case
    np.testing.assert_allclose(_probs(ours, HAM_CLASSES), _probs(theirs, HAM_CLASSES), atol=1e-4)


def test_glaucoma_train_and_eval(tmp_path, helpers, cache_dir, monkeypatch) -> None:
    glaucoma = helpers.shared_data("glaucoma_airogs", "RG")
    monkeypatch.chdir(tmp_path)
    cfg = helpers.compose_cfg(
        helpers.train_overrides(
            "data=glaucoma",
            f"data.root={glaucoma}",
            "data.image_size=64",  # as the other glaucoma runs: one decode for all
            *REAL,
            cache=cache_dir,
        )
    )
    out = Path(cfg.paths.output_dir)
    trained = run_train(cfg)
    mine = helpers.assert_metrics_match_predictions(trained, out / "test_predictions.csv")
    assert {"sensitivity", "specificity"} <= set(mine)
    for key in ("test/sensitivity", "test/specificity", "test/auroc_positive"):
        assert key in trained, key
    # the AIROGS screening figures: sensitivity at 95% specificity and the partial AUC over
    # 90–100% specificity, against scikit-learn on the run's own predictions
    from sklearn.metrics import roc_auc_score, roc_curve

    preds = pd.read_csv(out / "test_predictions.csv")
    y, s = (preds["label"] == "RG").to_numpy(), preds["p_RG"].to_numpy()
    fpr, tpr, _ = roc_curve(y, s)
    assert trained["test/sensitivity_at_spec95"] == pytest.approx(tpr[fpr <= 0.05].max(), abs=0.02)
    assert trained["test/pauc_spec90"] == pytest.approx(roc_auc_score(y, s, max_fpr=0.1), abs=0.01)
    lo, hi = trained["test/pauc_spec90_ci_low"], trained["test/pauc_spec90_ci_high"]
    assert lo <= trained["test/pauc_spec90"] <= hi and lo < hi

    cfg = helpers.compose_cfg(
        [
            f"ckpt_path={out / 'checkpoints' / 'best.ckpt'}",
            "data=glaucoma",
            f"data.root={glaucoma}",
            "logger=none",
            "print_config=false",
            "trainer.precision=32-true",
            f"paths.cache_dir={cache_dir}",
        ],
        config_name="eval",
    )
    evaluated = run_eval(cfg)
    for key in ("test/balanced_accuracy", "test/sensitivity", "test/specificity"):
        assert evaluated[key] == pytest.approx(trained[key], abs=1e-6), key
    preds = pd.read_csv(Path(cfg.paths.output_dir) / "test_predictions.csv")
    assert set(preds["label"]) == {"NRG", "RG"}
    assert 80 <= len(preds) <= 140  # about 20 % of 540

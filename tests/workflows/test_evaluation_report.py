"""The evaluation report through the three workflows: medcls-train's test step logs intervals,
ECE, operating points and the curve/reliability files to MLflow; medcls-eval and
medcls-ensemble of the same checkpoint report the very same numbers (one component)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from sklearn.metrics import roc_auc_score, roc_curve

from medcls.errors import DataError
from medcls.evaluation.files import read_predictions
from medcls.metrics.classification import metric_safe
from medcls.workflows.ensemble import run_ensemble
from medcls.workflows.evaluate import run_eval
from medcls.workflows.train import run_train

DATA = ["data=synthetic", "data.num_samples=160", "data.num_classes=2", "data.native_size=32"]
FILES = {
    "metrics_summary.csv",
    "roc_curves.csv",
    "roc_curves.png",
    "pr_curves.csv",
    "pr_curves.png",
    "reliability.csv",
    "reliability.png",
    "test_predictions.csv",
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, helpers, mlflow_uri) -> dict:
    work = tmp_path_factory.mktemp("evaluation_report")
    with helpers.chdir(work):
        cfg = helpers.compose_cfg(
            helpers.train_overrides(
                *DATA,
                "trainer.max_epochs=2",
                "eval.n_boot=300",
                "eval.curves=true",  # (the test settings leave the curves out)
                *helpers.mlflow_overrides(mlflow_uri, "evaluation-report"),
            )
        )
        metrics = run_train(cfg)
    client = MlflowClient(tracking_uri=mlflow_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("evaluation-report").experiment_id])
    out = Path(cfg.paths.output_dir)
    return {"metrics": metrics, "run": run, "client": client, "out": out, "work": work,
            "ckpt": out / "checkpoints" / "best.ckpt"}  # fmt: skip


def test_training_logs_intervals_calibration_and_operating_points(trained) -> None:
    logged, m = trained["run"].data.metrics, trained["metrics"]
    for name in ("balanced_accuracy", "auroc_positive", "sensitivity", "ece", "pauc_spec90",
                 "sensitivity_at_spec90", "sensitivity_at_spec95"):  # fmt: skip
        key = f"test/{name}"
        assert logged[key] == pytest.approx(m[key]), key
        assert logged[f"{key}_ci_low"] <= logged[key] <= logged[f"{key}_ci_high"], key
    assert "group/auroc_positive_ci_low" in logged  # synthetic lesions: two photos each
    preds = read_predictions(trained["out"] / "test_predictions.csv")
    y, s = (preds["label"] == "melanoma").to_numpy(), preds["p_melanoma"].to_numpy()
    assert preds["p_melanoma"].is_unique  # the CSV's 6 decimals keep the scores apart
    assert logged["test/pauc_spec90"] == pytest.approx(roc_auc_score(y, s, max_fpr=0.1), abs=1e-3)
    fpr, tpr, _ = roc_curve(y, s)
    assert logged["test/sensitivity_at_spec95"] == pytest.approx(tpr[fpr <= 0.05].max(), abs=1e-3)
    artifacts = {a.path for a in trained["client"].list_artifacts(trained["run"].info.run_id)}
    assert artifacts >= FILES, FILES - artifacts


def headline(metrics: dict) -> dict:
    return {
        k: v
        for k, v in metrics.items()
        if k.startswith(("test/", "group/")) and ("_ci_" in k or k.split("/")[-1] in
            ("accuracy", "balanced_accuracy", "auroc_positive", "ece", "pauc_spec90",
             "sensitivity_at_spec95"))
    }  # fmt: skip


def test_eval_and_ensemble_report_what_the_test_step_reported(helpers, trained, workdir) -> None:
    expected = headline(trained["metrics"])
    assert len(expected) > 30
    common = [*DATA, "logger=none", "eval.n_boot=300"]
    eval_cfg = helpers.compose_cfg(
        [f"ckpt_path={trained['ckpt']}", *common, "print_config=false",
         "trainer.precision=32-true", "++trainer.enable_progress_bar=false"],
        config_name="eval",
    )  # fmt: skip
    ens_cfg = helpers.compose_cfg(
        [f"checkpoints=['{trained['ckpt']}']", *common], config_name="ensemble"
    )
    for cfg, run in ((eval_cfg, run_eval), (ens_cfg, run_ensemble)):
        got = headline(run(cfg))
        assert set(got) == set(expected), set(got) ^ set(expected)
        for key, value in expected.items():
            assert got[key] == pytest.approx(value, abs=1e-6), (run.__name__, key)
        files = {p.name for p in Path(cfg.paths.output_dir).iterdir()}
        assert files >= FILES, (run.__name__, FILES - files)


def test_a_misspelt_eval_setting_stops_training_before_it_starts(helpers, tmp_path) -> None:
    """(The CLI turns a DataError into one line and exit 2: tests/data/test_bad_input.py.)"""
    with helpers.chdir(tmp_path):
        cfg = helpers.compose_cfg(helpers.train_overrides(*DATA, "+eval.nboot=10"))
        with pytest.raises(DataError, match="eval.nboot is not an evaluation setting"):
            run_train(cfg)
    assert not list(tmp_path.glob("**/*.ckpt"))


def test_bootstrap_seed_changes_the_interval_not_the_estimate(helpers, trained, workdir) -> None:
    cfg = helpers.compose_cfg(
        [f"checkpoints=['{trained['ckpt']}']", *DATA, "logger=none", "eval.n_boot=300",
         "eval.seed=1", "eval.curves=false"],
        config_name="ensemble",
    )  # fmt: skip
    got = run_ensemble(cfg)
    m = trained["metrics"]
    assert got["test/auroc_positive"] == pytest.approx(m["test/auroc_positive"], abs=1e-6)
    assert got["test/auroc_positive_ci_low"] != m["test/auroc_positive_ci_low"]
    assert not (Path(cfg.paths.output_dir) / "roc_curves.png").exists()
    assert np.isfinite(got["test/auroc_positive_ci_high"])


def test_ham10000_subgroups_reach_mlflow(helpers, datasets, mlflow_uri, tmp_path) -> None:
    """The acceptance run at toy scale: ``eval.subgroups=[sex,age_group]`` on HAM10000's
    layout logs the subgroup table, its forest plot and each subgroup's metrics."""
    ham = ["data=ham10000", f"data.root={datasets['ham10000']}", "data.classes=[bkl,mel,nv]"]
    with helpers.chdir(tmp_path):
        cfg = helpers.compose_cfg(
            helpers.train_overrides(
                *ham,
                "trainer.max_epochs=1",
                "eval.subgroups=[sex,age_group]",
                "eval.n_boot=100",
                *helpers.mlflow_overrides(mlflow_uri, "evaluation-subgroups"),
            )
        )
        metrics = run_train(cfg)
    client = MlflowClient(tracking_uri=mlflow_uri)
    (run,) = client.search_runs(
        [client.get_experiment_by_name("evaluation-subgroups").experiment_id]
    )
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"subgroups.csv", "subgroups.png", "subgroup_gaps.csv"} <= artifacts
    table = pd.read_csv(Path(cfg.paths.output_dir) / "subgroups.csv", keep_default_na=False)
    preds = read_predictions(Path(cfg.paths.output_dir) / "test_predictions.csv")
    assert set(table["attribute"]) == {"sex", "age_group"}
    for attribute in ("sex", "age_group"):  # every test image in exactly one subgroup
        assert table.loc[table["attribute"] == attribute, "images"].sum() == len(preds)
    for row in table.itertuples():
        key = f"subgroup/{row.attribute}/{metric_safe(row.subgroup)}/balanced_accuracy"
        assert run.data.metrics[key] == pytest.approx(row.balanced_accuracy, abs=1e-5)
        assert metrics[key] == pytest.approx(row.balanced_accuracy, abs=1e-5)


def test_a_subgroup_the_data_lacks_stops_training_before_it_starts(
    helpers, datasets, tmp_path
) -> None:
    ham = ["data=ham10000", f"data.root={datasets['ham10000']}", "data.classes=[bkl,mel,nv]"]
    with helpers.chdir(tmp_path):
        cfg = helpers.compose_cfg(helpers.train_overrides(*ham, "eval.subgroups=[gender]"))
        with pytest.raises(DataError, match=r"eval.subgroups names 'gender'.*'sex'"):
            run_train(cfg)
    assert not list(tmp_path.glob("**/*.ckpt"))


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory, helpers) -> dict:
    """A glaucoma-layout run with ``eval.calibrate=temperature eval.threshold=sensitivity@0.9``."""
    work = tmp_path_factory.mktemp("calibrated")
    root = helpers.make_imagefolder(work / "fundus", ["NRG", "RG"], per_class=20, seed=3)
    data = ["data=glaucoma", f"data.root={root}"]
    with helpers.chdir(work):
        cfg = helpers.compose_cfg(
            helpers.train_overrides(
                *data, "trainer.max_epochs=2", "eval.n_boot=100",
                "eval.calibrate=temperature", "eval.threshold=sensitivity@0.9",
            )
        )  # fmt: skip
        metrics = run_train(cfg)
    out = Path(cfg.paths.output_dir)
    return {"metrics": metrics, "out": out, "root": root, "data": data, "work": work,
            "ckpt": out / "checkpoints" / "best.ckpt"}  # fmt: skip


def test_temperature_and_threshold_are_fitted_on_validation_and_kept(calibrated) -> None:
    """Recomputed from the kept model's own validation logits (``val_logits.npz``): the
    temperature minimises the NLL of ``softmax(log p / T)``, the threshold is the rule's on the
    tempered probabilities, which ``val_predictions.csv`` shows; test keeps both unchanged."""
    import torch

    from medcls.evaluation.calibration import apply_temperature, choose_threshold, fit_temperature
    from medcls.evaluation.oof import read_val_logits
    from medcls.evaluation.probability import view_probs

    meta = torch.load(calibrated["ckpt"], map_location="cpu", weights_only=True)["medcls"]
    cal = meta["calibration"]
    fold = read_val_logits(calibrated["out"] / "val_logits.npz")
    tau = meta.get("logit_adjustment", {}).get("tau", 0.0)  # (recipe=default tunes it)
    raw = view_probs(fold.logits, -tau * fold.logp_prior)  # the model's probability, untempered
    assert cal["temperature"] == pytest.approx(fit_temperature(raw, fold.labels), rel=1e-3)
    val = read_predictions(calibrated["out"] / "val_predictions.csv")
    probs = val[["p_NRG", "p_RG"]].to_numpy()
    np.testing.assert_allclose(probs, apply_temperature(raw, cal["temperature"]), atol=2e-6)
    labels = (val["label"] == "RG").to_numpy().astype(int)
    assert cal["threshold"] == pytest.approx(
        choose_threshold(probs[:, 1], labels == 1, "sensitivity@0.9"), abs=1e-4
    )
    # test: the threshold from validation, unchanged; the CSV shows tempered probabilities
    test = read_predictions(calibrated["out"] / "test_predictions.csv")
    tp = test["p_RG"].to_numpy()
    y = (test["label"] == "RG").to_numpy()
    m = calibrated["metrics"]
    assert m["test/decision_threshold"] == pytest.approx(cal["threshold"])
    assert m["test/sensitivity_at_threshold"] == pytest.approx(
        (tp[y] >= cal["threshold"]).mean(), abs=1e-4
    )
    assert list(test["prediction"]) == list(np.where(tp >= cal["threshold"], "RG", "NRG"))


def test_eval_and_predict_apply_the_checkpoints_calibration(helpers, calibrated, workdir) -> None:
    from medcls.workflows.predict import run_predict

    cfg = helpers.compose_cfg(
        [f"ckpt_path={calibrated['ckpt']}", *calibrated["data"], "logger=none", "eval.n_boot=100",
         "print_config=false", "trainer.precision=32-true", "++trainer.enable_progress_bar=false"],
        config_name="eval",
    )  # fmt: skip
    got = run_eval(cfg)
    for key in ("test/sensitivity_at_threshold", "test/specificity_at_threshold",
                "test/ece_calibrated", "test/decision_threshold", "test/temperature"):  # fmt: skip
        assert got[key] == pytest.approx(calibrated["metrics"][key], abs=1e-6), key

    threshold = calibrated["metrics"]["test/decision_threshold"]
    test = read_predictions(calibrated["out"] / "test_predictions.csv")
    cfg = helpers.compose_cfg(
        [f"ckpt_path={calibrated['ckpt']}", f"input={calibrated['root']}", "output=p.csv"],
        config_name="predict",
    )
    pred = read_predictions(run_predict(cfg)).set_index("path").loc[test["path"]]
    # medcls-predict gives the very probabilities (tempered) and decisions the test reported
    expected = test[["p_NRG", "p_RG"]].to_numpy()
    np.testing.assert_allclose(pred[["p_NRG", "p_RG"]].to_numpy(), expected, atol=1e-5)
    called = np.where(pred["p_RG"].to_numpy() >= threshold, "RG", "NRG")
    assert list(pred["prediction"]) == list(called) == list(test["prediction"])

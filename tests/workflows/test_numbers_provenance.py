"""Every number knows which images it came from (issue "numbers a reviewer can trust, part 3").

- medcls-eval / -ensemble rebuild the run's own test partition from the checkpoint's split,
  whatever seed the command's config has, and stop when the data no longer gives it;
- a fold study's test partition is the same for every fold, and its ensemble scores exactly it;
- one definition of the model's probability (views, logit bias, temperature) for fitting,
  testing and deployment: medcls-predict reproduces ``test_predictions.csv``;
- post-hoc fitting starts from bias-free logits, so fitting twice gives the same;
- ``val/*`` beside test are the kept checkpoint's; in-sample test figures are said.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score

from medcls.data.splits import make_splits
from medcls.errors import DataError
from medcls.evaluation.files import read_predictions
from medcls.evaluation.oof import read_val_logits
from medcls.evaluation.posthoc import fit_posthoc
from medcls.evaluation.settings import EvalSettings
from medcls.workflows.ensemble import run_ensemble
from medcls.workflows.evaluate import run_eval
from medcls.workflows.predict import run_predict
from medcls.workflows.train import run_train

SYNTH = ["data=synthetic", "data.num_samples=100", "data.num_classes=2", "data.native_size=32"]
QUIET = ["logger=none", "print_config=false", "trainer.precision=32-true",
         "++trainer.enable_progress_bar=false", "eval.n_boot=50", "eval.curves=false"]  # fmt: skip


def ids_of(path: Path) -> list[str]:
    return sorted(read_predictions(path)["image_id"])


def eval_cfg(helpers, ckpt: Path, *extra: str):
    return helpers.compose_cfg([f"ckpt_path={ckpt}", *QUIET, *extra], config_name="eval")


# -- 1. medcls-eval scores the run's own test images -------------------------------------------
@pytest.fixture(scope="module")
def seed7(tmp_path_factory, helpers) -> dict:
    work = tmp_path_factory.mktemp("seed7")
    with helpers.chdir(work):
        cfg = helpers.compose_cfg(helpers.train_overrides(*SYNTH, "seed=7", "trainer.max_epochs=1"))
        run_train(cfg)
    out = Path(cfg.paths.output_dir)
    return {"out": out, "ckpt": out / "checkpoints" / "best.ckpt", "work": work}


def test_eval_with_default_seed_scores_exactly_the_runs_test_images(helpers, seed7, workdir):
    run_eval(eval_cfg(helpers, seed7["ckpt"], *SYNTH))
    evaluated = ids_of(next(workdir.glob("**/test_predictions.csv")))
    assert evaluated == ids_of(seed7["out"] / "test_predictions.csv")
    # negative control: eval.yaml's own seed (42) would have carved another test partition
    from medcls.data.sources import load_source

    cfg = eval_cfg(helpers, seed7["ckpt"], *SYNTH)
    records = load_source(cfg.data).records
    default = make_splits(records, ["0", "1"], seed=42)["test"]
    assert sorted(records[i].image_id for i in default) != evaluated


def test_eval_stops_when_the_data_no_longer_gives_the_test_partition(helpers, seed7, workdir):
    cfg = eval_cfg(helpers, seed7["ckpt"], *SYNTH[:1], "data.num_samples=120", *SYNTH[2:])
    with pytest.raises(DataError, match=r"no longer gives the test partition.*are new"):
        run_eval(cfg)


def test_the_checkpoint_and_its_split(seed7) -> None:
    meta = torch.load(seed7["ckpt"], map_location="cpu", weights_only=True)["medcls"]
    split = meta["split"]
    assert split["settings"]["split_seed"] == 7
    assert split["test_ids"] == ids_of(seed7["out"] / "test_predictions.csv")


# -- 2. a fold study is ensembled on the test images every fold reported -------------------------
def test_fold_ensemble_on_an_official_val_list_scores_every_folds_test(helpers, tmp_path):
    train_root = helpers.make_imagefolder(tmp_path / "train", ["a", "b"], per_class=18, seed=1)
    val_root = helpers.make_imagefolder(tmp_path / "val", ["a", "b"], per_class=6, seed=2)
    data = ["data=imagefolder", f"data.root={train_root}", f"data.val_root={val_root}",
            "data.num_folds=3", "data.test_fraction=0.25"]  # fmt: skip
    sweep = tmp_path / "sweep"
    with helpers.chdir(tmp_path):
        for fold in range(3):
            over = helpers.train_overrides(*data, f"data.fold={fold}", "trainer.max_epochs=1")
            run_train(helpers.compose_cfg(over, output_dir=sweep / str(fold)))
        reported = [ids_of(sweep / str(k) / "test_predictions.csv") for k in range(3)]
        assert reported[0] == reported[1] == reported[2]
        quiet = [q for q in QUIET if not q.startswith(("print_config", "trainer", "++trainer"))]
        cfg = helpers.compose_cfg([f"sweep_dir={sweep}", *data, *quiet], config_name="ensemble")
        result = run_ensemble(cfg)
    ensembled = ids_of(Path(cfg.paths.output_dir) / "ensemble_predictions.csv")
    assert ensembled == reported[0]
    assert result["oof/posthoc_cross_fitted"] == 1.0  # every fold kept its validation logits


# -- 4, 5. one probability from fitting to deployment; fitting twice gives the same -------------
@pytest.fixture(scope="module")
def tta_run(tmp_path_factory, helpers) -> dict:
    work = tmp_path_factory.mktemp("tta_run")
    root = helpers.make_imagefolder(work / "folder", ["NRG", "RG"], per_class=24, seed=5)
    data = ["data=imagefolder", f"data.root={root}"]
    with helpers.chdir(work):
        cfg = helpers.compose_cfg(
            helpers.train_overrides(
                *data, "trainer.max_epochs=2", "eval.n_boot=50", "eval.tta=[hflip,vflip]",
                "eval.logit_adjustment=tuned", "eval.calibrate=temperature",
                "eval.threshold=youden",
            )
        )  # fmt: skip
        metrics = run_train(cfg)
    out = Path(cfg.paths.output_dir)
    return {"metrics": metrics, "out": out, "root": root, "work": work,
            "ckpt": out / "checkpoints" / "best.ckpt"}  # fmt: skip


def test_predict_reproduces_the_test_probabilities_with_tta(helpers, tta_run, workdir) -> None:
    meta = torch.load(tta_run["ckpt"], map_location="cpu", weights_only=True)["medcls"]
    assert meta["tta"] == ["hflip", "vflip"]
    test = read_predictions(tta_run["out"] / "test_predictions.csv")
    cfg = helpers.compose_cfg(
        [f"ckpt_path={tta_run['ckpt']}", f"input={tta_run['root']}", "output=p.csv"],
        config_name="predict",
    )
    pred = read_predictions(run_predict(cfg)).set_index("path").loc[test["path"]]
    cols = ["p_NRG", "p_RG"]
    assert np.abs(pred[cols].to_numpy() - test[cols].to_numpy()).max() <= 1e-5
    assert list(pred["prediction"]) == list(test["prediction"])
    # negative control: one view (what deployment once ran) gives other probabilities
    from medcls.deploy.predictor import Predictor

    predictor = Predictor.from_checkpoint(str(tta_run["ckpt"]))
    images = predictor.prepare(list(test["path"]))
    one_view = predictor.predict_prepared(images, tta=[])
    assert np.abs(one_view - test[cols].to_numpy()).max() > 1e-4
    # and medcls.load(...).predict is the same path as medcls-predict
    assert np.abs(predictor.predict(list(test["path"])) - test[cols].to_numpy()).max() <= 1e-5


def test_posthoc_fitting_twice_gives_the_same(tta_run) -> None:
    """Refit from the kept checkpoint (which now carries the fitted logit bias): the view
    logits are bias-free, so τ, temperature and threshold come out as stored."""
    from medcls.tasks.checkpoint import load_task

    meta = torch.load(tta_run["ckpt"], map_location="cpu", weights_only=True)["medcls"]
    task, _ = load_task(str(tta_run["ckpt"]))
    assert task.logit_bias.abs().sum() > 0 or meta["logit_adjustment"]["tau"] == 0
    fold = read_val_logits(tta_run["out"] / "val_logits.npz")
    assert fold.logits.shape[1] == 3  # the original + two views
    settings = EvalSettings.from_cfg(fold.settings)
    again = fit_posthoc(fold.logits, fold.labels, fold.groups, fold.logp_prior, 1, settings)
    assert again.tau == pytest.approx(meta["logit_adjustment"]["tau"])
    assert again.calibration.temperature == pytest.approx(meta["calibration"]["temperature"])
    assert again.calibration.threshold == pytest.approx(meta["calibration"]["threshold"])
    # and once more on what it produced: a fixed point
    twice = fit_posthoc(fold.logits, fold.labels, fold.groups, fold.logp_prior, 1, settings)
    assert (twice.tau, twice.calibration) == (again.tau, again.calibration)


def test_the_bias_never_enters_the_view_logits(tta_run) -> None:
    from medcls.tasks.checkpoint import load_task
    from medcls.tasks.inference import predict_view_logits

    task, _ = load_task(str(tta_run["ckpt"]))
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    loader = [{"image": x, "label": torch.zeros(4, dtype=torch.long), "index": torch.arange(4)}]
    before = predict_view_logits(task, loader)["logits"]
    task.logit_bias.add_(torch.tensor([5.0, -5.0]))
    np.testing.assert_allclose(predict_view_logits(task, loader)["logits"], before, atol=1e-6)


# -- val/* of the kept model; in-sample test figures --------------------------------------------
def test_val_metrics_and_the_optimized_metric_are_the_kept_models(helpers, tmp_path) -> None:
    from medcls.cli.train import optimized_value

    with helpers.chdir(tmp_path):
        cfg = helpers.compose_cfg(
            helpers.train_overrides(*SYNTH, "trainer.max_epochs=3", "monitor_mode=min",
                                    "callbacks.early_stopping=null")
        )  # fmt: skip
        metrics = run_train(cfg)
    val = read_predictions(Path(cfg.paths.output_dir) / "val_predictions.csv")
    y, pred = val["label"].to_numpy(), val["prediction"].to_numpy()
    kept = balanced_accuracy_score(y, pred)
    assert metrics["val/balanced_accuracy"] == pytest.approx(kept, abs=1e-6)
    assert optimized_value(metrics, "val/balanced_accuracy") == pytest.approx(kept, abs=1e-6)


def test_scoring_the_validation_partition_is_tagged_in_sample(helpers, tmp_path, mlflow_uri):
    from mlflow.tracking import MlflowClient

    with helpers.chdir(tmp_path):
        over = helpers.train_overrides(*SYNTH, "trainer.max_epochs=1", "data.test_partition=val")
        over += helpers.mlflow_overrides(mlflow_uri, "in-sample-tag")
        run_train(helpers.compose_cfg(over))
    client = MlflowClient(tracking_uri=mlflow_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("in-sample-tag").experiment_id])
    assert run.data.tags["medcls.scored_partition"] == "val (in-sample)"
    assert len(run.data.tags["split.test_digest"]) == 16


def test_digest_mismatch_message_names_what_changed() -> None:
    from medcls.data.provenance import check_test_partition, split_provenance
    from medcls.data.records import Record

    recs = [Record(f"/d/img{i}.png", i % 2) for i in range(6)]
    prov = split_provenance({"name": "x", "split_seed": 1}, recs[:4], 2)
    check_test_partition(prov, list(reversed(recs[:4])), 2, "best.ckpt")  # order does not matter
    with pytest.raises(DataError, match=r"1 of its test images are gone.*img3.*1 images are new"):
        check_test_partition(prov, [*recs[:3], recs[5]], 2, "best.ckpt")
    assert pd.Series(prov["test_ids"]).is_monotonic_increasing

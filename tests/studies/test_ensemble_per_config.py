"""run_ensembles_per_config: a sweep of two configurations × two folds gives two ensembles, each
of its own configuration's models only, each an MLflow run tagged with the configuration (and
its jobs' tags, e.g. the ablation row) so medcls-report can put it in that row."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from medcls.workflows.ensemble import run_ensembles_per_config
from medcls.workflows.train import run_train

DATA = ["data=synthetic", "data.num_samples=100", "data.native_size=32"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, helpers) -> dict:
    """``<sweep>/<job>/`` as a multirun leaves it: jobs 0, 1 = row "no dense layers" (model a),
    jobs 2, 3 = row "full" (model b); each with best.ckpt, Hydra's overrides, the resolved config
    and half of the validation predictions (the fold's out-of-fold part)."""
    work = tmp_path_factory.mktemp("per_config")
    root = work / "sweep"
    models = {}
    with helpers.chdir(work):
        for name, lr in (("a", "1e-3"), ("b", "3e-2")):
            cfg = helpers.compose_cfg(
                helpers.train_overrides(
                    "trainer.max_epochs=1", "++trainer.limit_train_batches=2", f"optimizer.lr={lr}"
                )
            )
            models[name] = (run_train(cfg), Path(cfg.paths.output_dir), cfg)
    rows = [("no_dense", "no dense layers", "a"), ("full", "full", "b")]
    for job in range(4):
        row, label, model = rows[job // 2]
        metrics, run_dir, cfg = models[model]
        out = root / str(job)
        (out / "checkpoints").mkdir(parents=True)
        (out / "checkpoints" / "best.ckpt").write_bytes(
            (run_dir / "checkpoints" / "best.ckpt").read_bytes()
        )
        (out / ".hydra").mkdir()
        (out / ".hydra" / "overrides.yaml").write_text(
            f"- ablation={row}\n- data.fold={job % 2}\n- data=synthetic\n"
        )
        job_cfg = OmegaConf.to_container(cfg, resolve=True)
        job_cfg["tags"] = {"ablation": label}
        OmegaConf.save(OmegaConf.create(job_cfg), out / "resolved_config.yaml")
        val = pd.read_csv(run_dir / "val_predictions.csv", dtype=str)
        half = len(val) // 2
        (val[:half] if job % 2 == 0 else val[half:]).to_csv(
            out / "val_predictions.csv", index=False
        )
    return {"root": root}


def test_one_ensemble_per_configuration(helpers, sweep, workdir, mlflow_uri) -> None:
    cfg = helpers.compose_cfg(
        [
            *helpers.mlflow_overrides(mlflow_uri, "per-config"),
            *DATA,
            f"sweep_dir={sweep['root']}",
            "per_config=true",
            "eval.tta=[hflip]",
        ],
        config_name="ensemble",
    )
    results = run_ensembles_per_config(cfg)
    assert list(results) == ["ablation=no_dense data=synthetic", "ablation=full data=synthetic"]
    out = Path(cfg.paths.output_dir)
    for i, config in enumerate(results):
        preds = pd.read_csv(out / f"config{i}" / "ensemble_predictions.csv")
        assert len(preds) == 20  # the synthetic test partition
        oof = pd.read_csv(out / f"config{i}" / "oof_predictions.csv", dtype=str)
        assert sorted(oof["job"].astype(int).unique()) == [2 * i, 2 * i + 1]
        oof_accuracy = (oof["label"] == oof["prediction"]).mean()
        assert results[config]["oof/accuracy"] == pytest.approx(oof_accuracy, abs=1e-6)

    # the logger took the jobs' experiment (their resolved config), here "medcls"
    client = MlflowClient(tracking_uri=mlflow_uri)
    exp = client.get_experiment_by_name("medcls")
    runs = client.search_runs([exp.experiment_id], "tags.`medcls.role` = 'ensemble'")
    mine = [r for r in runs if r.data.tags.get("medcls.config") in results]
    by_row = {r.data.tags["ablation"]: r for r in mine}
    assert sorted(by_row) == ["full", "no dense layers"]
    for row, jobs in (("no dense layers", ("0", "1")), ("full", ("2", "3"))):
        ckpts = by_row[row].data.tags["checkpoints"].split()
        assert [Path(p).parent.parent.name for p in ckpts] == list(jobs)
        assert by_row[row].info.run_name == f"ensemble-{row}"
        assert by_row[row].data.tags["tta"] == "hflip"


def test_one_configuration_is_the_plain_ensemble(helpers, sweep, workdir) -> None:
    """A plain CV sweep (one configuration): files in the output dir itself, as before."""
    root = sweep["root"]
    single = workdir / "single"
    single.mkdir()
    for job in ("0", "1"):
        (single / job).symlink_to(root / job, target_is_directory=True)
    cfg = helpers.compose_cfg(
        ["logger=none", *DATA, f"sweep_dir={single}", "per_config=true"], config_name="ensemble"
    )
    (config,) = run_ensembles_per_config(cfg)
    assert config == "ablation=no_dense data=synthetic"
    assert (Path(cfg.paths.output_dir) / "ensemble_predictions.csv").is_file()

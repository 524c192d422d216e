"""The backbone comparison study (Zhao & Yoshino) end to end, as docs/studies/attention_effnetv2.md runs it:
``medcls-train -m experiment=isic2019_backbones model=...`` then
``medcls-report experiment=isic2019_backbones``: one MLflow run per backbone, each with its
Table-1 per-class files, and the Table-2 layout (metrics as rows, a column per backbone).

On tiny synthetic images always; on HAM10000 at 64 px (the acceptance run) when ../shared/data
holds it."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

TABLE2_ROWS = ["Acc", "Precision", "Recall", "F1-score"]
TABLE1_FILES = {"per_class_metrics.csv", "per_class_metrics.md", "test_predictions.csv"}


def _study(helpers, workdir: Path, models: list[str], data: list[str], experiment: str) -> dict:
    """Run the sweep and the report; return what they left in MLflow and on disk."""
    uri = helpers.sqlite_uri(workdir / "study.db")
    common = [
        "experiment=isic2019_backbones",
        *data,
        "model.pretrained=false",
        "print_config=false",
        "++trainer.enable_progress_bar=false",
        "++trainer.enable_model_summary=false",
    ]
    proc = helpers.run_cli(
        "medcls-train",
        ["-m", f"model={','.join(models)}", *common, f"logger.mlflow.tracking_uri={uri}"],
        cwd=workdir,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = helpers.run_cli(
        "medcls-report",
        [
            "experiment=isic2019_backbones",
            *[d for d in data if d.startswith("data=")],
            f"tracking_uri={uri}",
            "bootstrap=100",
            "output_dir=report",
        ],
        cwd=workdir,
    )
    assert report.returncode == 0, report.stdout[-3000:] + report.stderr[-3000:]
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, [e.name for e in client.search_experiments()]
    runs = [
        r
        for r in client.search_runs([exp.experiment_id])
        if r.data.tags.get("medcls.role") != "sweep"
    ]
    return {"client": client, "runs": runs, "stdout": report.stdout, "dir": workdir / "report"}


def _printed_rows(stdout: str) -> list[str]:
    """First-column labels of the rich tables medcls-report prints (``│ label │ …``); a wrapped
    cell's continuation lines have an empty first cell."""
    cells = (line.split("│")[1].strip() for line in stdout.splitlines() if line.startswith("│"))
    return [c for c in cells if c]


def _check(study: dict, models: list[str]) -> None:
    runs, client = study["runs"], study["client"]
    assert sorted(r.data.tags["backbone"] for r in runs) == sorted(models)
    for r in runs:
        assert r.info.status == "FINISHED"
        artifacts = {a.path for a in client.list_artifacts(r.info.run_id)}
        assert artifacts >= TABLE1_FILES, artifacts
    # Table 2: metrics as rows, one column per backbone, in the order they ran
    # (after the run count, the paper's rows in its order, then any bootstrap CI rows)
    table = pd.read_csv(study["dir"] / "report.csv", index_col=0)
    assert list(table.columns) == models
    rows = list(table.index)
    assert rows[:5] == ["runs", *TABLE2_ROWS] and all("CI" in r for r in rows[5:]), rows
    for r in runs:
        acc = r.data.metrics["test/accuracy"]
        assert table.loc["Acc", r.data.tags["backbone"]].startswith(f"{acc:.4f}")
    header = next(line for line in study["stdout"].splitlines() if models[0] in line)
    assert sorted(models, key=header.find) == models and all(m in header for m in models)
    assert re.search(r"F1-score\s*│", study["stdout"])
    printed = [r for r in _printed_rows(study["stdout"]) if r in ("runs", *TABLE2_ROWS)]
    assert printed == ["runs", *TABLE2_ROWS], printed
    md = (study["dir"] / "report.md").read_text().splitlines()
    md_rows = [line.split("|")[1].strip() for line in md if line.startswith("| ")][1:]
    assert md_rows == rows and (study["dir"] / "report.png").is_file()


@pytest.mark.slow  # a whole study (two backbones, the report): the slow tier
def test_study_on_synthetic_images(helpers, workdir: Path) -> None:
    models = ["shufflenet", "attention_effnetv2"]
    data = [
        "data=synthetic",
        "data.num_samples=100",
        "data.native_size=32",
        "data.image_size=32",
        "data.batch_size=16",
        "trainer.max_epochs=1",
        "++trainer.limit_train_batches=2",
        "trainer.precision=32-true",
    ]
    study = _study(helpers, workdir, models, data, "backbones-synthetic")
    _check(study, models)


@pytest.mark.realdata
@pytest.mark.slow
def test_study_on_ham10000_at_64px(helpers, workdir: Path, cache_dir, ham10000_subset) -> None:
    """The acceptance run: three backbones that train fast on a CPU (torchvision's AlexNet and
    ShuffleNetV2, timm's MobileNet), 64 px, a short epoch, no pretraining. (The EfficientNets
    cost several times more per image on a CPU, the attention one most: it runs in the
    synthetic study above, and for a whole epoch in docs/studies/attention_effnetv2.md.)"""
    ham = helpers.shared_data("ham10000", "HAM10000_metadata.csv")
    models = ["alexnet", "shufflenet", "mobilenet"]
    data = [
        "data=ham10000",
        f"data.root={ham}",
        f"data.metadata_csv={ham10000_subset}",  # the session's lesion subset, decoded once
        f"data.image_size={helpers.HAM_SUBSET_SIZE}",
        "data.batch_size=128",
        "trainer.max_epochs=1",
        "++trainer.limit_train_batches=4",
        f"paths.cache_dir={cache_dir}",
    ]
    study = _study(helpers, workdir, models, data, "backbones-ham10000")
    _check(study, models)
    for r in study["runs"]:
        assert r.data.tags["dataset"] == "ham10000"
        assert r.data.params["data.normalize"] == "dataset"
        assert r.data.params["augmentation.name"] == "seed_isic2019"

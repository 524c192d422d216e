"""``medcls.studies.report``: configuration labels, mean ± std, bootstrap units, paired
comparison and the written table (the end-to-end CLI run is in tests/cli/test_cv.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medcls.errors import DataError
from medcls.studies import report

CLASSES = ["a", "b", "c"]
IGNORE = ["data.fold", "data.num_folds", "seed", "hydra.*"]


class FakeClient:
    """Serves prediction CSVs as MLflow artifacts: ``{run_id: path}``."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.files = files

    def download_artifacts(self, run_id: str, name: str) -> str:
        if name != "test_predictions.csv" or run_id not in self.files:
            raise OSError(f"no artifact {name} in {run_id}")
        return str(self.files[run_id])


def predictions(
    path: Path, labels: np.ndarray, preds: np.ndarray, groups: list[str] | None = None
) -> Path:
    n = len(labels)
    probs = np.full((n, len(CLASSES)), 0.1)
    probs[np.arange(n), preds] = 0.8
    df = pd.DataFrame(
        {
            "path": [f"img{i:03d}.png" for i in range(n)],
            "image_id": [f"img{i:03d}" for i in range(n)],
            "group": groups or [""] * n,
            "label": [CLASSES[i] for i in labels],
            "prediction": [CLASSES[i] for i in preds],
            **{f"p_{c}": probs[:, j] for j, c in enumerate(CLASSES)},
        }
    )
    df.to_csv(path, index=False)
    return path


def test_config_label_drops_fold_seed_and_hydra_keys() -> None:
    overrides = "model.name=resnet18 data.fold=2 seed=3 +hydra.sweep.dir=x loss=focal"
    assert report.config_label(overrides, IGNORE) == "model.name=resnet18 loss=focal"
    assert report.config_label("data.fold=0", IGNORE) == ""


def test_summarize_is_mean_and_sample_std_per_configuration() -> None:
    table = pd.DataFrame(
        {
            "config": ["A", "A", "A", "B"],
            "run_id": ["1", "2", "3", "4"],
            "m": [0.5, 0.6, 0.7, 0.9],
            "missing": [np.nan] * 4,
        }
    )
    out = report.summarize(table, ["m", "missing"])
    assert out.loc["A", "runs"] == 3 and out.loc["B", "runs"] == 1
    # rows hold numbers ...
    assert out.loc["A", "m"] == pytest.approx(0.6) and out.loc["A", "m std"] == pytest.approx(0.1)
    assert out.loc["B", "m"] == pytest.approx(0.9) and np.isnan(out.loc["B", "m std"])
    # ... which become text where printed or written
    shown = report.format_table(out, ["m", "missing"])
    assert shown.loc["A", "m"] == "0.6000 ± 0.1000"
    assert shown.loc["B", "m"] == "0.9000"  # one run: its value, no made-up spread (nor NaN)
    assert shown.loc["A", "missing"] == "—"


def test_bootstrap_units_are_groups_where_known_else_images() -> None:
    df = pd.DataFrame({"path": ["x", "y", "z"], "group": ["HAM_1", "", "HAM_1"]})
    units = report.bootstrap_units(df)
    assert units[0] == units[2] != units[1]
    assert report.bootstrap_units(df.drop(columns="group")).tolist() == ["x", "y", "z"]


def test_pooled_interval_resamples_images_not_rows(tmp_path) -> None:
    """Three fold models that predict the same 60 test images alike: the pooled interval is the
    single model's interval (the evaluation report's, on its predictions), not one √3 narrower
    as if there were 180 images."""
    from medcls.evaluation import EvalSettings, Predictions
    from medcls.evaluation.report import headline_metrics

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 60)
    preds = np.where(rng.random(60) < 0.7, labels, (labels + 1) % 3)
    files = {r: predictions(tmp_path / f"{r}.csv", labels, preds) for r in ("r1", "r2", "r3")}
    table = pd.DataFrame({"config": ["A"] * 3, "run_id": ["r1", "r2", "r3"], "test/m": [0.7] * 3})
    metrics = ["test/balanced_accuracy", "test/auroc_macro"]
    for m in metrics:
        table[m] = 0.7
    summary = report.add_bootstrap(
        report.summarize(table, metrics), table, FakeClient(files), metrics, 300
    )
    one = pd.read_csv(files["r1"])
    probs = one[[f"p_{c}" for c in CLASSES]].to_numpy()
    alone = headline_metrics(
        Predictions(probs, labels, [None] * 60, CLASSES),
        EvalSettings(n_boot=300),
        list(one["path"]),
    )
    for m in metrics:
        name = m.split("/")[1]
        assert summary.loc["A", f"{m} ci_low"] == pytest.approx(alone[f"{name}_ci_low"])
        assert summary.loc["A", f"{m} ci_high"] == pytest.approx(alone[f"{name}_ci_high"])
    shown = report.format_table(summary, metrics)
    lo, hi = alone["balanced_accuracy_ci_low"], alone["balanced_accuracy_ci_high"]
    assert shown.loc["A", "test/balanced_accuracy 95% CI"] == f"[{lo:.4f}, {hi:.4f}]"


def test_overrides_every_row_shares_are_said_once() -> None:
    labels, shared = report.drop_shared_overrides(
        ["model=a data=ham lr=0.1", "model=b data=ham lr=0.1", "model=c data=ham lr=0.2"]
    )
    assert labels == ["model=a lr=0.1", "model=b lr=0.1", "model=c lr=0.2"]
    assert shared == ["data=ham"]
    assert report.drop_shared_overrides(["model=a x=1"]) == (["model=a x=1"], [])
    # a label that would be left empty keeps its overrides
    assert report.drop_shared_overrides(["x=1", "x=1 y=2"])[0] == ["x=1", "y=2"]


def test_compare_configs_pairs_the_same_images(tmp_path) -> None:
    labels = np.arange(40) % 3
    worse = labels.copy()
    worse[:12] = (labels[:12] + 1) % 3  # A misses 12 images that B gets right
    files = {
        "a": predictions(tmp_path / "a.csv", labels, worse),
        "b": predictions(tmp_path / "b.csv", labels, labels),
    }
    table = pd.DataFrame({"config": ["A", "B"], "run_id": ["a", "b"]})
    result = report.compare_configs(table, FakeClient(files), "A", "B", "accuracy", 500)
    assert result["images"] == 40
    assert result["mcnemar"]["only_a_correct"] == 0
    assert result["mcnemar"]["only_b_correct"] == 12
    assert result["mcnemar"]["p_value"] < 0.001
    assert result["paired_bootstrap"]["difference"] == pytest.approx(12 / 40)
    assert result["paired_bootstrap"]["ci_low"] > 0
    with pytest.raises(DataError, match="no runs for configuration 'C'"):
        report.compare_configs(table, FakeClient(files), "A", "C", "accuracy", 10)


@pytest.mark.parametrize("layout", ["configs_as_rows", "metrics_as_rows"])
def test_written_table_follows_the_layout(tmp_path, layout) -> None:
    table = pd.DataFrame(
        {"config": ["A", "A", "B"], "run_id": ["1", "2", "3"], "m1": [0.5, 0.7, 0.8], "m2": 0.1}
    )
    summary = report.summarize(table, ["m1", "m2"])
    md, csv, png = report.write_outputs(summary, ["m1", "m2"], layout, str(tmp_path), "t")
    written = pd.read_csv(csv, index_col=0)
    rows = ["A", "B"] if layout == "configs_as_rows" else ["runs", "m1", "m2"]
    assert list(written.index) == rows
    assert "0.6000 ± 0.1414" in Path(md).read_text()
    assert Path(png).stat().st_size > 1000


def test_unknown_experiment_is_a_clear_error(tmp_path) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(DataError, match="experiment 'nope' not found"):
        report.fetch_runs(client, "nope")


def test_subgroup_table_per_configuration(tmp_path) -> None:
    from types import SimpleNamespace

    def run(run_id: str, female: float, male: float, ci: bool) -> SimpleNamespace:
        m = {"subgroup/sex/female/balanced_accuracy": female, "subgroup/sex/female/images": 40,
             "subgroup/sex/male/balanced_accuracy": male, "subgroup/sex/male/images": 60,
             "subgroup/sex/gap_balanced_accuracy": abs(female - male), "test/accuracy": 0.7}  # fmt: skip
        if ci:
            m["subgroup/sex/female/balanced_accuracy_ci_low"] = female - 0.1
            m["subgroup/sex/female/balanced_accuracy_ci_high"] = female + 0.1
        return SimpleNamespace(info=SimpleNamespace(run_id=run_id), data=SimpleNamespace(metrics=m))

    runs = [run("1", 0.8, 0.6, False), run("2", 0.6, 0.6, False), run("3", 0.7, 0.5, True)]
    table = pd.DataFrame({"config": ["A", "A", "B"], "run_id": ["1", "2", "3"]})
    sub = report.subgroup_summary(runs, table).set_index(["config", "subgroup"])
    assert sub.loc[("A", "female"), "balanced_accuracy"] == pytest.approx(0.7)
    assert sub.loc[("A", "female"), "balanced_accuracy std"] == pytest.approx(
        np.std([0.8, 0.6], ddof=1)
    )
    assert sub.loc[("A", "largest gap"), "balanced_accuracy"] == pytest.approx(0.1)
    shown = report.format_subgroups(sub.reset_index()).set_index(["config", "subgroup"])
    assert shown.loc[("A", "female"), "balanced_accuracy"] == "0.7000 ± 0.1414"
    assert shown.loc[("B", "female"), "balanced_accuracy"] == "0.7000 [0.6000, 0.8000]"
    assert shown.loc[("B", "male"), "images"] == "60"
    csv, md = report.write_subgroups(sub.reset_index(), str(tmp_path), "t")
    assert "0.7000 ± 0.1414" in Path(md).read_text()
    assert pd.read_csv(csv)["balanced_accuracy"].notna().all()

"""Frozen-feature probes (task=knn, task=linear_probe): their predictions are scikit-learn's on
the backbone's frozen features, those features are what the backbone makes of the decoded
images, a sweep's second run decodes and embeds nothing, and a damaged cache is rebuilt."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler

import medcls.data.cache as cache_module
import medcls.data.datamodule as datamodule_module
import medcls.data.features as features_module
from medcls.data.features import load_features
from medcls.errors import DataError
from medcls.evaluation.files import read_predictions
from medcls.tasks.factory import create_task_model
from medcls.tasks.probes import probe_grid
from medcls.workflows.common import build_datamodule, resolved
from medcls.workflows.train import run_train


def _run(helpers, cache: Path, *extra: str) -> tuple[dict, Path]:
    cfg = helpers.compose_cfg(helpers.train_overrides(*extra, cache=cache))
    return run_train(cfg), Path(cfg.paths.output_dir)


def _cached(cache: Path) -> Path:
    files = sorted((cache / "features").glob("*.npz"))
    assert len(files) == 1, files  # one dataset × backbone × weights × normalisation
    return files[0]


def _split(helpers, cache: Path, *extra: str):
    """The partitions and labels as a training run builds them (decoding the images), and the
    datamodule: an independent route to the rows the probe must have used."""
    cfg = helpers.compose_cfg(helpers.train_overrides(*extra, cache=cache))
    dm = build_datamodule(cfg)
    dm.setup()
    return cfg, dm


def _probs(out: Path, dm) -> np.ndarray:
    """The run's test probabilities in the test partition's record order."""
    df = read_predictions(str(out / "test_predictions.csv"))
    df = df.set_index("path").loc[[r.path for r in dm.records_of("test")]]
    return df[[f"p_{c}" for c in dm.class_names]].to_numpy()


class _Spy:
    """Counts the calls of a function and lets them through."""

    def __init__(self, fn) -> None:
        self.fn, self.calls = fn, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)


@pytest.fixture
def spies(monkeypatch: pytest.MonkeyPatch) -> dict[str, _Spy]:
    """decode_all (as the datamodule calls it), the per-image decoder and the embedding."""
    out = {
        "decode_all": _Spy(datamodule_module.decode_all),
        "decode_image": _Spy(cache_module._decode),
        "embed": _Spy(features_module.embed),
    }
    monkeypatch.setattr(datamodule_module, "decode_all", out["decode_all"])
    monkeypatch.setattr(cache_module, "_decode", out["decode_image"])
    monkeypatch.setattr(features_module, "embed", out["embed"])
    return out


def test_knn_is_scikit_learns_on_the_backbones_frozen_features(
    workdir: Path, helpers, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    metrics, out = _run(helpers, cache, "task=knn", "task.k=7", "task.weights=uniform")
    cfg, dm = _split(helpers, cache, "task=knn")
    feats = load_features(str(_cached(cache)), len(dm.records))
    assert feats is not None and feats.ok.all()

    # the cached features are the frozen backbone's, in eval mode, on the normalised images
    pl.seed_everything(cfg.seed, workers=True)  # the run's random initialisation
    model = create_task_model(None, resolved(cfg, "model"), dm.num_classes, 32).eval()
    mean = np.asarray(model.pretrained_cfg["mean"]).reshape(1, 3, 1, 1)
    std = np.asarray(model.pretrained_cfg["std"]).reshape(1, 3, 1, 1)
    images = np.asarray(dm.decoded.images[:40], np.float64).transpose(0, 3, 1, 2) / 255.0
    with torch.no_grad():
        mine = model.backbone(torch.as_tensor((images - mean) / std, dtype=torch.float32))
    np.testing.assert_allclose(feats.features[:40], mine.numpy(), rtol=1e-4, atol=1e-5)

    # the test predictions are scikit-learn's k-NN fitted on the training partition's features
    train, test = dm.partitions["train"], dm.partitions["test"]
    knn = KNeighborsClassifier(7, metric="cosine", weights="uniform")
    expected = knn.fit(feats.features[train], dm.labels[train]).predict_proba(feats.features[test])
    np.testing.assert_allclose(_probs(out, dm), expected, atol=2e-6)
    assert metrics["probe/k"] == 7
    assert metrics["test/accuracy"] == pytest.approx(np.mean(expected.argmax(1) == dm.labels[test]))


def test_a_second_run_of_a_k_sweep_decodes_and_embeds_nothing(
    workdir: Path, helpers, tmp_path: Path, spies: dict[str, _Spy]
) -> None:
    cache = tmp_path / "cache"
    _, first = _run(helpers, cache, "task=knn", "task.k=3")
    assert spies["decode_all"].calls == 1 and spies["embed"].calls == 1
    assert spies["decode_image"].calls > 0  # (synthetic data: decoded in memory, every run)
    for spy in spies.values():
        spy.calls = 0

    metrics, second = _run(helpers, cache, "task=knn", "task.k=15")
    assert {k: s.calls for k, s in spies.items()} == {
        "decode_all": 0,
        "decode_image": 0,
        "embed": 0,
    }
    assert metrics["probe/k"] == 15
    _, dm = _split(helpers, cache, "task=knn")
    p3, p15 = _probs(first, dm), _probs(second, dm)
    assert np.abs(p3 - p15).max() > 0.05  # another k, another head

    # negative control: other weights (another seed's random initialisation) are other features
    spies["embed"].calls = 0
    _run(helpers, cache, "task=knn", "task.k=15", "seed=7")
    assert spies["embed"].calls == 1
    assert len(list((cache / "features").glob("*.npz"))) == 2


def test_linear_probe_is_scikit_learns_logistic_regression_chosen_on_validation(
    workdir: Path, helpers, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    grid = (0.0001, 0.1, 1.0, 0.001)  # (here: 0.1 and 1.0 tie best, in the middle)
    metrics, out = _run(helpers, cache, "task=linear_probe", f"task.C=[{','.join(map(str, grid))}]")
    _, dm = _split(helpers, cache, "task=linear_probe")
    x = load_features(str(_cached(cache)), len(dm.records)).features
    train, val, test = (dm.partitions[k] for k in ("train", "val", "test"))
    y = dm.labels

    def fitted(c: float):
        scaler = StandardScaler().fit(x[train])
        lr = LogisticRegression(C=c, max_iter=1000, class_weight="balanced")
        return scaler, lr.fit(scaler.transform(x[train]), y[train])

    # the grid point with the best validation balanced accuracy (the first of equals) is kept
    scores = []
    for c in grid:
        scaler, lr = fitted(c)
        scores.append(balanced_accuracy_score(y[val], lr.predict(scaler.transform(x[val]))))
    chosen = grid[int(np.argmax(scores))]
    assert metrics["probe/C"] == pytest.approx(chosen)
    assert metrics["val/balanced_accuracy"] == pytest.approx(max(scores))
    scaler, lr = fitted(chosen)
    expected = lr.predict_proba(scaler.transform(x[test]))
    np.testing.assert_allclose(_probs(out, dm), expected, atol=2e-6)
    # the same evaluation report as every run: the metrics are those of its predictions CSV
    helpers.assert_metrics_match_predictions(metrics, out / "test_predictions.csv")
    assert (out / "metrics_summary.csv").is_file() and (out / "probe_head.joblib").is_file()


def test_a_damaged_feature_cache_is_rebuilt(
    workdir: Path, helpers, tmp_path: Path, spies: dict[str, _Spy]
) -> None:
    cache = tmp_path / "cache"
    _, first = _run(helpers, cache, "task=knn", "task.k=5")
    _, dm = _split(helpers, cache, "task=knn")
    path = _cached(cache)
    good = path.read_bytes()
    for damage in ("garbage", "truncated", "other_rows"):
        if damage == "garbage":
            path.write_bytes(b"not an npz file" * 100)
        elif damage == "truncated":
            path.write_bytes(good[: len(good) // 2])
        else:  # a readable file of another dataset's size
            with np.load(path) as z:
                np.savez(path, features=z["features"][:10], ok=z["ok"][:10], meta=z["meta"])
        spies["embed"].calls = 0
        _, again = _run(helpers, cache, "task=knn", "task.k=5")
        assert spies["embed"].calls == 1, damage  # computed again, not crashed on, not trusted
        np.testing.assert_array_equal(_probs(again, dm), _probs(first, dm))
        assert load_features(str(path), len(dm.records)) is not None  # written back whole


def test_probe_runs_log_their_report_to_mlflow(
    workdir: Path, helpers, tmp_path: Path, mlflow_uri: str
) -> None:
    from mlflow.tracking import MlflowClient

    metrics, out = _run(
        helpers, tmp_path / "cache", "task=knn", *helpers.mlflow_overrides(mlflow_uri, "probe")
    )
    client = MlflowClient(mlflow_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("probe").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.metrics["test/balanced_accuracy"] == pytest.approx(
        metrics["test/balanced_accuracy"]
    )
    assert run.data.params["task.name"] == "knn" and run.data.tags["probe.features_cached"]
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"test_predictions.csv", "probe_head.joblib", "metrics_summary.csv"} <= names
    logged = helpers.download_artifact(client, run.info.run_id, "test_predictions.csv", tmp_path)
    assert pd.read_csv(logged).equals(pd.read_csv(out / "test_predictions.csv"))


def test_bad_probe_settings_stop_the_run_before_any_image_is_embedded(
    workdir: Path, helpers, tmp_path: Path, spies: dict[str, _Spy]
) -> None:
    with pytest.raises(DataError, match=r"task.k=0"):
        probe_grid({"name": "knn", "k": [5, 0]})
    with pytest.raises(DataError, match=r"task.C=-1"):
        probe_grid({"name": "linear_probe", "C": -1})
    # features normalised by the training partition's pixels would depend on the split
    with pytest.raises(DataError, match="data.normalize=dataset"):
        _run(helpers, tmp_path / "cache", "task=knn", "data.normalize=dataset")
    # more neighbours than training images: said, not clipped in silence
    with pytest.raises(DataError, match="task.k=500 neighbours"):
        _run(helpers, tmp_path / "cache", "task=knn", "task.k=500")
    assert spies["embed"].calls == 1  # (the second run embedded before fitting its head)

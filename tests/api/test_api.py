"""The Python API: a notebook-style script (``notebook_quickstart.py``, run as a user would, in
an empty folder) trains, loads and predicts through ``medcls.*`` alone; its numbers are checked
against what the run wrote through the Lightning test step, medcls-eval and medcls-report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import medcls
from medcls.errors import DataError

SCRIPT = Path(__file__).with_name("notebook_quickstart.py")


@pytest.fixture(scope="module")
def notebook(tmp_path_factory, helpers) -> dict:
    work = tmp_path_factory.mktemp("notebook")
    env = {**os.environ, **helpers.OFFLINE_ENV}
    for k in ("MLFLOW_TRACKING_URI", "MEDCLS_CACHE_DIR"):
        env.pop(k, None)
    proc = subprocess.run([sys.executable, str(SCRIPT)], cwd=work, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_predictions_match_the_runs_test_step(notebook) -> None:
    """Predictor (medcls.load) vs the probabilities Lightning's test step wrote: two paths."""
    tested = pd.read_csv(notebook["test_predictions"])
    assert notebook["paths"] == tested["path"].tolist()
    want = tested[[f"p_{c}" for c in notebook["class_names"]]].to_numpy()
    np.testing.assert_allclose(notebook["probs"], want, atol=2e-6)
    np.testing.assert_allclose(notebook["probs_mlflow"], want, atol=2e-6)  # runs:/<id>/model
    assert notebook["class_names"] == ["benign", "malignant"]


def test_evaluate_and_report_agree_with_train(notebook) -> None:
    train, again = notebook["train_metrics"], notebook["eval_metrics"]
    for key in ("test/balanced_accuracy", "test/accuracy", "test/nll"):
        assert again[key] == pytest.approx(train[key], abs=1e-6)
    (row,) = notebook["report"]  # the experiment holds this one training run
    assert row["runs"] == 1
    assert row["test/balanced_accuracy"] == pytest.approx(train["test/balanced_accuracy"])


def test_api_names_and_errors(tmp_path: Path, helpers) -> None:
    assert {"train", "evaluate", "load", "report", "compose"} <= set(medcls.__all__)
    with pytest.raises(AttributeError, match="no attribute 'trian'"):
        medcls.trian  # noqa: B018
    bad = tmp_path / "not_a_model.ckpt"
    bad.write_text("hello")
    with pytest.raises(DataError, match="not_a_model.ckpt"):
        medcls.load(bad)
    with helpers.chdir(tmp_path), pytest.raises(DataError, match="which model"):
        medcls.evaluate(overrides=["logger=none"])


def test_predict_accepts_one_image_of_any_kind(notebook) -> None:
    """A path (str or Path), the file's bytes and the decoded array give the same row."""
    model = medcls.load(Path(notebook["test_predictions"]).parent / "checkpoints" / "best.ckpt")
    path = notebook["paths"][0]
    rgb = np.asarray(Image.open(path).convert("RGB"))
    rows = [model.predict(x) for x in (path, Path(path), Path(path).read_bytes(), rgb)]
    for row in rows:
        assert row.shape == (1, 2)
        np.testing.assert_allclose(row, [notebook["probs"][0]], atol=1e-6)
    with pytest.raises(DataError, match="image 0: a float64 array"):
        model.predict(rgb.astype(float))

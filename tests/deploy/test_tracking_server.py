"""Through a real ``mlflow server`` (SQLite backend, artifacts proxied to a temp folder, on
127.0.0.1): two runs trained in one folder, that folder deleted, then medcls-ensemble
``run_ids=[...]`` and medcls-eval ``run_id=...`` from another working directory fetch the
checkpoints from the server and reproduce the runs' own test predictions."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

pytestmark = pytest.mark.slow  # a server and four command-line runs: about a minute

DATA = ["data=synthetic", "data.num_samples=100", "data.native_size=32"]
QUIET = ["eval.curves=false", "++trainer.enable_progress_bar=false"]


@pytest.fixture
def server(tmp_path: Path, helpers):
    """``mlflow server`` on a free port; stopped (its whole process group) afterwards."""
    root = tmp_path / "server"
    root.mkdir()
    port = helpers.free_port()
    cmd = [str(helpers.BIN / "mlflow"), "server",
           "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
           "--artifacts-destination", str(root / "artifacts"),
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]  # fmt: skip
    env = {**os.environ, **helpers.OFFLINE_ENV}
    env["PATH"] = f"{helpers.BIN}{os.pathsep}{env.get('PATH', '')}"
    log = open(root / "server.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    log.flush()
                    pytest.fail((root / "server.log").read_text()[-3000:])
                time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


def probs(df: pd.DataFrame) -> np.ndarray:
    return df[sorted(c for c in df.columns if c.startswith("p_"))].to_numpy()


def cli(helpers, name: str, args: list[str], cwd: Path) -> None:
    proc = helpers.run_cli(name, args, cwd=cwd, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]


def test_ensemble_and_eval_fetch_checkpoints_from_the_server(
    server: str, tmp_path: Path, helpers
) -> None:
    trainer_dir, client_dir = tmp_path / "training", tmp_path / "elsewhere"
    trainer_dir.mkdir()
    client_dir.mkdir()
    logger = ["logger=mlflow", f"logger.mlflow.tracking_uri={server}", "experiment_name=remote"]
    for lr in (0.01, 0.001):  # one split (one seed), two models
        cli(helpers, "medcls-train",
            [*helpers.TINY, *DATA, *logger, "trainer.max_epochs=1", f"optimizer.lr={lr}"],
            trainer_dir)  # fmt: skip
    client = MlflowClient(server)
    runs = client.search_runs([client.get_experiment_by_name("remote").experiment_id])
    ids = sorted(r.info.run_id for r in runs)
    assert len(ids) == 2
    # what each run tested on, read back from the server before the training folder goes
    tested = {i: pd.read_csv(client.download_artifacts(i, "test_predictions.csv", str(tmp_path)))
              for i in ids}  # fmt: skip
    shutil.rmtree(trainer_dir)  # the client below has no access to the training folder

    cli(helpers, "medcls-ensemble", [*DATA, *QUIET, *logger, f"run_ids=[{','.join(ids)}]"],
        client_dir)  # fmt: skip
    (ens_csv,) = client_dir.glob("outputs/ensemble/**/ensemble_predictions.csv")
    ens = pd.read_csv(ens_csv).set_index("path")
    runs_mean = sum(probs(tested[i].set_index("path").loc[ens.index]) for i in ids) / 2
    np.testing.assert_allclose(probs(ens), runs_mean, atol=2e-6)
    a, b = (probs(tested[i]) for i in ids)
    assert np.abs(a - b).max() > 1e-3  # two different models: the mean is not either of them

    cli(helpers, "medcls-eval", [*DATA, *QUIET, "print_config=false", "trainer.precision=32-true", *logger,
         f"run_id={ids[0]}"],
        client_dir)  # fmt: skip
    (eval_csv,) = client_dir.glob("outputs/eval/**/test_predictions.csv")
    got = pd.read_csv(eval_csv).set_index("path")
    want = tested[ids[0]].set_index("path").loc[got.index]
    np.testing.assert_allclose(probs(got), probs(want), atol=2e-6)
    fetched = list(client_dir.glob(f".cache/medcls/mlflow_checkpoints/{ids[0]}/**/best.ckpt"))
    assert len(fetched) == 1  # fetched once, into the cache, not the working directory

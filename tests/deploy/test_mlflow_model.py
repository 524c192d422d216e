"""A training run's outputs in MLflow: the best checkpoint (and last.ckpt) as run artifacts, the
best model as an MLflow Model with a signature, an input example and a registry version, that
predicts what medcls-predict predicts: loaded in process (fast) and behind ``mlflow models
serve`` answering a real HTTP request on 127.0.0.1 (slow)."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from PIL import Image

from medcls.workflows.predict import run_predict
from medcls.workflows.train import run_train

EXPERIMENT = "mlflow-model"


def png_bytes(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, helpers) -> dict:
    """A tiny run logged to its own SQLite store, its model registered as ``tiny-skin``; a few
    real PNG files of other sizes than the training images to predict."""
    work = tmp_path_factory.mktemp("mlflow_model")
    uri = helpers.sqlite_uri(work / "mlflow.db")
    with helpers.chdir(work):
        cfg = helpers.compose_cfg(
            helpers.train_overrides(
                "trainer.max_epochs=1",
                *helpers.mlflow_overrides(uri, EXPERIMENT),
                "logger.mlflow.register_as=tiny-skin",
                "logger.mlflow.log_last_checkpoint=true",
            )
        )
        run_train(cfg)
    out = Path(cfg.paths.output_dir)  # (resolved now: the next compose resets Hydra's config)
    client = MlflowClient(uri)
    run = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])[0]
    rng = np.random.default_rng(3)
    images = work / "images"
    images.mkdir()
    for i, shape in enumerate([(40, 50, 3), (64, 64, 3), (30, 90, 3)]):
        (images / f"img{i}.png").write_bytes(png_bytes(rng.integers(0, 256, shape, np.uint8)))
    with helpers.chdir(work):
        pcfg = helpers.compose_cfg(
            [
                f"ckpt_path={out / 'checkpoints' / 'best.ckpt'}",
                f"input={images}",
                f"output={work / 'predictions.csv'}",
            ],
            config_name="predict",
        )
        run_predict(pcfg)
    return {
        "work": work,
        "uri": uri,
        "client": client,
        "run": run,
        "images": sorted(images.glob("*.png")),
        "predicted": pd.read_csv(work / "predictions.csv"),  # medcls-predict's CSV
        "out": out,
    }


def expected(trained) -> tuple[list[str], np.ndarray]:
    df = trained["predicted"]
    classes = [c[2:] for c in df.columns if c.startswith("p_")]
    return classes, df[[f"p_{c}" for c in classes]].to_numpy()


def test_checkpoints_are_run_artifacts(trained, tmp_path: Path) -> None:
    client, run_id = trained["client"], trained["run"].info.run_id
    names = sorted(a.path for a in client.list_artifacts(run_id, "checkpoints"))
    assert names == ["checkpoints/best.ckpt", "checkpoints/last.ckpt"]
    got = client.download_artifacts(run_id, "checkpoints/best.ckpt", str(tmp_path))
    local = trained["out"] / "checkpoints" / "best.ckpt"
    assert Path(got).read_bytes() == local.read_bytes(), (got, local)
    assert trained["run"].data.tags["medcls.checkpoint_artifact"] == "checkpoints/best.ckpt"


def test_model_predicts_what_medcls_predict_writes(trained) -> None:
    mlflow.set_tracking_uri(trained["uri"])
    model = mlflow.pyfunc.load_model(f"runs:/{trained['run'].info.run_id}/model")
    classes, want = expected(trained)
    frame = pd.DataFrame({"image": [p.read_bytes() for p in trained["images"]]})
    out = model.predict(frame)
    assert list(out.columns) == [*classes, "prediction"]
    np.testing.assert_allclose(out[classes].to_numpy(), want, atol=2e-6)  # the CSV's 6 decimals
    assert out["prediction"].tolist() == trained["predicted"]["prediction"].tolist()
    # a batch of decoded uint8 images, straight to the wrapped model (same preprocessing)
    arrays = np.stack([np.asarray(Image.open(trained["images"][1]).convert("RGB"))])
    direct = model.unwrap_python_model().predict(None, arrays)
    np.testing.assert_allclose(direct[classes].to_numpy(), want[1:2], atol=2e-6)


def test_model_signature_example_and_registry(trained) -> None:
    client, run = trained["client"], trained["run"]
    uri = run.data.tags["medcls.model_uri"]
    info = mlflow.models.get_model_info(uri)
    assert info.signature.inputs.input_names() == ["image"]
    assert info.signature.inputs.inputs[0].type.name == "binary"
    classes, _ = expected(trained)
    assert info.signature.outputs.input_names() == [*classes, "prediction"]
    assert info.metadata["class_names"] == classes
    model = client.get_logged_model(uri.split("/")[-1])
    assert model.source_run_id == run.info.run_id and model.status.to_int() == 2  # READY
    assert model.experiment_id == run.info.experiment_id  # the run's experiment, not Default
    (version,) = client.search_model_versions("name = 'tiny-skin'")
    assert version.run_id == run.info.run_id and version.source == uri
    example = mlflow.models.Model.load(uri).load_input_example(
        mlflow.artifacts.download_artifacts(uri)
    )
    assert Image.open(io.BytesIO(example["image"][0])).size[0] > 0  # a real encoded image


def test_opt_out_leaves_only_local_files(tmp_path: Path, helpers) -> None:
    uri = helpers.sqlite_uri(tmp_path / "mlflow.db")
    with helpers.chdir(tmp_path):
        cfg = helpers.compose_cfg(
            helpers.train_overrides(
                "trainer.max_epochs=1",
                *helpers.mlflow_overrides(uri, "opt-out"),
                "logger.mlflow.log_checkpoints=false",
                "logger.mlflow.mlflow_model=false",
            )
        )
        run_train(cfg)
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("opt-out").experiment_id
    (run,) = client.search_runs([exp])
    assert client.list_artifacts(run.info.run_id, "checkpoints") == []
    assert client.search_logged_models(experiment_ids=[exp]) == []
    assert (Path(cfg.paths.output_dir) / "checkpoints" / "best.ckpt").is_file()


# ------------------------------------------------------------------ mlflow models serve
@pytest.mark.slow
def test_mlflow_models_serve_answers_a_post(trained, helpers) -> None:
    port = helpers.free_port()
    env = {
        **os.environ,
        **helpers.OFFLINE_ENV,
        "MLFLOW_TRACKING_URI": trained["uri"],
        "PATH": f"{helpers.BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # its uvicorn
    }
    cmd = [str(helpers.BIN / "mlflow"), "models", "serve", "-m",
           f"runs:/{trained['run'].info.run_id}/model", "--env-manager", "local",
           "-h", "127.0.0.1", "-p", str(port)]  # fmt: skip
    log = open(trained["work"] / "serve.log", "w")  # noqa: SIM115 - closed in finally
    server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/ping", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.time() > deadline:
                    log.flush()
                    pytest.fail((trained["work"] / "serve.log").read_text()[-3000:])
                time.sleep(0.5)
        image = trained["images"][0]
        body = {"dataframe_split": {"columns": ["image"],
                                    "data": [[base64.b64encode(image.read_bytes()).decode()]]}}  # fmt: skip
        req = urllib.request.Request(f"{url}/invocations", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})  # fmt: skip
        answer = json.loads(urllib.request.urlopen(req, timeout=60).read())["predictions"]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        log.close()
    classes, want = expected(trained)
    assert len(answer) == 1
    np.testing.assert_allclose([answer[0][c] for c in classes], want[0], atol=2e-6)
    assert answer[0]["prediction"] == trained["predicted"]["prediction"][0]


def test_partitions_are_the_runs_datasets(trained) -> None:
    """One dataset input per partition, whose counts are those of the run's own prediction
    files (test, val) and whose digests tell the partitions apart."""
    run = trained["client"].get_run(trained["run"].info.run_id)
    inputs = {
        next(t.value for t in d.tags if t.key == "mlflow.data.context"): d.dataset
        for d in run.inputs.dataset_inputs
    }
    assert sorted(inputs) == ["test", "train", "val"]
    classes, _ = expected(trained)
    for part in ("test", "val"):
        labels = pd.read_csv(trained["out"] / f"{part}_predictions.csv")["label"]
        profile = json.loads(inputs[part].profile)
        assert profile["images"] == len(labels)
        assert profile["per_class"] == {c: int((labels == c).sum()) for c in classes}
        assert inputs[part].name == f"{run.data.tags['dataset']}-{part}"
    assert len({d.digest for d in inputs.values()}) == 3

"""medcls-export: the ONNX and TorchScript files give medcls-predict's probabilities on real
image files (preprocessed from the file's own metadata), at any batch size; bad input is a
one-line error; a file that disagrees with PyTorch is refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime
import pandas as pd
import pytest
import torch

from medcls.data.io import read_rgb
from medcls.data.preprocess import Preprocess
from medcls.deploy.export import ExportedClassifier, compare, export_onnx, reference_runner
from medcls.errors import DataError
from medcls.tasks.checkpoint import load_task
from medcls.tasks.factory import create_task, create_task_model
from medcls.workflows.export import check_images, default_output, run_export
from medcls.workflows.predict import run_predict
from medcls.workflows.train import run_train


@pytest.fixture(scope="module")
def trained(tmp_path_factory, helpers) -> dict:
    """One epoch on synthetic data, with a fitted temperature and logit adjustment: both must
    be inside the exported file for its probabilities to be medcls-predict's."""
    work = tmp_path_factory.mktemp("export")
    with helpers.chdir(work):
        cfg = helpers.compose_cfg(
            helpers.train_overrides(
                "trainer.max_epochs=1",
                "eval.n_boot=0",
                "eval.calibrate=temperature",
                "eval.logit_adjustment=tuned",
            )
        )
        run_train(cfg)
    ckpt = Path(cfg.paths.output_dir) / "checkpoints" / "best.ckpt"
    meta = torch.load(ckpt, map_location="cpu", weights_only=True)["medcls"]
    return {"work": work, "ckpt": ckpt, "meta": meta}


@pytest.fixture(scope="module")
def images(tmp_path_factory, helpers) -> list[Path]:
    """Five RGB PNGs of different sizes (the preprocessing crops and resizes them)."""
    root = tmp_path_factory.mktemp("export_images")
    rng = np.random.default_rng(0)
    paths = [root / f"img_{i}.png" for i in range(5)]
    for i, p in enumerate(paths):
        helpers.write_image(p, rng, label=i % 3, size=36 + 6 * i)
    return paths


@pytest.fixture(scope="module")
def predicted(trained, images, helpers) -> pd.DataFrame:
    """medcls-predict's CSV on ``images``, indexed by path."""
    with helpers.chdir(trained["work"]):
        cfg = helpers.compose_cfg(
            [
                f"ckpt_path={trained['ckpt']}",
                f"input={images[0].parent}",
                f"output={trained['work'] / 'predictions.csv'}",
            ],
            config_name="predict",
        )
        out = run_predict(cfg)
    return pd.read_csv(out).set_index("path")


def export(helpers, trained, images, fmt: str, output: Path) -> tuple[str, float]:
    cfg = helpers.compose_cfg(
        [
            f"ckpt_path={trained['ckpt']}",
            f"format={fmt}",
            f"output={output}",
            f"check_input={images[0].parent}",
        ],
        config_name="export",
    )
    return run_export(cfg)


def model_inputs(paths: list[Path], preprocess: dict) -> np.ndarray:
    """uint8 ``(N, 3, S, S)``: decoded and preprocessed as the file's metadata says."""
    pre = Preprocess(**preprocess)
    arrays = [pre(read_rgb(str(p), grayscale=pre.grayscale))[0] for p in paths]
    return np.stack(arrays).transpose(0, 3, 1, 2).copy()


def expected_probs(predicted: pd.DataFrame, paths: list[Path], classes: list[str]) -> np.ndarray:
    return predicted.loc[[str(p) for p in paths], [f"p_{c}" for c in classes]].to_numpy()


def test_onnx_gives_predict_probabilities(helpers, trained, images, predicted, tmp_path) -> None:
    assert trained["meta"]["calibration"]["temperature"] is not None  # the test's point
    out, diff = export(helpers, trained, images, "onnx", tmp_path / "model.onnx")
    assert out == str(tmp_path / "model.onnx") and diff < 1e-4
    session = onnxruntime.InferenceSession(out, providers=["CPUExecutionProvider"])
    (inp,), (outp,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.type, outp.name) == ("image", "tensor(uint8)", "probabilities")
    assert isinstance(inp.shape[0], str)  # a dynamic batch axis
    props = session.get_modelmeta().custom_metadata_map
    classes = json.loads(props["medcls.class_names"])
    assert classes == trained["meta"]["class_names"]
    assert json.loads(props["medcls.preprocess"]) == trained["meta"]["preprocess"]
    assert json.loads(props["medcls.calibration"]) == trained["meta"]["calibration"]
    assert "uint8 RGB" in props["medcls.input"]
    x = model_inputs(images, json.loads(props["medcls.preprocess"]))
    want = expected_probs(predicted, images, classes)
    batch = session.run(None, {"image": x})[0]
    assert batch.shape == want.shape and batch.dtype == np.float32
    np.testing.assert_allclose(batch, want, atol=1e-4)
    for i in range(len(x)):  # batches of 1
        np.testing.assert_allclose(
            session.run(None, {"image": x[i : i + 1]})[0][0], want[i], atol=1e-4
        )


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_torchscript_gives_predict_probabilities(
    helpers, trained, images, predicted, tmp_path
) -> None:
    out, diff = export(helpers, trained, images, "torchscript", tmp_path / "model.pt")
    assert diff < 1e-4
    extra = {"medcls.json": ""}
    module = torch.jit.load(out, map_location="cpu", _extra_files=extra)
    meta = json.loads(extra["medcls.json"])
    assert meta["class_names"] == trained["meta"]["class_names"]
    assert meta["preprocess"] == trained["meta"]["preprocess"]
    x = torch.from_numpy(model_inputs(images, meta["preprocess"]))
    want = expected_probs(predicted, images, meta["class_names"])
    with torch.no_grad():
        np.testing.assert_allclose(module(x).numpy(), want, atol=1e-4)
        np.testing.assert_allclose(module(x[:1]).numpy(), want[:1], atol=1e-4)


def test_not_a_checkpoint_is_one_line(helpers, tmp_path) -> None:
    bad = tmp_path / "notes.ckpt"
    bad.write_text("not a checkpoint")
    res = helpers.run_cli("medcls-export", [f"ckpt_path={bad}"], cwd=tmp_path)
    output = res.stdout + res.stderr
    assert res.returncode == 2, output
    assert "Traceback" not in output
    message = " ".join(output.split())  # rich wraps the one message at the terminal width
    assert message.startswith("error: ") and message.count("error:") == 1, output
    assert f"{bad} is not a checkpoint" in message, output


def test_unknown_format(helpers, trained, tmp_path) -> None:
    args = [f"ckpt_path={trained['ckpt']}", "format=tflite"]
    res = helpers.run_cli("medcls-export", args, cwd=tmp_path)
    output = res.stdout + res.stderr
    assert res.returncode == 2 and "Traceback" not in output
    assert "format=tflite" in output and "onnx" in output and "torchscript" in output


def test_check_refuses_a_model_that_disagrees(trained) -> None:
    task, meta = load_task(str(trained["ckpt"]))
    images = check_images(None, Preprocess(**meta["preprocess"]))
    assert images.shape == (4, 3, 32, 32) and images.dtype == np.uint8
    reference = reference_runner(task, meta)
    hotter = ExportedClassifier(task, temperature=5.0)  # not the checkpoint's temperature

    def other(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return hotter(torch.from_numpy(x)).numpy()

    with pytest.raises(DataError, match=r"m\.onnx: the exported model disagrees"):
        compare(reference, other, images, "m.onnx")
    with pytest.raises(DataError, match="gives"):  # a fixed batch of 4
        compare(reference, lambda x: reference(np.repeat(x[:1], 4, 0)), images, "m.onnx")
    assert compare(reference, reference, images, "m.onnx") == 0.0


def test_failed_check_leaves_no_file(helpers, trained, images, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr("medcls.deploy.export.TOLERANCE", -1.0)
    with pytest.raises(DataError, match="disagrees"):
        export(helpers, trained, images, "torchscript", tmp_path / "model.pt")
    assert list(tmp_path.iterdir()) == []


def test_default_output_is_next_to_the_checkpoint() -> None:
    assert default_output("/runs/a/best.ckpt", "onnx") == "/runs/a/best.onnx"
    assert default_output("/runs/a/best.ckpt", "torchscript") == "/runs/a/best.torchscript.pt"


def test_abn_network_exports(tmp_path) -> None:
    """An Attention Branch Network returns three outputs; the file gives the prediction's."""
    model = create_task_model({"name": "abn"}, {"name": "resnet10t"}, 2, 32)
    task = create_task({"name": "abn"}, model, ["a", "b"], [0.5] * 3, [0.25] * 3).eval()
    path = str(tmp_path / "abn.onnx")
    export_onnx(ExportedClassifier(task), path, 32, {"class_names": ["a", "b"]}, None)
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    images = check_images(None, Preprocess(image_size=32), n_random=3)
    run = lambda x: session.run(None, {"image": x})[0]  # noqa: E731
    assert (
        compare(
            reference_runner(task, {"preprocess": {"image_size": 32}, "class_names": ["a", "b"]}),
            run,
            images,
            path,
        )
        < 1e-4
    )


def test_export_config_composes(workdir, helpers) -> None:
    cfg = helpers.resolved_ok(helpers.compose_cfg(["ckpt_path=/x/best.ckpt"], config_name="export"))
    assert (cfg["format"], cfg["output"], cfg["check_input"], cfg["opset"]) == (
        "onnx",
        None,
        None,
        None,
    )

"""A medcls checkpoint as an MLflow Model (pyfunc): ``mlflow models serve``, the Model Registry,
``mlflow.pyfunc.load_model`` and ``medcls.load("runs:/<id>/model")`` all use it.

Input: a DataFrame with a column ``image`` of encoded images (PNG, JPEG, ... bytes; base64 in a
REST request), or a batch of uint8 ``(N, H, W, 3)`` RGB images. Output: a DataFrame with one
column of probabilities per class (named by the class) and ``prediction`` (the class name),
exactly what medcls-predict writes for the same image. The checkpoint's own preprocessing
(resize, crops, grayscale, normalisation) and fitted calibration are applied; no TTA.
"""

from __future__ import annotations

import base64
import importlib.metadata
import io
import logging
import os
import re
from contextlib import contextmanager

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import Model, infer_signature
from mlflow.pyfunc import PythonModel
from PIL import Image

from medcls.data.records import Record
from medcls.deploy.predictor import Predictor
from medcls.errors import DataError

log = logging.getLogger(__name__)
# the medcls package folder, shipped with the model as its code
PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHECKPOINT = "checkpoint"  # the artifact's key in the model
MODEL_NAME = "model"  # runs:/<run id>/model
IMAGE_COLUMN = "image"


class MedclsImageModel(PythonModel):
    """The pyfunc: the checkpoint travels with the model as an artifact."""

    def load_context(self, context) -> None:
        self.predictor = Predictor.from_checkpoint(context.artifacts[CHECKPOINT])

    # a DataFrame hint: MLflow then checks the input against the logged signature (and accepts
    # a uint8 array batch called directly, see images_of)
    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        probs = self.predictor.predict(images_of(model_input))
        return probabilities_frame(self.predictor, probs)


def images_of(model_input) -> list | np.ndarray:
    """The images of a pyfunc input: the ``image`` column of a DataFrame (bytes, or base64
    text), a uint8 ``(N, H, W, 3)`` array, or a list of either kind."""
    if isinstance(model_input, pd.DataFrame):
        if IMAGE_COLUMN not in model_input.columns:
            raise DataError(
                f"the model's input needs a column {IMAGE_COLUMN!r} of encoded images; got "
                f"columns {list(model_input.columns)}"
            )
        model_input = model_input[IMAGE_COLUMN].tolist()
    if isinstance(model_input, np.ndarray) and model_input.dtype == np.uint8:
        return model_input
    return [base64.b64decode(x) if isinstance(x, str) else x for x in model_input]


def probabilities_frame(predictor: Predictor, probs: np.ndarray) -> pd.DataFrame:
    """``(N, K)`` probabilities → one column per class + ``prediction`` (a class name)."""
    names = predictor.class_names
    frame = pd.DataFrame(probs.astype(np.float64), columns=names)
    frame["prediction"] = [names[i] for i in predictor.predicted_class(probs)]
    return frame


def requirements() -> list[str]:
    """What the model needs where it is served: medcls's own requirements at the versions this
    process runs (medcls itself travels in the model's code/ folder)."""
    out = []
    for line in importlib.metadata.requires("medcls") or []:
        if "extra ==" in line:
            continue
        name = re.split(r"[ <>=!~;\[]", line, maxsplit=1)[0]
        try:
            out.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            out.append(name)
    return out


@contextmanager
def _tracking_uri(uri: str | None):
    """MLflow's model logging reads the process-wide tracking URI; point it at the run's."""
    before = mlflow.get_tracking_uri()
    if uri:
        mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before)


@contextmanager
def _quiet():
    """MLflow's advice on logging (models from code) and its progress bars are not for
    medcls's users; errors still raise."""
    pyfunc_log = logging.getLogger("mlflow.pyfunc")
    level = pyfunc_log.level
    pyfunc_log.setLevel(logging.ERROR)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        yield
    finally:
        pyfunc_log.setLevel(level)


def log_model(
    tracking_uri: str | None,
    run_id: str,
    checkpoint: str,
    example_image: bytes,
    register_as: str | None = None,
) -> str:
    """Log ``checkpoint`` as the MLflow Model ``model`` of run ``run_id``, with a signature and
    ``example_image`` as its input example; ``register_as``: also a version of that registered
    model. Returns the model's URI (``models:/<model id>``)."""
    example = pd.DataFrame({IMAGE_COLUMN: [example_image]})
    predictor = Predictor.from_checkpoint(checkpoint)
    output = probabilities_frame(predictor, predictor.predict(images_of(example)))
    meta = predictor.meta
    with _tracking_uri(tracking_uri), _quiet():
        # created in the run's experiment (Model.log alone would use the process's active one)
        experiment_id = mlflow.MlflowClient().get_run(run_id).info.experiment_id
        logged = mlflow.initialize_logged_model(
            name=MODEL_NAME,
            source_run_id=run_id,
            experiment_id=experiment_id,
            params={
                "model": str(meta["model"].get("name")),
                "image_size": str(meta["preprocess"]["image_size"]),
                "classes": ", ".join(predictor.class_names),
            },
        )
        info = Model.log(
            artifact_path=None,  # MLflow 3: a named logged model, linked to the run
            name=MODEL_NAME,
            model_id=logged.model_id,
            flavor=mlflow.pyfunc,
            run_id=run_id,
            python_model=MedclsImageModel(),
            artifacts={CHECKPOINT: os.path.abspath(checkpoint)},
            code_paths=[PACKAGE_DIR],
            pip_requirements=requirements(),
            signature=infer_signature(example, output),
            input_example=example,
            registered_model_name=register_as or None,
            metadata={"class_names": predictor.class_names, "preprocess": meta["preprocess"]},
        )
    return info.model_uri


def example_image(record: Record, decoded: np.ndarray) -> bytes:
    """An input example for the model: the record's own file, or (generated data) its decoded
    ``(S, S, 3)`` uint8 image as PNG."""
    if os.path.isfile(record.path):
        with open(record.path, "rb") as f:
            return f.read()
    buf = io.BytesIO()
    Image.fromarray(np.asarray(decoded)).save(buf, format="PNG")
    return buf.getvalue()


def log_model_or_note(
    tracking_uri: str | None, run_id: str, checkpoint: str, example: bytes, register_as=None
) -> dict[str, str]:
    """:func:`log_model`, returning the tags to set: ``medcls.model_uri``, or on a failure
    ``medcls.model_error`` (reported, not raised: the run's training and test are done and
    stay logged)."""
    try:
        return {
            "medcls.model_uri": log_model(tracking_uri, run_id, checkpoint, example, register_as)
        }
    except Exception as e:  # noqa: BLE001 - the trained run must not be lost to this
        log.warning("the MLflow Model was not logged: %s: %s", type(e).__name__, e)
        return {"medcls.model_error": f"{type(e).__name__}: {e}"}

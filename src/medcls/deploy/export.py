"""A checkpoint → one ONNX or TorchScript file: preprocessed uint8 images → class probabilities.

The file holds normalisation, logit adjustment, the checkpoint's softmax temperature and the
softmax itself, so it gives what medcls-predict writes; what it does not hold is the geometric
preprocessing (crops, resize, grayscale), which runs on the decoded image before it and is
stored as metadata (``medcls.preprocess``) with the class names. Before the file is put in
place it is run on check images against PyTorch; a disagreement is a :class:`DataError`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import onnx
import onnxruntime
import torch
import torch.nn.functional as F
from torch import nn

from medcls.deploy.predictor import Predictor
from medcls.errors import DataError
from medcls.evaluation.calibration import Calibration
from medcls.tasks.classification import ClassificationTask

FORMATS = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
TOLERANCE = 1e-4  # max |p_exported − p_torch| accepted
CHECK_BATCH = 32
# (N, 3, S, S) uint8 → (N, K) float32 probabilities
Runner = Callable[[np.ndarray], np.ndarray]


class ExportedClassifier(nn.Module):
    """uint8 ``(B, 3, S, S)`` → probabilities ``(B, K)`` float32.

    Holds only the network and the task's buffers, not the LightningModule: tracing walks a
    module's attributes, and Lightning's ``trainer`` raises outside a Trainer (the metrics'
    state would be saved along too).
    """

    def __init__(self, task: ClassificationTask, temperature: float | None = None) -> None:
        super().__init__()
        self.net = task.model
        self.register_buffer("mean", task.mean.detach().clone().float())
        self.register_buffer("std", task.std.detach().clone().float())
        self.register_buffer("logit_bias", task.logit_bias.detach().clone().float())
        self.views = list(task.tta)  # the checkpoint's test-time views (flips, rotations)
        self.temperature = float(temperature or 1.0)
        self.eval().float()

    def _log_softmax(self, images: torch.Tensor) -> torch.Tensor:
        out = self.net((images.float() - self.mean) / self.std)
        # ABN networks return (logits, attention logits, map); the first is the prediction
        logits = out[0] if isinstance(out, tuple) else out
        return F.log_softmax(logits.float() + self.logit_bias, dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The model's probability as medcls defines it (``ClassificationTask.log_proba``),
        tempered: ``softmax(log mean_v softmax(z_v + b) / T)``; one view: ``softmax((z + b) / T)``."""
        if len(self.views) == 1:
            return F.softmax(self._log_softmax(images) / self.temperature, dim=1)
        logp = torch.stack([self._log_softmax(v(images)) for v in self.views])
        logp = torch.logsumexp(logp, dim=0) - math.log(len(self.views))
        return F.softmax(logp / self.temperature, dim=1)


def export_metadata(meta: dict) -> dict[str, Any]:
    """What a user of the file needs from the checkpoint's ``medcls`` section (plain values)."""
    s = int(meta["preprocess"]["image_size"])
    calibration = Calibration.from_meta(meta.get("calibration"))
    note = f"uint8 RGB, N×3×{s}×{s}, after the preprocessing in medcls.preprocess; "
    note += "probabilities per class in medcls.class_names order"
    if calibration.temperature is not None:
        note += f" (temperature {calibration.temperature:.4g} of medcls.calibration applied)"
    out: dict[str, Any] = {
        "class_names": list(meta["class_names"]),
        "preprocess": dict(meta["preprocess"]),
        "input": note,
    }
    if meta.get("calibration"):
        out["calibration"] = dict(meta["calibration"])
    if meta.get("mlflow_run_id"):
        out["mlflow_run_id"] = str(meta["mlflow_run_id"])
    return out


def _example(image_size: int) -> torch.Tensor:
    # batch 2: torch.export specialises sizes 0 and 1, so a batch of 1 would fix the batch axis
    return torch.zeros((2, 3, image_size, image_size), dtype=torch.uint8)


def cannot_export(fmt: str, model_name: str, e: Exception) -> DataError:
    first = (str(e).strip().splitlines() or [""])[0][:300]
    other = "torchscript" if fmt == "onnx" else "onnx"
    return DataError(
        f"model {model_name!r} cannot be exported to {fmt} ({type(e).__name__}: {first}); "
        f"try format={other}."
    )


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The ONNX optimiser's INFO lines (a dozen per export, "Removed 105 unused nodes") off."""
    loggers = [logging.getLogger(n) for n in ("onnxscript", "onnx_ir")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def export_onnx(
    model: ExportedClassifier, path: str, image_size: int, metadata: dict, opset: int | None
) -> int:
    """Write ``model`` to ``path``: input ``image`` uint8 ``(N, 3, S, S)``, output
    ``probabilities`` ``(N, K)``, N dynamic; ``metadata`` in ``metadata_props`` as
    ``medcls.<key>`` (strings as they are, the rest as JSON). Returns the opset written."""
    with _quiet_exporter():
        program = torch.onnx.export(
            model,
            (_example(image_size),),
            dynamo=True,
            input_names=["image"],
            output_names=["probabilities"],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            opset_version=opset,
            verbose=False,
        )
    proto = program.model_proto
    for key, value in metadata.items():
        text = value if isinstance(value, str) else json.dumps(value)
        proto.metadata_props.add(key=f"medcls.{key}", value=text)
    onnx.save(proto, path)
    return next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))


def export_torchscript(
    model: ExportedClassifier, path: str, image_size: int, metadata: dict
) -> None:
    """Trace ``model`` (uint8 ``(N, 3, S, S)`` → ``(N, K)``) to ``path``, ``metadata`` as the
    extra file ``medcls.json``."""
    with torch.no_grad(), warnings.catch_warnings():
        # torch 2.14 marks torch.jit deprecated; the format is still what C++/mobile loaders read
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit")
        # "converting a tensor to a Python boolean" (timm's size checks): the input is S × S by
        # contract, so freezing those branches at S is right
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        traced = torch.jit.trace(model, _example(image_size))
        torch.jit.save(traced, path, _extra_files={"medcls.json": json.dumps(metadata)})


def onnx_runner(path: str) -> Runner:
    """The exported ONNX file under onnxruntime (CPU)."""
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return lambda images: session.run(["probabilities"], {"image": images})[0]


def torchscript_runner(path: str) -> Runner:
    """The exported TorchScript file, loaded back."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit")
        module = torch.jit.load(path, map_location="cpu")

    @torch.no_grad()
    def run(images: np.ndarray) -> np.ndarray:
        return module(torch.from_numpy(images)).numpy()

    return run


def reference_runner(task: ClassificationTask, meta: dict) -> Runner:
    """What medcls-predict computes (:class:`~medcls.deploy.predictor.Predictor`: the
    checkpoint's views, logit bias and calibration) on ``(N, 3, S, S)`` uint8 images."""
    predictor = Predictor(task, meta)

    def run(images: np.ndarray) -> np.ndarray:
        return predictor.predict_prepared(np.ascontiguousarray(images.transpose(0, 2, 3, 1)))

    return run


def compare(reference: Runner, exported: Runner, images: np.ndarray, path: str) -> float:
    """Max |p_exported − p_reference| over ``images`` (uint8 ``(N, 3, S, S)``), run as a batch
    of 1 and in batches of up to :data:`CHECK_BATCH` (the batch axis must be dynamic); a
    difference over :data:`TOLERANCE`, a wrong shape or a failure is a :class:`DataError`."""
    batches = [images[:1]] + [
        images[i : i + CHECK_BATCH] for i in range(0, len(images), CHECK_BATCH)
    ]
    diff = 0.0
    for batch in batches:
        want = reference(batch)
        try:
            got = np.asarray(exported(batch))
        except Exception as e:  # noqa: BLE001 - any runtime failure: the file is unusable
            raise DataError(
                f"{path}: the exported model fails on a batch of {len(batch)} "
                f"({type(e).__name__}: {str(e).strip()[:300]})."
            ) from None
        if got.shape != want.shape:
            raise DataError(
                f"{path}: the exported model gives {got.shape} for a batch of {len(batch)}, "
                f"PyTorch {want.shape}."
            )
        d = float(np.max(np.abs(got.astype(np.float64) - want))) if got.size else 0.0
        diff = max(diff, d if np.isfinite(d) else float("inf"))
    if diff > TOLERANCE:
        raise DataError(
            f"{path}: the exported model disagrees with PyTorch: max |Δp| = {diff:.3g} > "
            f"{TOLERANCE:g} on {len(images)} images."
        )
    return diff

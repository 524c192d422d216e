"""``medcls-export``: a checkpoint as ONNX or TorchScript, checked against PyTorch on real or
random images before the file appears (the exporters and the check: :mod:`medcls.deploy.export`)."""

from __future__ import annotations

import os

import numpy as np
from omegaconf import DictConfig

from medcls.data.cache import decode_all
from medcls.data.inputs import list_inputs
from medcls.data.preprocess import Preprocess
from medcls.data.records import Record
from medcls.deploy.export import (
    FORMATS,
    ExportedClassifier,
    cannot_export,
    compare,
    export_metadata,
    export_onnx,
    export_torchscript,
    onnx_runner,
    reference_runner,
    torchscript_runner,
)
from medcls.errors import DataError
from medcls.evaluation.calibration import Calibration
from medcls.tasks.checkpoint import load_task
from medcls.utils.console import console


def check_images(check_input: str | None, pre: Preprocess, n_random: int = 4) -> np.ndarray:
    """uint8 ``(N, 3, S, S)``: the images of ``check_input`` decoded and preprocessed as
    medcls-predict does, else ``n_random`` seeded random images."""
    s = pre.image_size
    if check_input is None:
        return np.random.default_rng(0).integers(0, 256, (n_random, 3, s, s), dtype=np.uint8)
    try:
        paths = list_inputs(str(check_input))
    except DataError as e:  # its message names medcls-predict's key
        raise DataError(str(e).replace("input=", "check_input=", 1)) from None
    records = [Record(p, -1, source="input") for p in paths]
    decoded = decode_all("export-check", records, pre, cache="memory", progress=False)
    if decoded.bad:
        console.print(f"[yellow]check: skipped {len(decoded.bad)} unreadable image(s)[/]")
    if not decoded.ok.any():
        raise DataError(f"check_input={check_input}: none of its images could be decoded.")
    return np.ascontiguousarray(decoded.images[decoded.ok].transpose(0, 3, 1, 2))


def default_output(ckpt_path: str, fmt: str) -> str:
    """``<ckpt dir>/<ckpt stem>.onnx`` or ``.torchscript.pt``."""
    return os.path.splitext(os.path.abspath(ckpt_path))[0] + FORMATS[fmt]


def run_export(cfg: DictConfig) -> tuple[str, float]:
    """Export ``cfg.ckpt_path`` as ``cfg.format``; return the file written and the checked
    max |Δp|. The file appears only once it has passed the check."""
    fmt = str(cfg.format)
    if fmt not in FORMATS:
        raise DataError(f"format={fmt}: use onnx or torchscript.")
    task, meta = load_task(str(cfg.ckpt_path))
    pre = Preprocess(**meta["preprocess"])
    images = check_images(cfg.get("check_input"), pre)  # before exporting: bad input fails fast
    model = ExportedClassifier(task, Calibration.from_meta(meta.get("calibration")).temperature)
    metadata = export_metadata(meta)
    out = os.path.abspath(str(cfg.get("output") or default_output(str(cfg.ckpt_path), fmt)))
    os.makedirs(os.path.dirname(out), exist_ok=True)
    tmp = f"{out}.tmp"
    try:
        try:
            if fmt == "onnx":
                opset = cfg.get("opset")
                opset = export_onnx(model, tmp, pre.image_size, metadata, opset and int(opset))
                how, runner = f"opset {opset}, dynamic batch", onnx_runner
            else:
                export_torchscript(model, tmp, pre.image_size, metadata)
                how, runner = "traced", torchscript_runner
        except Exception as e:  # noqa: BLE001 - an exporter's failure names the model, no traceback
            raise cannot_export(fmt, str(meta["model"].get("name")), e) from e
        diff = compare(reference_runner(task, meta), runner(tmp), images, out)
        os.replace(tmp, out)
    finally:  # a failed export or check leaves no file behind
        if os.path.exists(tmp):
            os.remove(tmp)
    console.print(
        f"wrote {out} ({how}); max |p_{fmt} − p_torch| = {diff:.1e} on {len(images)} images"
    )
    return out, diff

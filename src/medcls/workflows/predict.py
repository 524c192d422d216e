"""Prediction: a checkpoint on an image, a folder of images, DICOM series or NIfTI volumes →
CSV of per-class probabilities (CT: per slice, and per series and patient)."""

from __future__ import annotations

import os

import numpy as np
import torch
from omegaconf import DictConfig

from medcls.data.cache import decode_all
from medcls.data.inputs import list_inputs
from medcls.data.readers import DEFAULT_WINDOW
from medcls.data.records import Record
from medcls.data.sources.ct_labels import SliceSelection
from medcls.deploy.predictor import Predictor
from medcls.errors import DataError
from medcls.evaluation.calibration import Calibration, calibration_note
from medcls.evaluation.files import write_predictions, write_skipped, write_unit_predictions
from medcls.explain.cams import write_predict_cams
from medcls.utils.console import console


def input_records(cfg: DictConfig) -> list[Record]:
    """``cfg.input`` as records: the slices of the DICOM series or NIfTI volumes it holds
    (patient and series attached, ``cfg.slice_step`` / ``slice_range`` applied), else its
    image files."""
    from medcls.data.sources.ct_inputs import ct_input_records  # pydicom, nibabel: CT only

    selection = SliceSelection.from_cfg(cfg)
    records, notes = ct_input_records(str(cfg.input), selection, cfg.get("group_regex"))
    for note in notes:
        console.print(f"[yellow]{note}[/]")
    if records:
        return records
    return [Record(p, -1, source="input") for p in list_inputs(cfg.input)]


@torch.no_grad()
def run_predict(cfg: DictConfig) -> str:
    """Write ``cfg.output`` and return its path."""
    predictor = Predictor.from_checkpoint(cfg.ckpt_path)
    task, meta = predictor.task, predictor.meta
    records = input_records(cfg)
    if predictor.preprocess.window is None and any(r.group is not None for r in records):
        console.print(
            "[yellow]this checkpoint was trained on 8-bit images (no data.window): the CT "
            f"slices are shown to it through the {DEFAULT_WINDOW} window[/]"
        )
    decoded = decode_all("predict", records, predictor.preprocess, cache="memory")
    if decoded.bad and cfg.on_bad_image == "error":
        raise DataError(f"cannot decode {decoded.bad[0][0]}: {decoded.bad[0][1]}")
    keep = np.flatnonzero(decoded.ok)
    tta = cfg.get("tta")  # null: the checkpoint's views (what its calibration was fitted on)
    if tta is not None and list(tta) != predictor.views:
        console.print(
            f"[yellow]tta={list(tta)} replaces the checkpoint's views {predictor.views}: its "
            "temperature and threshold were fitted on those, so these probabilities are not the "
            "ones its test reported[/]"
        )
    probs = predictor.predict_prepared(
        decoded.images[keep], int(cfg.batch_size), None if tta is None else list(tta)
    )
    preds = predictor.predicted_class(probs)
    calibration = predictor.calibration
    out = os.path.abspath(cfg.output)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    kept = [records[i] for i in keep]
    write_predictions(out, kept, probs, None, meta["class_names"], preds)
    console.print(f"wrote {len(keep)} predictions to {out}")
    if any(r.group is not None for r in kept):  # CT: per series and per patient as well
        for unit, suffix, word in (
            ("series", "series", "series"),
            ("group", "patients", "patient"),
        ):
            path = write_unit_predictions(
                f"{os.path.splitext(out)[0]}_{suffix}.csv",
                unit,
                kept,
                probs,
                meta["class_names"],
                predictor.predicted_group_class,
            )
            console.print(f"wrote the per-{word} predictions (mean over slices) to {path}")
    if calibration != Calibration():
        console.print(f"applied the checkpoint's calibration: {calibration_note(calibration)}")
    cam = cfg.get("cam") or {}
    n_cam = int(cam.get("num_images") or 0)
    if n_cam:  # Grad-CAM of the predicted class of the first n (-1: every) image(s)
        cam_dir = os.path.splitext(out)[0] + "_gradcam"
        shown = keep if n_cam < 0 else keep[:n_cam]
        pngs = write_predict_cams(
            cam_dir,
            task,
            decoded.images[shown],
            probs[: len(shown)],
            [records[i].image_id for i in shown],
            meta["class_names"],
            cam.get("target_layer"),
        )
        console.print(f"wrote {len(pngs)} Grad-CAM overlays to {cam_dir}")
    if decoded.bad:
        skipped = write_skipped(os.path.splitext(out)[0] + ".skipped.csv", decoded.bad)
        console.print(
            f"[yellow]skipped {len(decoded.bad)} unreadable image(s)[/], listed in {skipped}"
        )
    return out

"""Training, evaluation and prediction on CT read from DICOM and NIfTI: metrics per slice,
per series and per patient (recomputed here from the slice predictions), prediction on a
DICOM folder and a volume, the HU lung masks of the ABN study, and the privacy of the headers
(no header field but the PatientID in any file a run writes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score

from medcls.data.datamodule import ClassificationDataModule
from medcls.data.lung_mask import lung_field_mask, lung_field_mask_hu
from medcls.data.medical.address import parse_address
from medcls.data.medical.windows import apply_window
from medcls.data.preprocess import Preprocess
from medcls.data.readers import read_slice_hu
from medcls.deploy.predictor import Predictor
from medcls.evaluation.files import read_predictions
from medcls.workflows.predict import run_predict
from medcls.workflows.train import run_train

pytestmark = pytest.mark.slow  # real training runs (a subprocess among them)

NIFTI_PATIENT = "data.group_regex='^([A-Z]+\\d+)_s'"  # COV03_s1.nii.gz → COV03


def unit_balanced_accuracy(df: pd.DataFrame, unit: str) -> float:
    """Balanced accuracy of the units' mean probabilities (argmax), recomputed with pandas and
    scikit-learn from the slice predictions."""
    p_cols = [c for c in df.columns if c.startswith("p_")]
    classes = [c[2:] for c in p_cols]
    mean = df.groupby(unit)[p_cols].mean()
    label = df.groupby(unit)["label"].agg(lambda s: s.mode().iloc[0])
    pred = mean.to_numpy().argmax(1)
    return balanced_accuracy_score(label.map(classes.index), pred)


@pytest.fixture(scope="module")
def dicom_run(tmp_path_factory, helpers, ct_study) -> dict:
    """medcls-train on the DICOM class folders, as a user runs it (a subprocess with MLflow
    in its own store, so every file it leaves can be searched)."""
    work = tmp_path_factory.mktemp("dicom_run")
    args = helpers.train_overrides(
        "data=dicom",
        f"data.root={ct_study.dicom_folders}",
        "trainer.max_epochs=2",
        *helpers.mlflow_overrides(helpers.sqlite_uri(work / "mlflow.db"), "ct-dicom"),
    )
    done = helpers.run_cli("medcls-train", [a for a in args if a != "logger=none"], work)
    assert done.returncode == 0, done.stderr[-3000:]
    out = next(work.glob("outputs/**/test_predictions.csv")).parent
    metrics = pd.read_csv(out / "metrics_summary.csv")
    return {"work": work, "out": out, "stdout": done.stdout + done.stderr, "summary": metrics}


def test_dicom_run_reports_slice_series_and_patient_metrics(dicom_run):
    df = read_predictions(dicom_run["out"] / "test_predictions.csv")
    summary = dicom_run["summary"].set_index(["level", "metric"])["value"]
    assert set(summary.index.get_level_values(0)) == {"test", "series", "group"}
    for level, unit in (("series", "series"), ("group", "group")):
        assert summary[(level, "balanced_accuracy")] == pytest.approx(
            unit_balanced_accuracy(df, unit), abs=1e-6
        ), level
    # each slice carries its patient and series; a patient's series are named per patient
    assert all(s.startswith(f"{g}/series") for g, s in zip(df["group"], df["series"], strict=True))
    assert df["path"].str.startswith("dicom:").all()
    assert "per group (patient, lesion)" in dicom_run["stdout"]


def test_nothing_but_the_patient_id_leaves_the_headers(dicom_run, ct_study):
    """PatientName, BirthDate and every Study/SeriesInstanceUID are in the DICOM files, and in
    no file the run wrote (outputs, MLflow store and artifacts, caches) nor in its console
    output; the PatientIDs (the group ids) are, which shows the search reads those files."""
    needles = [ct_study.patient_name, ct_study.birth_date, *ct_study.study_uids,
               *ct_study.series_uids]  # fmt: skip
    one = next(p for p in ct_study.dicom_folders.rglob("img_0"))
    raw = one.read_bytes()
    assert ct_study.patient_name.encode() in raw and ct_study.birth_date.encode() in raw
    files = [p for p in dicom_run["work"].rglob("*") if p.is_file()]
    assert any(p.name == "mlflow.db" for p in files) and len(files) > 20
    found = {n: [str(p) for p in files if n.encode() in p.read_bytes()] for n in needles}
    assert not {n: where for n, where in found.items() if where}
    assert not [n for n in needles if n in dicom_run["stdout"]]
    # the group ids do reach the artifacts (the CSVs, the MLflow store)
    assert any(b"COV00" in p.read_bytes() for p in files if p.suffix == ".csv")


def test_predict_on_a_dicom_folder_and_a_volume(dicom_run, ct_study, workdir, helpers):
    """Per slice, per series, per patient; a series converted to NIfTI gets the same slice
    probabilities as its DICOM files."""
    ckpt = dicom_run["out"] / "checkpoints" / "best.ckpt"
    cfg = helpers.compose_cfg(
        [f"ckpt_path={ckpt}", f"input={ct_study.dicom_flat}", "output=ct.csv"], "predict"
    )
    run_predict(cfg)
    slices = read_predictions(workdir / "ct.csv")
    assert len(slices) == 3 * len(ct_study.series_uids)
    series = pd.read_csv(workdir / "ct_series.csv", dtype={"series": str, "group": str})
    patients = pd.read_csv(workdir / "ct_patients.csv", dtype={"group": str})
    assert len(series) == len(ct_study.series_uids) and len(patients) == len(ct_study.label_of)
    p_cols = [c for c in slices.columns if c.startswith("p_")]
    for table, unit in ((series, "series"), (patients, "group")):
        mean = slices.groupby(unit)[p_cols].mean().loc[table[unit]]
        np.testing.assert_allclose(table[p_cols].to_numpy(), mean.to_numpy(), atol=2e-6)
        assert (table["slices"] == slices.groupby(unit).size().loc[table[unit]].to_numpy()).all()

    # a bare DICOM file's path through the Python API: the same slice, the same numbers
    bare = ct_study.dicom_flat / "COV01" / "series_0" / "img_1"
    probs = Predictor.from_checkpoint(str(ckpt)).predict([str(bare)])
    row = slices[slices["path"] == f"dicom:{bare}"]
    np.testing.assert_allclose(probs, row[p_cols].to_numpy(), atol=1e-5)

    volume = ct_study.nifti_folders / "CT_COVID" / "COV01_s0.nii.gz"
    cfg = helpers.compose_cfg(
        [f"ckpt_path={ckpt}", f"input={volume}", "output=vol.csv", NIFTI_PATIENT[5:]], "predict"
    )
    run_predict(cfg)
    vol = read_predictions(workdir / "vol.csv")
    assert list(vol["group"]) == ["COV01"] * 3
    same = slices[slices["series"] == "COV01/series1"].sort_values("path")  # img_0 … img_2
    np.testing.assert_allclose(vol[p_cols].to_numpy(), same[p_cols].to_numpy(), atol=1e-5)


def test_nifti_run(helpers, ct_study, workdir, cache_dir):
    cfg = helpers.compose_cfg(
        helpers.train_overrides(
            "data=nifti",
            f"data.root={ct_study.nifti_folders}",
            NIFTI_PATIENT,
            "trainer.max_epochs=1",
            cache=cache_dir,
        )
    )
    metrics = run_train(cfg)
    df = read_predictions(Path(cfg.paths.output_dir) / "test_predictions.csv")
    assert df["path"].str.startswith("nifti:").all()
    assert metrics["group/balanced_accuracy"] == pytest.approx(
        unit_balanced_accuracy(df, "group"), abs=1e-6
    )
    assert metrics["series/balanced_accuracy"] == pytest.approx(
        unit_balanced_accuracy(df, "series"), abs=1e-6
    )


def test_abn_covid_ct_on_dicom_draws_lung_masks_from_hu(helpers, ct_study, tmp_path):
    """experiment=abn_covid_ct unchanged on data=dicom: its lung_threshold masks are drawn from
    each slice's Hounsfield units (lung_field_mask_hu), not from the windowed picture."""
    cfg = helpers.compose_cfg(
        [
            "experiment=abn_covid_ct",
            "data=dicom",
            f"data.root={ct_study.dicom_folders}",
            "data.image_size=64",
            "data.cache=memory",
        ]
    )
    assert cfg.data.source == "dicom" and cfg.data.mask.source == "lung_threshold"
    dm = ClassificationDataModule(cfg.data)
    dm.setup()
    assert dm.decoded.has_mask.mean() > 0.5  # most real chest slices show their lungs
    pre = Preprocess.from_cfg(cfg.data)
    differs = 0
    for i in np.flatnonzero(dm.decoded.has_mask)[:8]:
        hu = read_slice_hu(parse_address(dm.records[i].path))
        image = np.zeros((*hu.shape, 3), np.uint8)
        _, expected = pre(image, lung_field_mask_hu(hu))
        np.testing.assert_array_equal(dm.decoded.masks[i], expected)
        from_picture = lung_field_mask(apply_window(hu, "lung"))  # Otsu on the 8-bit slice
        differs += from_picture is None or not np.array_equal(from_picture, lung_field_mask_hu(hu))
    assert differs  # the two ways disagree on these slices, so the check above tells them apart

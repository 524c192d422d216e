"""Smoke test on real data (skipped when ../shared/data is absent): ``data=combined`` of two
halves of the EyePACS-AIROGS fundus photos (the second capped) and a second view of the first
half (its copies are dropped: one record per image), mapped onto shared class names, with
Grad-CAM overlays; then ``medcls-predict cam.num_images=-1`` on one photo. 64 px, ResNet-10t from
scratch, 1 epoch: it checks the plumbing on real files, not a result."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


def halves(glaucoma: Path, dst: Path) -> tuple[Path, Path]:
    """``dst/a`` and ``dst/b``: links to the first and second half of each class's photos."""
    for c in ("NRG", "RG"):
        photos = sorted((glaucoma / c).iterdir())
        for half, part in (("a", photos[: len(photos) // 2]), ("b", photos[len(photos) // 2 :])):
            (dst / half / c).mkdir(parents=True, exist_ok=True)
            for p in part:
                (dst / half / c / p.name).symlink_to(p)
    return dst / "a", dst / "b"


def test_airogs_combined_with_a_capped_view_and_gradcam(tmp_path, helpers, cache_dir) -> None:
    glaucoma = helpers.shared_data("glaucoma_airogs", "RG")
    uri = helpers.sqlite_uri(tmp_path / "combined.db")
    first, second = halves(glaucoma, tmp_path / "halves")
    n_first = sum(1 for _ in first.rglob("*.*"))
    proc = helpers.run_cli(
        "medcls-train",
        [
            "data=combined",
            "data.classes=[normal,glaucoma]",
            "data.crop_black_border=true",
            "+data@data.sources.airogs=glaucoma",
            f"data.sources.airogs.root={first}",
            "+data.sources.airogs.class_map={NRG: normal, RG: glaucoma}",
            "+data@data.sources.view2=glaucoma",
            f"data.sources.view2.root={second}",
            "+data.sources.view2.class_map={NRG: normal, RG: glaucoma}",
            "+data.sources.view2.max_per_class=40",
            "+data@data.sources.again=glaucoma",  # the same files as airogs
            f"data.sources.again.root={first}",
            "+data.sources.again.class_map={NRG: normal, RG: glaucoma}",
            "data.image_size=64",
            "model.name=resnet10t",
            "trainer.max_epochs=1",
            "cam.num_images=6",
            "++trainer.enable_progress_bar=false",
            "print_config=false",
            f"paths.cache_dir={cache_dir}",
            f"logger.mlflow.tracking_uri={uri}",
            "experiment_name=combined_smoke",
        ],
        cwd=tmp_path,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "balanced accuracy by source" in proc.stdout
    assert "appear in more than one source" in proc.stdout + proc.stderr
    dropped = f"{n_first} image(s) of source 'again' are copies of images of source 'airogs'"
    assert dropped in proc.stdout + proc.stderr

    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("combined_smoke").experiment_id])
    m = run.data.metrics
    test = pd.read_csv(
        helpers.download_artifact(client, run.info.run_id, "test_predictions.csv", tmp_path / "a")
    )
    for source in ("airogs", "view2"):  # each source's figures are those of its own images
        mine = helpers.assert_metrics_match_predictions(
            m, test[test["source"] == source], f"test/{source}/", positive="glaucoma"
        )
        assert {"sensitivity", "specificity"} <= set(mine)
    n_test = m["test/airogs/images"] + m["test/view2/images"]
    assert m["test/view2/images"] < m["test/airogs/images"]  # 80 of 350 images are view2's
    assert "test/again/images" not in m  # all its images are airogs's, kept once

    (out,) = [p.parent for p in tmp_path.glob("outputs/train/runs/*/test_predictions.csv")]
    test = pd.read_csv(out / "test_predictions.csv")
    val = pd.read_csv(out / "val_predictions.csv")
    assert len(test) == n_test and set(test["source"]) == {"airogs", "view2"}
    assert set(test["label"]) == {"normal", "glaucoma"}
    assert not set(test["path"]) & set(val["path"])  # a file listed twice stays in one partition
    assert not test["path"].duplicated().any() and not val["path"].duplicated().any()
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "gradcam")}
    assert len(artifacts) == 6 + 1 and "gradcam/overview.png" in artifacts

    photo = next((glaucoma / "RG").iterdir())
    proc = helpers.run_cli(
        "medcls-predict",
        [
            f"ckpt_path={out / 'checkpoints' / 'best.ckpt'}",
            f"input={photo}",
            "output=one/preds.csv",
            "cam.num_images=-1",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (tmp_path / "one" / "preds_gradcam" / f"{photo.stem}.png").is_file()


ISIC2019_COLUMNS = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]


def test_ham10000_with_an_isic2019_copy_keeps_each_lesion_in_one_partition(
    tmp_path, helpers, cache_dir, ham10000_subset
) -> None:
    """HAM10000 (the session's lesion subset) + an ISIC-2019-layout copy (other paths, same
    image ids, ISIC 2019's upper-case columns, no metadata) of the first image of every other
    lesion: the copies are the HAM images again, so each image is one record (HAM's), and every
    lesion seen in the val or test predictions has all its images there, so none is in train."""
    import shutil

    from medcls.workflows.train import run_train

    ham = helpers.shared_data("ham10000", "HAM10000_metadata.csv")
    subset = pd.read_csv(ham10000_subset)
    copied = subset.groupby("lesion_id").head(1).iloc[::2]
    (tmp_path / "isic" / "images").mkdir(parents=True)
    rows = [",".join(["image", *ISIC2019_COLUMNS])]
    for r in copied.itertuples():
        shutil.copy(ham / "images" / f"{r.image_id}.jpg", tmp_path / "isic" / "images")
        col = "AK" if r.dx == "akiec" else r.dx.upper()
        rows.append(",".join([r.image_id, *("1" if c == col else "0" for c in ISIC2019_COLUMNS)]))
    (tmp_path / "isic" / "GroundTruth.csv").write_text("\n".join(rows) + "\n")

    with helpers.chdir(tmp_path):
        cfg = helpers.compose_cfg(
            helpers.train_overrides(
                "data=combined",
                "data.classes=[akiec,bcc,bkl,df,mel,nv,vasc]",
                "+data@data.sources.ham10000=ham10000",
                f"data.sources.ham10000.root={ham}",
                f"data.sources.ham10000.metadata_csv={ham10000_subset}",
                "+data@data.sources.isic2019=isic_csv",
                f"data.sources.isic2019.root={tmp_path / 'isic'}",
                "data.sources.isic2019.csv=GroundTruth.csv",
                "data.sources.isic2019.images_dir=images",
                "+data.sources.isic2019.class_map={AK: akiec}",
                # the copy has no SCC or UNK images: narrow the CSV's declared columns
                "data.sources.isic2019.classes=[MEL,NV,BCC,AK,BKL,DF,VASC]",
                f"data.image_size={helpers.HAM_SUBSET_SIZE}",
                "model.name=resnet10t",
                "data.batch_size=128",
                "trainer.max_epochs=1",
                "++trainer.limit_train_batches=2",
                cache=cache_dir,
            )
        )
        out = Path(cfg.paths.output_dir)
        run_train(cfg)
    lesion_of = dict(zip(subset["image_id"], subset["lesion_id"], strict=True))
    images = subset["lesion_id"].value_counts()  # the copies add no image: one record each
    seen = {}
    for part in ("val", "test"):
        preds = pd.read_csv(out / f"{part}_predictions.csv")
        lesions = preds["path"].map(lambda p: lesion_of[Path(p).stem])
        assert preds["path"].map(lambda p: Path(p).is_relative_to(ham)).all()  # HAM's copies
        assert not preds["path"].map(lambda p: Path(p).stem).duplicated().any()
        for lesion, n in lesions.value_counts().items():
            assert n == images[lesion], (part, lesion, n, images[lesion])
            assert seen.setdefault(lesion, part) == part

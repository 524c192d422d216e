"""Shared fixtures: an offline environment, a temporary working directory, a temporary MLflow
store, composing the real configs, and tiny on-disk datasets in each source's layout.

Test modules reach the helper functions through the ``helpers`` fixture (this module), never
by ``import conftest``: several conftest.py files share that module name.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

# Never reach the network (timm/HF hub, albumentations update check), never open a window.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "NO_ALBUMENTATIONS_UPDATE": "1", "MPLBACKEND": "Agg"}
os.environ.update(OFFLINE_ENV)

from omegaconf import DictConfig, OmegaConf  # noqa: E402
from PIL import Image  # noqa: E402

from medcls import api as medcls_api  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SHARED_DATA = REPO.parent / "shared" / "data"

# The smallest settings that still train, validate and test for real (a few seconds a run).
TINY = [
    "model.name=test_efficientnet",
    "data.image_size=32",
    "data.batch_size=16",
    "print_config=false",
    "trainer.precision=32-true",
    "++trainer.enable_progress_bar=false",
    "++trainer.enable_model_summary=false",
    # the curve PNGs cost ~0.3 s a run; tests/workflows/test_evaluation_report.py checks them
    "eval.curves=false",
]
TINY_SYNTHETIC = ["data=synthetic", "data.num_samples=100", "data.native_size=32"]

# ------------------------------------------------------------------------------------ tiers
# pyproject's addopts deselect the slow tier (``-m "not slow and not realdata"``); a later
# ``-m`` replaces that expression (``make test-slow``, ``make test-all``). What the fast tier
# leaves out is counted here and said on the last line, with the command that runs it.
SLOW_TIER = ("slow", "realdata")
_left_out: list[str] = []


def pytest_deselected(items: list[pytest.Item]) -> None:
    _left_out.extend(i.nodeid for i in items if any(i.get_closest_marker(m) for m in SLOW_TIER))


def pytest_unconfigure(config: pytest.Config) -> None:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if _left_out and reporter is not None:
        reporter.write_line(
            f"{len(_left_out)} slow or real-data tests left out: run them with `make test-slow` "
            "(pytest -m 'slow or realdata'), or everything with `make test-all` (pytest -m '')"
        )


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in OFFLINE_ENV.items():
        monkeypatch.setenv(k, v)
    # A developer's own store, cache or data location must not leak into the tests.
    for k in ("MLFLOW_TRACKING_URI", "MEDCLS_CACHE_DIR", "MEDCLS_DATA_DIR", "MEDCLS_CONFIG_DIR"):
        monkeypatch.delenv(k, raising=False)


@contextlib.contextmanager
def chdir(path: str | os.PathLike) -> Iterator[None]:
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working directory (outputs/, multirun/, mlflow.db land here)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a server a test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sqlite_uri(path: str | os.PathLike) -> str:
    return f"sqlite:///{os.path.abspath(path)}"


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One MLflow store per session (creating a SQLite store costs seconds); tests keep their
    runs apart with their own experiment names."""
    return sqlite_uri(tmp_path_factory.mktemp("mlflow") / "mlflow.db")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Session-wide decode cache (HAM10000 is decoded once per session)."""
    return tmp_path_factory.mktemp("decode_cache")


def compose_cfg(
    overrides: Sequence[str] = (),
    config_name: str = "train",
    output_dir: str | os.PathLike | None = None,
) -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` like ``hydra.main`` does for a single run (the
    Python API's :func:`medcls.api.compose`, which ``medcls.train`` & co. use)."""
    return medcls_api.compose(config_name, overrides, output_dir)


def train_overrides(*extra: str, cache: str | os.PathLike | None = None) -> list[str]:
    """TINY settings (+ a small synthetic set unless ``extra`` picks ``data=``), no logger."""
    synthetic = not any(e.startswith("data=") for e in extra)
    out = [*TINY, *(TINY_SYNTHETIC if synthetic else []), "logger=none"]
    if cache is not None:
        out.append(f"paths.cache_dir={cache}")
    return out + list(extra)


def mlflow_overrides(uri: str, experiment: str) -> list[str]:
    return ["logger=mlflow", f"logger.mlflow.tracking_uri={uri}", f"experiment_name={experiment}"]


def run_cli(
    name: str, args: Sequence[str], cwd: str | os.PathLike, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Run a console script (``medcls-train`` …) of this venv offline; capture its output."""
    env = {**os.environ, **OFFLINE_ENV, "COLUMNS": "200"}
    for k in ("MLFLOW_TRACKING_URI", "MEDCLS_CACHE_DIR", "MEDCLS_DATA_DIR", "MEDCLS_CONFIG_DIR"):
        env.pop(k, None)
    return subprocess.run(
        [str(BIN / name), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def resolved_ok(cfg: DictConfig) -> dict:
    """Resolve the whole config (raises on any broken interpolation or missing value)."""
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)


# ------------------------------------------------------------------ metrics, recomputed
def metrics_from_predictions(path, positive: int | str = 1) -> dict[str, float]:
    """Accuracy, balanced accuracy (mean recall over the classes present), macro and per-class
    one-vs-rest AUROC (where the CSV has no tied scores) and, for two classes, sensitivity and
    specificity of class ``positive`` (index or name), recomputed with scikit-learn from a
    predictions CSV (or its DataFrame), independently of ``medcls.metrics``: a logged figure
    that disagrees was computed on something else."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, recall_score, roc_auc_score

    from medcls.evaluation.files import read_predictions

    df = path if hasattr(path, "columns") else read_predictions(path)  # a CSV or its DataFrame
    classes = [c[2:] for c in df.columns if c.startswith("p_")]
    positive = classes.index(positive) if isinstance(positive, str) else positive
    y = df["label"].map(classes.index).to_numpy()
    pred = df["prediction"].map(classes.index).to_numpy()
    out = {
        "accuracy": accuracy_score(y, pred),
        "balanced_accuracy": balanced_accuracy_score(y, pred),
    }
    # AUROC only where the CSV's 6 decimals keep every score apart: an untrained model's
    # near-equal probabilities become ties there that the logged float32 scores did not have
    untied = all(df[f"p_{c}"].is_unique for c in classes)
    aucs = []
    for i, c in enumerate(classes):
        if untied and 0 < (y == i).sum() < len(y):
            out[f"auroc_{c}"] = roc_auc_score(y == i, df[f"p_{c}"])
            aucs.append(out[f"auroc_{c}"])
    if aucs:
        out["auroc_macro"] = float(np.mean(aucs))
    if len(classes) == 2:
        out["sensitivity"] = recall_score(y == positive, pred == positive)
        out["specificity"] = recall_score(y != positive, pred != positive)
        if untied:
            out["auroc_positive"] = out[f"auroc_{classes[positive]}"]
    return {k: float(v) for k, v in out.items()}


def assert_metrics_match_predictions(
    logged: dict, path, prefix: str = "test/", positive: int | str = 1
) -> dict[str, float]:
    """Every logged ``<prefix><metric>`` that :func:`metrics_from_predictions` recomputes equals
    it (AUROC to 1e-3: the CSV keeps 6 decimals); accuracy and balanced accuracy must be there."""
    mine = metrics_from_predictions(path, positive)
    for key in ("accuracy", "balanced_accuracy"):
        assert f"{prefix}{key}" in logged, f"{prefix}{key} was not logged"
    for key, value in mine.items():
        if f"{prefix}{key}" in logged:
            assert logged[f"{prefix}{key}"] == pytest.approx(value, abs=1e-3), (prefix, key)
    return mine


def download_artifact(client, run_id: str, name: str, dst: str | os.PathLike) -> Path:
    """A run's artifact ``name`` (``test_predictions.csv``, ``ensemble_predictions.csv`` …),
    downloaded into ``dst``."""
    os.makedirs(dst, exist_ok=True)
    return Path(client.download_artifacts(run_id, name, str(dst)))


# ----------------------------------------------------------------------------------- images
def write_image(
    path: str | os.PathLike, rng: np.random.Generator, label: int, size: int = 40, mode: str = "RGB"
) -> None:
    """A small image whose colour depends on ``label`` (so a model could learn it)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    base = np.array([(60 + 70 * label) % 256, (200 - 50 * label) % 256, 90 + 30 * label])
    arr = np.clip(base + rng.normal(0, 25, (size, size + 8, 3)), 0, 255).astype(np.uint8)
    im = Image.fromarray(arr)
    if mode != "RGB":
        im = im.convert(mode)
    fmt = "PNG" if str(path).endswith(".png") else "JPEG"
    im.save(path, format=fmt)


def write_corrupt(path: str | os.PathLike) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Path(path).write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG" * 4)


def make_imagefolder(root: Path, classes: Sequence[str], per_class: int = 8, seed: int = 0) -> Path:
    """``root/<class>/<class>_<i>.jpg``."""
    rng = np.random.default_rng(seed)
    for label, c in enumerate(classes):
        for i in range(per_class):
            write_image(root / c / f"{c}_{i:03d}.jpg", rng, label)
    return root


def make_ham10000(
    root: Path,
    classes: Sequence[str] = ("bkl", "mel", "nv"),
    lesions_per_class: int = 5,
    images_per_lesion: int = 2,
    seed: int = 0,
) -> Path:
    """``HAM10000_metadata.csv`` + ``images/<image_id>.jpg`` + ``masks/<id>_segmentation.png``;
    image n is 25 + 10·(n mod 6) years old, male / female / unknown sex in turn, back or face."""
    rng = np.random.default_rng(seed)
    rows = ["lesion_id,image_id,dx,dx_type,age,sex,localization"]
    n = 0
    for label, c in enumerate(classes):
        for les in range(lesions_per_class):
            lesion = f"HAM_{label:02d}{les:05d}"
            for _ in range(images_per_lesion):
                image_id = f"ISIC_{n:07d}"
                n += 1
                write_image(root / "images" / f"{image_id}.jpg", rng, label)
                mask = np.zeros((40, 48), np.uint8)
                mask[10:30, 12:36] = 255
                (root / "masks").mkdir(exist_ok=True)
                Image.fromarray(mask).save(root / "masks" / f"{image_id}_segmentation.png")
                sex = ("male", "female", "unknown")[n % 3]  # HAM10000 writes "unknown"
                site = ("back", "face")[n % 2]
                rows.append(f"{lesion},{image_id},{c},histo,{25 + 10 * (n % 6)}.0,{sex},{site}")
    (root / "HAM10000_metadata.csv").write_text("\n".join(rows) + "\n")
    return root


def make_isic_csv(
    root: Path,
    classes: Sequence[str] = ("MEL", "NV", "BCC"),
    per_class: int = 8,
    empty_classes: Sequence[str] = ("UNK",),
    csv_name: str = "GroundTruth.csv",
    images_dir: str = "images",
    seed: int = 0,
) -> Path:
    """ISIC ground truth ``image,MEL,NV,...`` (one-hot; ``empty_classes`` all zeros)."""
    rng = np.random.default_rng(seed)
    cols = list(classes) + list(empty_classes)
    rows = [",".join(["image", *cols])]
    n = 0
    for label, _ in enumerate(classes):
        for _ in range(per_class):
            image_id = f"ISIC_{seed:02d}{n:05d}"
            n += 1
            write_image(root / images_dir / f"{image_id}.jpg", rng, label)
            onehot = ["1.0" if j == label else "0.0" for j in range(len(cols))]
            rows.append(",".join([image_id, *onehot]))
    (root / csv_name).write_text("\n".join(rows) + "\n")
    return root


def isic_with_unknown(root: Path, classes: Sequence[str] = ("MEL", "NV", "BCC")) -> list[str]:
    """Training CSV of ``classes`` (8 images each) and a test CSV that adds 4 ``UNK`` images
    of none of them; returns the ``data=isic_csv … data.unknown=reject`` overrides."""
    make_isic_csv(root, classes, per_class=8)
    make_isic_csv(
        root, [*classes, "UNK"], 4, (), csv_name="Test.csv", images_dir="test_images", seed=1
    )
    return [
        "data=isic_csv",
        f"data.root={root}",
        "data.csv=GroundTruth.csv",
        "data.images_dir=images",
        "data.test_csv=Test.csv",
        "data.test_images_dir=test_images",
        "data.unknown=reject",
        f"data.classes=[{','.join(classes)}]",  # the training CSV's UNK column has no images
    ]


def make_covid_ct(root: Path, per_class: int = 10, seed: int = 0) -> Path:
    """``CT_COVID/``, ``CT_NonCOVID/`` (mixed L/RGB/RGBA, png/jpg) + ``Data-split/`` lists for
    the official train and val partitions (no official test: it is carved from the pool)."""
    rng = np.random.default_rng(seed)
    split_dir = root / "Data-split"
    split_dir.mkdir(parents=True)
    modes = ("L", "RGB", "RGBA")
    for label, c in enumerate(("CT_NonCOVID", "CT_COVID")):
        names = []
        for i in range(per_class):
            if c == "CT_COVID":  # paper + page name a patient; two slices each
                name = f"2020.03.{i // 2:02d}.2003{i // 2:04d}-p{i // 2 + 3}-{100 + i}%{i % 2}.png"
            else:
                name = f"{100 + i}.png" if i % 2 else f"{100 + i}%0.jpg"
            mode = modes[i % 3] if name.endswith(".png") else "L"
            write_image(root / c / name, rng, label, size=48, mode=mode)
            names.append(name)
        cut = int(per_class * 0.7) // 2 * 2  # whole COVID patients on each side
        (split_dir / f"train{c}.txt").write_text("\n".join(names[:cut]) + "\n")
        (split_dir / f"val{c}.txt").write_text("\n".join(names[cut:]) + "\n")
    return root


# ------------------------------------------------------------------------------- real data
def shared_data(folder: str, inside: str | None = None) -> Path:
    """``../shared/data/<folder>``, one of the real data sets; skips the calling test (or
    fixture) when that folder is absent, or ``inside`` it: a file or subfolder that must be
    there (``shared_data("glaucoma_airogs", "RG")``, ``shared_data("ham10000",
    "HAM10000_metadata.csv")``). The one place a test finds the real data."""
    path = SHARED_DATA / folder
    if not path.is_dir() or (inside is not None and not (path / inside).exists()):
        pytest.skip(f"{folder} not found at {path} (the real data in ../shared/data)")
    return path


# The real HAM10000 runs that only need "trains and writes its table" share one lesion subset
# at one image size, so the session decodes ~1,000 images once instead of 10,015 per size.
HAM_SUBSET_SIZE = 64


@pytest.fixture(scope="session")
def ham10000_subset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A HAM10000 metadata CSV of whole lesions of every class (seeded: up to 8 % of each
    class's lesions, at least 40; ~1,000 images), read with ``data.metadata_csv=<this>`` and
    ``data.root`` at the real images. Skips when ../shared/data/ham10000 is absent."""
    import pandas as pd

    ham = shared_data("ham10000", "HAM10000_metadata.csv")
    meta = pd.read_csv(ham / "HAM10000_metadata.csv")
    rng = np.random.default_rng(0)
    keep: list[str] = []
    for _, lesions in meta.groupby("dx")["lesion_id"]:
        unique = lesions.unique()
        n = min(len(unique), max(40, int(0.08 * len(unique))))
        keep += list(rng.choice(unique, n, replace=False))
    out = tmp_path_factory.mktemp("ham10000_subset") / "HAM10000_metadata.csv"
    meta[meta["lesion_id"].isin(keep)].to_csv(out, index=False)
    return out


@pytest.fixture(scope="session")
def helpers():
    """This module: ``helpers.compose_cfg(...)``, ``helpers.train_overrides(...)``, builders."""
    return _THIS


@pytest.fixture(scope="session")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny read-only datasets, one per on-disk layout."""
    base = tmp_path_factory.mktemp("datasets")
    return {
        "imagefolder": make_imagefolder(base / "imagefolder", ["akiec", "bcc", "nv"]),
        "glaucoma": make_imagefolder(base / "glaucoma", ["NRG", "RG"]),
        "ham10000": make_ham10000(base / "ham10000"),
        "isic_csv": make_isic_csv(base / "isic"),
        "covid_ct": make_covid_ct(base / "covid_ct"),
    }


# Taken at import: sys.modules["conftest"] later names whichever conftest.py was loaded last.
_THIS = sys.modules[__name__]

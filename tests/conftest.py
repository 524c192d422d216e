"""Shared fixtures: an offline environment, a temporary working directory, a temporary MLflow
store, composing the real configs, and tiny on-disk datasets in each source's layout.

Test modules reach the helper functions through the ``helpers`` fixture (this module), never
by ``import conftest``: several conftest.py files share that module name.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

# Never reach the network (timm/HF hub, albumentations update check), never open a window.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "NO_ALBUMENTATIONS_UPDATE": "1", "MPLBACKEND": "Agg"}
os.environ.update(OFFLINE_ENV)

from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import DictConfig, OmegaConf, open_dict  # noqa: E402
from PIL import Image  # noqa: E402

from medcls.config import CONFIG_DIR  # noqa: E402

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
]
TINY_SYNTHETIC = ["data=synthetic", "data.num_samples=100", "data.native_size=32"]

_run_counter = itertools.count()


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
    """Compose ``conf/<config_name>.yaml`` like ``hydra.main`` does for a single run.

    The Hydra node is registered with :class:`HydraConfig` (so ``${hydra:...}`` resolves) and
    removed from the returned config; ``hydra.runtime.output_dir`` is the configured run dir
    (made unique), or ``output_dir``. Relative paths resolve against the current directory.
    """
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name, overrides=list(overrides), return_hydra_config=True)
    if output_dir is None:
        base = str(cfg.hydra.run.dir)
        output_dir = base
        while os.path.exists(output_dir):
            output_dir = f"{base}_{next(_run_counter)}"
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = os.path.abspath(output_dir)
        cfg.hydra.job.name = config_name
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


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
    """``HAM10000_metadata.csv`` + ``images/<image_id>.jpg`` + ``masks/<id>_segmentation.png``."""
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
                rows.append(f"{lesion},{image_id},{c},histo,50.0,male,back")
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

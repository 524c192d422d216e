"""Shared helpers for the data tests: compose the real data configs, write tiny images."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict
from PIL import Image

from medcls.config import CONFIG_DIR


def compose_train(*overrides: str) -> DictConfig:
    """The whole ``train.yaml`` config with Hydra ``overrides`` (no ``hydra:`` node)."""
    GlobalHydra.instance().clear()  # another test may have left Hydra initialised
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("train", overrides=list(overrides))


def compose_data(config: str, /, **overrides: Any) -> DictConfig:
    """``cfg.data`` of ``train.yaml`` with ``data=<config>``, keys set from ``overrides``.

    Values are set after composing (no override grammar to escape), so any path or list works.
    The root config stays attached, so ``split_seed: ${seed}`` resolves.
    """
    cfg = compose_train(f"data={config}")
    with open_dict(cfg):
        for key, value in overrides.items():
            cfg.data[key] = value
    return cfg.data


def write_image(
    path: str | os.PathLike,
    size: tuple[int, int] = (40, 30),
    value: int = 128,
    mode: str = "RGB",
    seed: int | None = None,
) -> str:
    """A small image of ``size`` (w, h): flat ``value`` plus a little noise when ``seed``."""
    path = str(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    w, h = size
    arr = np.full((h, w, 3), value, dtype=np.int16)
    if seed is not None:
        arr += np.random.default_rng(seed).integers(-20, 21, arr.shape, dtype=np.int16)
    arr = np.clip(arr, 0, 255).astype(np.uint8)
    im = Image.fromarray(arr)
    if mode != "RGB":
        im = im.convert(mode)
    im.save(path)
    return path


def make_image_folder(
    root: str | os.PathLike, counts: dict[str, int], ext: str = ".jpg", prefix: str = "img"
) -> dict[str, list[str]]:
    """``root/<class>/<prefix><i><ext>`` with ``counts[class]`` images each; class k is darker."""
    out: dict[str, list[str]] = {}
    for k, (cls, n) in enumerate(sorted(counts.items())):
        os.makedirs(os.path.join(root, cls), exist_ok=True)
        out[cls] = [
            write_image(os.path.join(root, cls, f"{prefix}{i:03d}{ext}"), value=60 + 40 * k, seed=i)
            for i in range(n)
        ]
    return out


@pytest.fixture
def train_cfg() -> Callable[..., DictConfig]:
    """:func:`compose_train`: ``train_cfg("augmentation=strong")``."""
    return compose_train


@pytest.fixture
def data_cfg() -> Callable[..., DictConfig]:
    """:func:`compose_data`: ``data_cfg("imagefolder", root=...)``."""
    return compose_data


@pytest.fixture
def image_file() -> Callable[..., str]:
    """:func:`write_image`."""
    return write_image


@pytest.fixture
def image_folder() -> Callable[..., dict[str, list[str]]]:
    """:func:`make_image_folder`."""
    return make_image_folder


@pytest.fixture
def folder_dataset(tmp_path: Path) -> Path:
    """Three classes (a, b, c) × 6 JPEGs of 40x30 under ``tmp_path/imgs``."""
    root = tmp_path / "imgs"
    make_image_folder(root, {"a": 6, "b": 6, "c": 6})
    return root

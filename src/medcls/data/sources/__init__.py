"""Dataset readers: each turns one on-disk layout into :class:`~medcls.data.records.Record` s."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from omegaconf import DictConfig

from medcls.data.sources.base import SourceData
from medcls.data.sources.combined import load_combined
from medcls.data.sources.covid_ct import load_covid_ct
from medcls.data.sources.exclude import apply_exclusions
from medcls.data.sources.ham10000 import load_ham10000
from medcls.data.sources.imagefolder import load_imagefolder
from medcls.data.sources.isic_csv import load_isic_csv
from medcls.data.sources.synthetic import load_synthetic
from medcls.errors import DataError


def _lazy(module: str, name: str) -> Callable[[DictConfig], SourceData]:
    """A reader imported when first used: the CT readers bring pydicom and nibabel (0.6 s),
    which no other run needs."""

    def load(cfg: DictConfig) -> SourceData:
        return getattr(importlib.import_module(f"medcls.data.sources.{module}"), name)(cfg)

    return load


SOURCES: dict[str, Callable[[DictConfig], SourceData]] = {
    "synthetic": load_synthetic,
    "imagefolder": load_imagefolder,
    "ham10000": load_ham10000,
    "isic_csv": load_isic_csv,
    "covid_ct": load_covid_ct,
    "dicom": _lazy("dicom", "load_dicom"),  # CT series: DICOM files → slices in HU → windows
    "nifti": _lazy("nifti", "load_nifti"),  # CT volumes: .nii / .nii.gz → axial slices → windows
    "combined": load_combined,  # several of the above as one dataset
}


def load_source(cfg: DictConfig) -> SourceData:
    """Read the dataset described by a ``conf/data`` config, minus ``data.exclude``."""
    if cfg.source not in SOURCES:
        raise DataError(f"data.source={cfg.source!r} is unknown; choose one of {sorted(SOURCES)}.")
    return apply_exclusions(SOURCES[cfg.source](cfg), cfg.get("exclude"))


__all__ = ["SOURCES", "SourceData", "load_source"]

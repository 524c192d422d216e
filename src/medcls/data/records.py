"""The one thing every data source hands on: a list of :class:`Record`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from medcls.errors import DataError  # noqa: F401  (its old home; import it from medcls.errors)

SLICE_FRAGMENT = re.compile(r"#(frame|z)=(\d+)$")  # a CT slice address's tail (medical/address.py)


@dataclass(frozen=True)
class Record:
    """One labelled image.

    Attributes:
        path: image file path, or a ``synthetic://`` address for generated images.
        label: class index into the source's ``class_names``; ``-1`` when unlabelled.
        group: group id (lesion_id, patient id); samples of one group never cross partitions.
        mask: optional segmentation mask path (same geometry as the image).
        split: official partition (``train``/``val``/``test``) when the source defines one.
        source: name of the dataset the record came from.
        meta: ``(column, value)`` pairs of the source's metadata (``data.metadata_columns``:
            HAM10000's sex, age, localization, dx_type), for subgroup evaluation.
    """

    path: str
    label: int
    group: str | None = None
    mask: str | None = None
    split: str | None = None
    source: str = ""
    meta: tuple[tuple[str, str], ...] = ()

    @property
    def attributes(self) -> dict[str, str]:
        """``meta`` as a dict (column → value; missing values are absent)."""
        return dict(self.meta)

    @property
    def image_id(self) -> str:
        """File stem, as used in ISIC/HAM10000 CSVs and prediction files; a CT slice's address
        (``nifti:/d/vol.nii.gz#z=42``) gives the volume's stem and the slice (``vol_z42``)."""
        name = self.path.rsplit("/", 1)[-1]
        m = SLICE_FRAGMENT.search(name)
        fragment = f"_{m.group(1)}{m.group(2)}" if m else ""
        name = name[: m.start()] if m else name
        if name.lower().endswith(".nii.gz"):  # both extensions go
            name = name[:-3]
        return (name.rsplit(".", 1)[0] if "." in name else name) + fragment

"""Images per class and partition: the table, the chart, and the train run's artifact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from medcls.evaluation.class_counts import class_count_table, write_class_counts


def test_table_counts_each_partition() -> None:
    labels = np.array([0, 0, 1, 2, 1, 1, 3, -1])  # 3: an unknown-class test image, -1 unlabelled
    parts = {
        "train": np.array([0, 2, 3]),
        "val": np.array([], dtype=int),
        "test": np.array([1, 4, 5, 6, 7]),
        "all": np.arange(8),
    }
    table = class_count_table(["a", "b", "c"], labels, parts)
    assert list(table.columns) == ["train", "test", "total"]  # empty val and `all` left out
    assert table.to_dict("index") == {
        "a": {"train": 1, "test": 1, "total": 2},
        "b": {"train": 1, "test": 2, "total": 3},
        "c": {"train": 1, "test": 0, "total": 1},
        "unknown": {"train": 0, "test": 1, "total": 1},
    }


def test_unsplit_data_counts_every_record(tmp_path: Path) -> None:
    csv, png = write_class_counts(str(tmp_path), ["x", "y"], np.array([0, 1, 1]), {}, "t")
    assert pd.read_csv(csv, index_col="class")["all"].to_dict() == {"x": 1, "y": 2}
    assert Path(png).stat().st_size > 1000 and Path(png).read_bytes()[:4] == b"\x89PNG"

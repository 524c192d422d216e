"""Per-run files: the per-class table in the paper's Table 1 layout; ISIC ground truth with UNK."""

from __future__ import annotations

import numpy as np
import pandas as pd

from medcls.data.records import Record
from medcls.evaluation.files import write_isic_csv, write_per_class_markdown


def test_per_class_markdown_is_table1_layout(tmp_path) -> None:
    metrics = {"accuracy_AK": 0.977, "precision_AK": 0.788, "recall_AK": 0.471, "f1_AK": 0.59}
    metrics |= {"accuracy_B_C": 0.5, "precision_B_C": float("nan"), "recall_B_C": 0.0}
    path = write_per_class_markdown(
        str(tmp_path / "t.md"), metrics, ["AK", "B C"], [17, 3], "run · test"
    )
    lines = (tmp_path / "t.md").read_text().splitlines()
    assert lines[0] == "**run · test**"
    assert lines[2] == "|  | AK (n=17) | B C (n=3) |"
    assert lines[4] == "| Acc | 97.7% | 50.0% |"
    assert lines[5] == "| Precision | 78.8% | — |"  # undefined, not 0
    assert lines[6] == "| Recall | 47.1% | 0.0% |"
    assert lines[7] == "| F1-score | 59.0% | — |"  # absent
    assert path.endswith("t.md")


def test_isic_csv_puts_unknown_images_in_an_unk_column(tmp_path) -> None:
    records = [Record(f"/x/ISIC_{i}.jpg", 0) for i in range(3)]
    path = write_isic_csv(str(tmp_path / "gt.csv"), records, np.array([0, 2, 1]), ["mel", "nv"])
    df = pd.read_csv(path)
    assert list(df.columns) == ["image", "MEL", "NV", "UNK"]
    assert df[["MEL", "NV", "UNK"]].to_numpy().argmax(1).tolist() == [0, 2, 1]
    plain = pd.read_csv(
        write_isic_csv(str(tmp_path / "p.csv"), records, np.array([0, 1, 1]), ["a", "b"])
    )
    assert list(plain.columns) == ["image", "A", "B"]

"""``medcls-audit`` on the real EyePACS-AIROGS class folders (skipped when ../shared/data is
absent): 540 readable fundus photos, 270 per class, no exact duplicates or leaks."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from medcls.workflows.audit import run_audit

pytestmark = [pytest.mark.realdata]


def test_audit_of_the_glaucoma_folders(helpers, workdir: Path) -> None:
    glaucoma = helpers.shared_data("glaucoma_airogs", "RG")
    cfg = helpers.compose_cfg(["data=glaucoma", f"data.root={glaucoma}"], config_name="audit")
    result = run_audit(cfg)
    assert result.images == 540
    assert result.summary.set_index("issue")["images"].to_dict() == {
        "unreadable": 0,
        "duplicate": 0,
        "conflicting_labels": 0,
        "split_leak": 0,
    }
    assert result.clean and pd.read_csv(result.csv).empty
    counts = pd.read_csv(Path(result.csv).parent / "class_counts.csv", index_col="class")
    assert counts["total"].to_dict() == {"NRG": 270, "RG": 270}
    assert counts[["train", "val", "test"]].to_numpy().sum() == 540

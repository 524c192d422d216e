"""``medcls-audit`` on a class-folder dataset with planted problems: an unreadable file, an
exact duplicate (a lossless re-save under another name), a duplicate with another label and
an image both in the training folder and the official test folder. Its CSV, fed back as
``data.exclude``, leaves a clean dataset; exit codes 1 (findings), 0 (clean), 2 (bad input)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medcls.workflows.audit import run_audit


def write_png(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def planted(tmp_path: Path) -> dict[str, Path]:
    root, test_root = tmp_path / "skin" / "train", tmp_path / "skin" / "test"
    for k, cls in enumerate(("acne", "eczema")):
        for i in range(6):
            write_png(root / cls / f"{cls}_{i}.png", seed=100 * k + i)
        for i in range(2):
            write_png(test_root / cls / f"{cls}_t{i}.png", seed=1000 + 100 * k + i)
    bad = root / "acne" / "zz_broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    copy = root / "acne" / "acne_0_copy.bmp"  # other bytes, same pixels
    Image.open(root / "acne" / "acne_0.png").save(copy)
    conflict = root / "eczema" / "eczema_from_acne.png"
    shutil.copy(root / "acne" / "acne_1.png", conflict)
    leak = test_root / "eczema" / "eczema_again.png"
    shutil.copy(root / "eczema" / "eczema_2.png", leak)
    return {
        "root": root,
        "test_root": test_root,
        "bad": bad,
        "copy": copy,
        "conflict": conflict,
        "leak": leak,
    }


def audit_args(planted: dict[str, Path], *extra: str) -> list[str]:
    return [
        "data=imagefolder",
        f"data.root={planted['root']}",
        f"data.test_root={planted['test_root']}",
        *extra,
    ]


def test_audit_finds_the_planted_problems(planted, helpers, workdir) -> None:
    cfg = helpers.compose_cfg(audit_args(planted), config_name="audit")
    result = run_audit(cfg)
    assert not result.clean and result.images == 6 * 2 + 2 * 2 + 4
    df = pd.read_csv(result.csv, keep_default_na=False)
    assert Path(result.csv).parent == Path(cfg.paths.output_dir)

    def paths(issue: str, exclude: bool | None = None) -> set[str]:
        sel = df[df["issue"] == issue]
        if exclude is not None:
            sel = sel[sel["exclude"] == exclude]
        return set(sel["path"])

    root = planted["root"]
    assert paths("unreadable") == {str(planted["bad"])}
    train_copy = str(root / "eczema" / "eczema_2.png")  # the leaked one is a duplicate too
    assert paths("duplicate") == {
        str(root / "acne" / "acne_0.png"),
        str(planted["copy"]),
        train_copy,
        str(planted["leak"]),
    }
    # kept: "acne_0.png" (sorts first), the test copy (an official test set stays whole)
    assert paths("duplicate", exclude=True) == {str(planted["copy"]), train_copy}
    assert paths("conflicting_labels") == {
        str(root / "acne" / "acne_1.png"),
        str(planted["conflict"]),
    }
    assert paths("conflicting_labels", exclude=True) == paths("conflicting_labels")
    leak = df[df["issue"] == "split_leak"].set_index("path")
    assert set(leak.index) == {str(root / "eczema" / "eczema_2.png"), str(planted["leak"])}
    assert leak.loc[str(planted["leak"]), "partition"] == "test"
    assert leak["exclude"].to_dict() == {str(planted["leak"]): False, train_copy: True}
    assert leak.loc[train_copy, "detail"] == "same image in test and train"
    counts = pd.read_csv(Path(result.csv).parent / "class_counts.csv", index_col="class")
    assert counts["test"].tolist() == [2, 3] and counts["total"].sum() == 19  # readable only
    assert (Path(result.csv).parent / "class_counts.png").is_file()

    # fed back: the dataset is clean, and 5 images fewer (bad, copy, 2 conflicting, leak)
    cfg = helpers.compose_cfg(
        audit_args(planted, f"data.exclude={result.csv}", "output=again/audit.csv"),
        config_name="audit",
    )
    again = run_audit(cfg)
    assert again.clean and again.images == result.images - 5


def test_a_relative_root_gives_absolute_paths_that_work_elsewhere(
    planted, helpers, workdir, monkeypatch
) -> None:
    """Audited from the dataset's parent with a relative data.root; trained from another
    directory: the list still matches (it holds absolute paths)."""
    monkeypatch.chdir(planted["root"].parent)
    cfg = helpers.compose_cfg(
        ["data=imagefolder", "data.root=train", f"output={workdir / 'audit.csv'}"],
        config_name="audit",
    )
    result = run_audit(cfg)
    paths = pd.read_csv(result.csv, keep_default_na=False)["path"]
    assert str(planted["bad"]) in set(paths) and all(Path(p).is_absolute() for p in paths)
    monkeypatch.chdir(workdir)
    cfg = helpers.compose_cfg(
        audit_args(planted, f"data.exclude={result.csv}", "output=again/audit.csv"),
        config_name="audit",
    )
    marked = set(pd.read_csv(result.csv).query("exclude")["path"])
    assert len(marked) == 4  # unreadable, the pixel copy, both conflicting labels
    assert run_audit(cfg).images == 6 * 2 + 2 * 2 + 4 - len(marked)


def test_cli_exit_codes(planted, helpers, workdir) -> None:
    found = helpers.run_cli("medcls-audit", audit_args(planted, "output=a/audit.csv"), workdir)
    out = found.stdout + found.stderr
    assert found.returncode == 1, out
    assert "conflicting_labels" in out and "data.exclude=" in out
    csv = workdir / "a" / "audit.csv"
    clean = helpers.run_cli(
        "medcls-audit", audit_args(planted, f"data.exclude={csv}", "output=b/audit.csv"), workdir
    )
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "no issues found" in clean.stdout and "5 of 20 record(s) excluded" in clean.stdout
    bad = helpers.run_cli("medcls-audit", ["data=imagefolder", "data.root=/no/such"], workdir)
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert "/no/such" in bad.stdout and "Traceback" not in bad.stdout + bad.stderr

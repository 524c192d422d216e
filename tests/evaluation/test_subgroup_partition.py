"""eval.subgroups is checked on the partition that will be scored (issue 29, item 10): an
official test list whose images carry no metadata is refused before training, medcls-eval and
medcls-ensemble, instead of being scored as one subgroup "unknown" because the training images
carry the attribute. With data.test_metadata_csv the subgroups are those of that file."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from medcls.data.records import Record
from medcls.errors import DataError
from medcls.evaluation.subgroups import check_subgroup_attributes
from medcls.workflows.ensemble import run_ensemble
from medcls.workflows.evaluate import run_eval
from medcls.workflows.train import run_train

CLASSES = ["MEL", "NV", "BCC"]


def write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def ids_of(path: Path) -> list[str]:
    with open(path) as f:
        return [row["image"] for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def isic(tmp_path_factory, helpers) -> Path:
    """ISIC layout: a training list whose metadata gives every image a sex, an official test
    list, and the test images' own metadata (sex female for 2 of every 3)."""
    root = tmp_path_factory.mktemp("isic_subgroups")
    helpers.make_isic_csv(root, CLASSES, per_class=8, empty_classes=())
    helpers.make_isic_csv(root, CLASSES, 4, (), csv_name="Test.csv", images_dir="test", seed=1)
    train = ids_of(root / "GroundTruth.csv")
    write_csv(
        root / "Meta.csv",
        [{"image": i, "sex": "male", "lesion_id": f"L{k}"} for k, i in enumerate(train)],
    )
    test = ids_of(root / "Test.csv")
    rows = [{"image": i, "sex": "female" if k % 3 else "male"} for k, i in enumerate(test)]
    write_csv(root / "TestMeta.csv", rows)
    return root


def data(isic: Path, *extra: str) -> list[str]:
    return [
        "data=isic_csv",
        f"data.root={isic}",
        "data.csv=GroundTruth.csv",
        "data.images_dir=images",
        "data.metadata_csv=Meta.csv",
        "data.test_csv=Test.csv",
        "data.test_images_dir=test",
        *extra,
    ]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, helpers, isic) -> dict:
    """One epoch with data.test_metadata_csv and eval.subgroups=[sex]."""
    work = tmp_path_factory.mktemp("isic_subgroups_run")
    overrides = [*data(isic, "data.test_metadata_csv=TestMeta.csv"), "eval.subgroups=[sex]"]
    with helpers.chdir(work):
        cfg = helpers.compose_cfg(helpers.train_overrides(*overrides, "trainer.max_epochs=1"))
        run_train(cfg)
    out = Path(cfg.paths.output_dir)
    return {"work": work, "out": out, "ckpt": out / "checkpoints" / "best.ckpt"}


def test_training_refuses_subgroups_the_test_images_lack(helpers, isic, tmp_path) -> None:
    """The training images carry ``sex``, the test images (no test metadata) do not: refused
    before training, naming the attribute, the metadata file and the fix."""
    with helpers.chdir(tmp_path):
        cfg = helpers.compose_cfg(helpers.train_overrides(*data(isic), "eval.subgroups=[sex]"))
        with pytest.raises(DataError) as e:
            run_train(cfg)
    msg = str(e.value)
    assert "eval.subgroups names 'sex'" in msg and "test partition" in msg
    assert "data.metadata_csv=Meta.csv" in msg
    assert "data.test_csv=Test.csv" in msg and "set data.test_metadata_csv=" in msg
    assert not list(tmp_path.glob("**/*.ckpt"))


def test_subgroups_are_those_of_the_test_metadata(trained, isic) -> None:
    table = pd.read_csv(trained["out"] / "subgroups.csv", keep_default_na=False)
    sex = table[table["attribute"] == "sex"]
    with open(isic / "TestMeta.csv") as f:
        expected = Counter(row["sex"] for row in csv.DictReader(f))  # the file's values
    assert dict(zip(sex["subgroup"], sex["images"], strict=True)) == dict(expected)
    preds = pd.read_csv(trained["out"] / "test_predictions.csv")
    assert len(preds) == sum(expected.values())  # every test image, none "unknown"


def test_eval_and_ensemble_check_the_evaluated_split(helpers, trained, isic) -> None:
    """The same data without test metadata: medcls-eval and medcls-ensemble refuse split=test;
    split=train (images that carry ``sex``) passes the check."""
    common = ["logger=none", "eval.subgroups=[sex]", "eval.curves=false"]
    with helpers.chdir(trained["work"]):
        for name, models, run in (
            ("eval", [f"ckpt_path={trained['ckpt']}", "print_config=false"], run_eval),
            ("ensemble", [f"checkpoints=[{trained['ckpt']}]"], run_ensemble),
        ):
            cfg = helpers.compose_cfg([*models, *common, *data(isic)], config_name=name)
            with pytest.raises(DataError, match=r"'sex', which no image of the test partition"):
                run(cfg)
        cfg = helpers.compose_cfg(
            [
                f"ckpt_path={trained['ckpt']}",
                "print_config=false",
                *common,
                *data(isic),
                "split=train",
            ],
            "eval",
        )
        run_eval(cfg)
        table = pd.read_csv(Path(cfg.paths.output_dir) / "subgroups.csv", keep_default_na=False)
    assert set(table.loc[table["attribute"] == "sex", "subgroup"]) == {"male"}


def test_an_empty_partition_is_not_checked_and_the_message_names_a_source_key() -> None:
    check_subgroup_attributes([], ["sex"], {"test_partition": "test"})  # nothing is scored
    records = [Record("/x/a.png", 0, source="isic")]
    cfg = {"sources": {"isic": {"metadata_csv": "M.csv", "test_csv": "T.csv"}}}
    with pytest.raises(DataError) as e:
        check_subgroup_attributes(records, ["sex"], cfg)
    msg = str(e.value)
    assert "data.sources.isic.metadata_csv=M.csv" in msg
    assert "set data.sources.isic.test_metadata_csv=" in msg

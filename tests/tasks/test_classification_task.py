"""ClassificationTask: normalisation, two-stage fine-tuning, checkpoints that rebuild."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from medcls.errors import DataError
from medcls.models import create_model
from medcls.tasks import ClassificationTask
from medcls.tasks.checkpoint import load_task, read_checkpoint

CLASSES = ["a", "b", "c"]
MEAN, STD = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]


class RandomImages(Dataset):
    def __init__(self, n: int = 24, size: int = 32) -> None:
        g = torch.Generator().manual_seed(0)
        self.images = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
        self.labels = torch.arange(n) % len(CLASSES)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "label": self.labels[i], "index": torch.tensor(i)}


def make_task(freeze: int = 0, meta: dict | None = None) -> ClassificationTask:
    torch.manual_seed(0)
    model = create_model("test_efficientnet", num_classes=3, image_size=32)
    return ClassificationTask(
        model,
        CLASSES,
        MEAN,
        STD,
        loss=torch.nn.CrossEntropyLoss(),
        optimizer=functools.partial(torch.optim.SGD, lr=0.1),
        freeze_backbone_epochs=freeze,
        meta=meta,
    )


def trainer(tmp_path: Path, epochs: int, callbacks=()) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        max_epochs=epochs,
        limit_train_batches=2,
        limit_val_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
        callbacks=list(callbacks),
    )


def loaders() -> tuple[DataLoader, DataLoader]:
    ds = RandomImages()
    return DataLoader(ds, batch_size=8, shuffle=True), DataLoader(ds, batch_size=8)


def test_normalize_on_uint8_batches() -> None:
    task = make_task()
    images = torch.full((2, 3, 4, 4), 255, dtype=torch.uint8)
    x = task.normalize(images)
    expected = (1.0 - torch.tensor(MEAN)) / torch.tensor(STD)
    assert torch.allclose(x[0, :, 0, 0], expected)
    assert task(torch.zeros(2, 3, 32, 32, dtype=torch.uint8)).shape == (2, 3)


class Snapshots(pl.Callback):
    """Backbone and head weights (and a BatchNorm running mean) at the end of each epoch."""

    def __init__(self) -> None:
        self.backbone: list[torch.Tensor] = []
        self.bn: list[torch.Tensor] = []
        self.head: list[torch.Tensor] = []
        self.trainable: list[bool] = []

    def on_train_epoch_end(self, trainer, task) -> None:
        bb = task.model.backbone
        self.backbone.append(bb.conv_stem.weight.detach().clone())
        self.bn.append(bb.bn1.running_mean.detach().clone())
        self.head.append(task.model.head.layers[-1].weight.detach().clone())
        self.trainable.append(all(p.requires_grad for p in bb.parameters()))


def test_freeze_backbone_for_first_epochs(tmp_path: Path) -> None:
    task = make_task(freeze=1)
    before_bb = task.model.backbone.conv_stem.weight.detach().clone()
    before_bn = task.model.backbone.bn1.running_mean.detach().clone()
    before_head = task.model.head.layers[-1].weight.detach().clone()
    snaps = Snapshots()
    train, val = loaders()
    trainer(tmp_path, epochs=2, callbacks=[snaps]).fit(task, train, val)

    # epoch 0: only the head learns; the frozen backbone's BatchNorm statistics stay put
    assert snaps.trainable == [False, True]
    assert torch.equal(snaps.backbone[0], before_bb)
    assert torch.equal(snaps.bn[0], before_bn)
    assert not torch.equal(snaps.head[0], before_head)
    # epoch 1: everything learns
    assert not torch.equal(snaps.backbone[1], before_bb)
    assert not torch.equal(snaps.bn[1], before_bn)


def test_no_freeze_trains_backbone_from_the_start(tmp_path: Path) -> None:
    task = make_task(freeze=0)
    before = task.model.backbone.conv_stem.weight.detach().clone()
    snaps = Snapshots()
    train, val = loaders()
    trainer(tmp_path, epochs=1, callbacks=[snaps]).fit(task, train, val)
    assert not torch.equal(snaps.backbone[0], before)


def test_test_outputs_and_metrics(tmp_path: Path) -> None:
    task = make_task()
    _, val = loaders()
    trainer(tmp_path, epochs=1).test(task, val, verbose=False)
    out = task.test_outputs
    assert out["probs"].shape == (24, 3)
    assert sorted(out["index"].tolist()) == list(range(24))
    assert out["confusion"].sum() == 24
    # recomputed from the returned probabilities and the dataset's labels (index i: i % 3)
    truth = np.asarray(out["index"]) % len(CLASSES)
    pred = np.asarray(out["probs"]).argmax(axis=1)
    recall = [np.mean(pred[truth == k] == k) for k in range(len(CLASSES))]
    assert task.test_results["balanced_accuracy"] == pytest.approx(np.mean(recall), abs=1e-6)
    assert task.test_results["accuracy"] == pytest.approx(np.mean(pred == truth), abs=1e-6)


def test_checkpoint_is_weights_only_and_rebuilds(tmp_path: Path) -> None:
    meta = {
        "model": {"name": "test_efficientnet", "pool": "gap", "dropout": 0.0, "hidden": []},
        "class_names": CLASSES,
        "mean": MEAN,
        "std": STD,
        "preprocess": {"image_size": 32},
        "positive_class": 1,
    }
    task = make_task(meta=meta)
    train, val = loaders()
    tr = trainer(tmp_path, epochs=1)
    tr.fit(task, train, val)
    path = tmp_path / "x.ckpt"
    tr.save_checkpoint(path)

    raw = torch.load(path, map_location="cpu", weights_only=True)  # no pickled objects
    assert raw["medcls"]["class_names"] == CLASSES
    assert read_checkpoint(str(path))["medcls"] == raw["medcls"]
    rebuilt, got_meta = load_task(str(path))
    assert got_meta["class_names"] == CLASSES
    assert not rebuilt.training
    images = RandomImages().images[:4]
    task.eval()
    with torch.no_grad():
        assert torch.allclose(rebuilt(images), task(images), atol=1e-6)


class _NotPlainData:  # an object torch's safe loader refuses to build
    pass


def _bad_checkpoints(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """File → the part of the one-line message that says what it is."""
    import zipfile

    files = {
        "text": (b"these are not weights\n", "not a checkpoint that can be read safely"),
        "empty": (b"", "not a checkpoint that can be read safely"),
    }
    out = {}
    for name, (data, msg) in files.items():
        (tmp_path / f"{name}.ckpt").write_bytes(data)
        out[name] = (tmp_path / f"{name}.ckpt", msg)
    with zipfile.ZipFile(tmp_path / "zip.ckpt", "w") as z:
        z.writestr("readme.txt", "a zip, not a PyTorch file")
    out["zip"] = (tmp_path / "zip.ckpt", "not a checkpoint that can be read safely")
    saved = {
        "object": (_NotPlainData(), "not a checkpoint that can be read safely"),
        "tensor": (torch.zeros(3), "a PyTorch file holding a Tensor without medcls's metadata"),
        "lightning": ({"state_dict": {}}, "a Lightning checkpoint without medcls's metadata"),
        "incomplete": (
            {"state_dict": {}, "medcls": {"class_names": ["a"]}},
            "damaged or incomplete medcls checkpoint (missing ['preprocess', 'model', 'mean'",
        ),
    }
    for name, (obj, msg) in saved.items():
        torch.save(obj, tmp_path / f"{name}.ckpt")
        out[name] = (tmp_path / f"{name}.ckpt", msg)
    return out


def test_load_task_rejects_bad_files(tmp_path: Path) -> None:
    """Each says what the file is, names it, and never advises weights_only=False (which would
    run the code a file holds)."""
    with pytest.raises(DataError, match="checkpoint not found"):
        load_task(str(tmp_path / "missing.ckpt"))
    for path, msg in _bad_checkpoints(tmp_path).values():
        with pytest.raises(DataError) as e:
            load_task(str(path))
        assert msg in str(e.value) and str(path) in str(e.value)
        assert "weights_only" not in str(e.value) and e.value.__cause__ is None


def test_a_file_that_is_not_a_checkpoint_is_one_line_and_exit_2(tmp_path, helpers) -> None:
    path, msg = _bad_checkpoints(tmp_path)["object"]
    image = tmp_path / "x.jpg"
    helpers.write_image(image, np.random.default_rng(0), 0)
    proc = helpers.run_cli("medcls-predict", [f"ckpt_path={path}", f"input={image}"], cwd=tmp_path)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2, text
    assert msg in text and str(path) in text
    assert "Traceback" not in text and "weights_only" not in text

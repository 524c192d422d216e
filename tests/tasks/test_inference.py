"""predict_probs (mean softmax over models × TTA views) and the TTA views themselves."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from medcls.tasks.inference import predict_probs
from medcls.tasks.tta import VIEWS, tta_views

K = 3


class Images(Dataset):
    """uint8 ``(3, H, W)`` images with labels and record positions, like the datamodule's."""

    def __init__(self, n: int = 10, h: int = 8, w: int = 8, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.images = torch.randint(0, 256, (n, 3, h, w), generator=g, dtype=torch.uint8)
        self.labels = torch.arange(n) % K

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "label": self.labels[i], "index": torch.tensor(i)}


class PooledModel(nn.Module):
    """1x1 convolution + global average pooling: blind to flips and rotations."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, 8, 1)
        self.head = nn.Linear(8, K)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv(x.float() / 255.0))
        return self.head(x.mean(dim=(-2, -1))) * 5


class FlatModel(nn.Module):
    """A linear layer on the flattened pixels: every flip changes its output."""

    def __init__(self, size: int = 8, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.fc = nn.Linear(3 * size * size, K)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.float().flatten(1) / 255.0) * 5


def loader(ds: Dataset | None = None, batch_size: int = 4) -> DataLoader:
    return DataLoader(Images() if ds is None else ds, batch_size=batch_size)


def softmax(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return F.softmax(model(x), dim=1).numpy()


def test_probs_labels_and_index() -> None:
    ds = Images(n=10)
    out = predict_probs([FlatModel()], loader(ds))
    assert out["probs"].shape == (10, K)
    np.testing.assert_allclose(out["probs"].sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(out["labels"], ds.labels.numpy())
    np.testing.assert_array_equal(out["index"], np.arange(10))
    np.testing.assert_allclose(out["probs"], softmax(FlatModel(), ds.images), atol=1e-6)


@pytest.mark.parametrize("tta", [["hflip"], ["hflip", "vflip", "rot90", "rot180", "rot270"]])
def test_tta_on_a_flip_invariant_model_changes_nothing(tta: list[str]) -> None:
    model = PooledModel()
    plain = predict_probs([model], loader())
    augmented = predict_probs([model], loader(), tta=tta)
    np.testing.assert_allclose(augmented["probs"], plain["probs"], atol=1e-6)
    np.testing.assert_allclose(augmented["probs"].sum(axis=1), 1.0, atol=1e-6)
    # and the model really says something (not a uniform output that hides everything)
    assert np.ptp(plain["probs"], axis=0).max() > 1e-3


def test_tta_averages_the_softmax_of_the_views() -> None:
    ds, model = Images(), FlatModel()
    out = predict_probs([model], loader(ds), tta=["hflip"])
    expected = (softmax(model, ds.images) + softmax(model, ds.images.flip(-1))) / 2
    np.testing.assert_allclose(out["probs"], expected, atol=1e-6)
    plain = predict_probs([model], loader(ds))["probs"]
    assert np.abs(out["probs"] - plain).max() > 1e-3  # hflip did change this model's view
    np.testing.assert_allclose(out["probs"].sum(axis=1), 1.0, atol=1e-6)


def test_several_models_are_averaged() -> None:
    ds = Images()
    models = [FlatModel(seed=0), FlatModel(seed=1), PooledModel(seed=2)]
    out = predict_probs(models, loader(ds), tta=["vflip"])
    singles = [predict_probs([m], loader(ds), tta=["vflip"])["probs"] for m in models]
    np.testing.assert_allclose(out["probs"], np.mean(singles, axis=0), atol=1e-6)
    np.testing.assert_allclose(out["probs"].sum(axis=1), 1.0, atol=1e-6)


def test_rot90_of_non_square_images() -> None:
    ds = Images(n=6, h=6, w=10)
    model = PooledModel()
    plain = predict_probs([model], loader(ds))
    out = predict_probs([model], loader(ds), tta=["rot90", "rot270"])
    np.testing.assert_allclose(out["probs"], plain["probs"], atol=1e-6)


def test_models_are_evaluated_in_eval_mode_and_restored() -> None:
    class Dropper(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = FlatModel()
            self.drop = nn.Dropout(0.9)

        def forward(self, x):
            return self.drop(self.inner(x))

    ds, model = Images(), Dropper()
    model.train()
    out = predict_probs([model], loader(ds))
    assert model.training and model.drop.training  # restored
    np.testing.assert_allclose(out["probs"], softmax(FlatModel(), ds.images), atol=1e-6)
    other = FlatModel().eval()
    predict_probs([other], loader(ds))
    assert not other.training


def test_empty_loader() -> None:
    out = predict_probs([FlatModel()], loader(Images(n=0)))
    assert out["probs"].shape[0] == 0
    assert out["labels"].shape == (0,) and out["index"].shape == (0,)


def test_unknown_view_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown view.*'flipflop'"):
        tta_views(["hflip", "flipflop"])
    with pytest.raises(ValueError, match="flipflop"):
        predict_probs([FlatModel()], loader(), tta=["flipflop"])


# ---------------------------------------------------------------------------------- views
def test_views_start_with_the_original_and_skip_repeated_identity() -> None:
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.uint8).reshape(2, 3, 4, 6)
    assert len(tta_views([])) == 1
    assert torch.equal(tta_views([])[0](x), x)
    views = tta_views(["identity", "hflip"])
    assert len(views) == 2


def test_view_shapes_and_pixels() -> None:
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.uint8).reshape(2, 3, 4, 6)  # non-square
    assert VIEWS["hflip"](x).shape == (2, 3, 4, 6)
    assert VIEWS["vflip"](x).shape == (2, 3, 4, 6)
    assert VIEWS["rot180"](x).shape == (2, 3, 4, 6)
    assert VIEWS["rot90"](x).shape == (2, 3, 6, 4)
    assert VIEWS["rot270"](x).shape == (2, 3, 6, 4)
    assert torch.equal(VIEWS["hflip"](x)[..., 0], x[..., -1])  # columns mirrored
    assert torch.equal(VIEWS["vflip"](x)[..., 0, :], x[..., -1, :])  # rows mirrored
    assert torch.equal(VIEWS["rot180"](x), x.flip(-1).flip(-2))
    assert torch.equal(VIEWS["rot90"](VIEWS["rot270"](x)), x)
    assert torch.equal(VIEWS["rot90"](VIEWS["rot90"](x)), VIEWS["rot180"](x))
    # counter-clockwise: the top-right pixel goes to the top-left
    assert torch.equal(VIEWS["rot90"](x)[..., 0, 0], x[..., 0, -1])
    for name, view in VIEWS.items():
        assert view(x).dtype == torch.uint8, name

"""One definition of the model's probability: views, logit bias, temperature on the logits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from scipy.special import softmax
from torch import nn

from medcls.evaluation.calibration import Calibration, apply_temperature, choose_threshold
from medcls.evaluation.posthoc import fit_posthoc
from medcls.evaluation.predictions import Predictions
from medcls.evaluation.probability import view_probs
from medcls.evaluation.report import group_level
from medcls.evaluation.settings import EvalSettings
from medcls.tasks.classification import ClassificationTask
from medcls.tasks.inference import predict_probs

K = 3


class Confident(nn.Module):
    """A linear layer on the pixels with huge weights: logit gaps of hundreds, so the smaller
    probabilities lie far below float32's range (and below 1e-12)."""

    def __init__(self, size: int = 4) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(3 * size * size, K)
        with torch.no_grad():
            self.fc.weight.mul_(60.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def confident_task(tta=()) -> ClassificationTask:
    return ClassificationTask(Confident(), ["a", "b", "c"], [0.5] * 3, [0.25] * 3, tta=tta).eval()


def images(n: int = 12) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 4, 4), generator=torch.Generator().manual_seed(1)).to(
        torch.uint8
    )


def loader(x: torch.Tensor) -> list[dict]:
    return [
        {"image": x, "label": torch.zeros(len(x), dtype=torch.long), "index": torch.arange(len(x))}
    ]


def test_a_temperature_divides_the_logits_of_a_confident_model() -> None:
    task, x, t = confident_task(), images(), 60.0
    with torch.no_grad():
        logits = task(x).double().numpy()
    gaps = logits.max(1) - logits.min(1)
    assert gaps.max() > 60 and gaps.max() < 700  # p_min below 1e-26 (float64 holds them)
    want = softmax(logits / t, axis=1)
    got = apply_temperature(predict_probs([task], loader(x))["probs"], t)
    np.testing.assert_allclose(got, want, atol=1e-6)
    # negative control: the old path (float32 softmax, log of p clipped at 1e-12) is far off
    old_p = np.clip(F.softmax(torch.as_tensor(logits, dtype=torch.float32), 1).numpy(), 1e-12, None)
    old = softmax(np.log(old_p.astype(np.float64)) / t, axis=1)
    assert np.abs(old - want).max() > 1e-2


def test_export_and_predictor_agree_on_a_confident_model_with_views() -> None:
    from medcls.deploy.export import ExportedClassifier, reference_runner

    task, x = confident_task(tta=("hflip", "rot90")), images()
    meta = {"preprocess": {"image_size": 4}, "class_names": ["a", "b", "c"],
            "calibration": {"temperature": 25.0}, "tta": ["hflip", "rot90"]}  # fmt: skip
    with torch.no_grad():
        exported = ExportedClassifier(task, 25.0)(x).double().numpy()
    np.testing.assert_allclose(exported, reference_runner(task, meta)(x.numpy()), atol=1e-5)
    # and the formula: softmax(log mean_v softmax(z_v) / T)
    with torch.no_grad():
        z = np.stack(
            [task(v).double().numpy() for v in (x, x.flip(-1), torch.rot90(x, 1, (-2, -1)))], 1
        )
    np.testing.assert_allclose(exported, apply_temperature(view_probs(z), 25.0), atol=1e-5)


def test_view_probs_is_the_mean_softmax_of_the_biased_views() -> None:
    rng = np.random.default_rng(0)
    z, b = rng.normal(0, 3, (7, 4, K)), rng.normal(0, 1, K)
    want = softmax(z + b, axis=2).mean(1)
    np.testing.assert_allclose(view_probs(z, b), want, atol=1e-12)
    per_row = np.tile(b, (7, 1))  # a bias per image (pooled folds) is the same here
    np.testing.assert_allclose(view_probs(z, per_row), want, atol=1e-12)


# -- patients: one aggregation order in the report and in medcls-predict ---------------------
def grouped_predictions(seed: int = 0) -> Predictions:
    from medcls.data.records import Record

    rng = np.random.default_rng(seed)
    n_groups, per = 40, 3
    labels = np.repeat(rng.integers(0, 2, n_groups), per)
    score = np.clip(0.25 + 0.35 * labels + rng.normal(0, 0.25, len(labels)), 0.01, 0.99)
    probs = np.stack([1 - score, score], 1)
    records = [Record(f"{i}.png", int(y), f"p{i // per}") for i, y in enumerate(labels)]
    return Predictions(probs, labels, records, ["neg", "pos"], 1)


def test_group_decisions_are_the_argmax_of_mean_tempered_probabilities() -> None:
    pred = grouped_predictions()
    cal = Calibration(temperature=2.5, threshold=0.2, rule="0.2")
    settings = EvalSettings(n_boot=0, curves=False)
    got = group_level(pred, settings, cal)["group/balanced_accuracy"]
    df = pd.DataFrame(apply_temperature(pred.probs, 2.5), columns=["n", "p"])
    df["g"], df["y"] = pred.groups, pred.labels
    means = df.groupby("g").mean()
    decided = means[["n", "p"]].to_numpy().argmax(1)
    truth = means["y"].round().astype(int).to_numpy()
    recall = [np.mean(decided[truth == c] == c) for c in (0, 1)]
    assert got == np.mean(recall)
    # what medcls-predict decides for the same patients: the same classes
    np.testing.assert_array_equal(cal.predict_groups(means[["n", "p"]].to_numpy(), 1), decided)
    # negative control: the image threshold carried over to patients decides otherwise
    assert (cal.predict(means[["n", "p"]].to_numpy(), 1) != decided).any()


def test_a_group_threshold_is_chosen_on_validation_group_means() -> None:
    pred = grouped_predictions(seed=1)
    logits = np.log(pred.probs)  # one view's logits (less a constant)
    settings = EvalSettings(calibrate="temperature", group_threshold="youden")
    fit = fit_posthoc(logits, pred.labels, pred.groups, np.zeros(2), 1, settings)
    df = pd.DataFrame({"p": fit.probs[:, 1], "g": pred.groups, "y": pred.labels})
    means = df.groupby("g").mean()
    want = choose_threshold(means["p"].to_numpy(), means["y"].to_numpy() == 1, "youden")
    assert fit.calibration.group_threshold == pytest.approx(want, abs=1e-12)
    assert fit.calibration.group_rule == "youden" and fit.calibration.threshold is None

"""The training recipe's pieces, each checked against what it must change (and a control
where it is off): sampler, logit adjustment, mixup/cutmix, progressive resizing, test-time
views, policy augmentations, OneCycle and its re-planning, the time budget's plan."""

from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from medcls.callbacks.time_budget import TimeBudget, parse_duration
from medcls.data.transforms import create_transform
from medcls.errors import DataError
from medcls.evaluation.logit_adjustment import (
    adjust,
    choose_tau,
    fit_logit_adjustment,
    log_prior,
    parse_logit_adjustment,
)
from medcls.tasks.classification import ClassificationTask
from medcls.tasks.schedules import PlannedOneCycleLR
from medcls.workflows.recipe import build_mixup

K = 3


class _Linear(torch.nn.Module):
    def __init__(self, size: int = 8) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(3 * size * size, K)
        self.seen: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(tuple(x.shape))
        x = torch.nn.functional.adaptive_avg_pool2d(x, 8)
        return self.fc(x.flatten(1))


def _task(**kw) -> ClassificationTask:
    torch.manual_seed(0)
    return ClassificationTask(_Linear(), ["a", "b", "c"], [0.5] * 3, [0.25] * 3, **kw)


# -- data.sampler ---------------------------------------------------------------------------
def _sampler_dm(mode: str, counts=(300, 60, 15)):
    from medcls.data.datamodule import ClassificationDataModule

    dm = ClassificationDataModule.__new__(ClassificationDataModule)
    labels = np.repeat(np.arange(K), counts)
    dm.cfg = OmegaConf.create({"sampler": mode, "split_seed": 0})
    dm.labels, dm.class_names = labels, ["a", "b", "c"]
    dm.partitions = {"train": np.arange(len(labels))}
    return dm, labels


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("balanced", [1 / 3] * 3), ("sqrt", np.sqrt([300, 60, 15]) / np.sqrt([300, 60, 15]).sum())],
)
def test_sampler_draws_classes_at_the_stated_rates(mode, expected) -> None:
    dm, labels = _sampler_dm(mode)
    sampler = dm.train_sampler()
    draws = np.concatenate([labels[list(sampler)] for _ in range(20)])  # 20 epochs
    assert len(list(sampler)) == len(labels)  # one epoch: as many draws as images
    freq = np.bincount(draws, minlength=K) / len(draws)
    np.testing.assert_allclose(freq, expected, atol=0.02)
    natural = np.array([300, 60, 15]) / 375
    assert np.abs(freq - natural).max() > 0.2  # the control: shuffling keeps these


def test_no_sampler_and_a_misspelt_one() -> None:
    assert _sampler_dm("none")[0].train_sampler() is None
    with pytest.raises(DataError, match="data.sampler='balance'.*none, balanced or sqrt"):
        _sampler_dm("balance")[0].train_sampler()


# -- logit adjustment -----------------------------------------------------------------------
def test_adjustment_moves_predictions_toward_rare_classes() -> None:
    counts = [900, 90, 10]
    rng = np.random.default_rng(0)
    probs = rng.dirichlet([8, 2, 1], size=500)  # a classifier that favours the frequent class
    before = np.bincount(probs.argmax(1), minlength=K)
    after = np.bincount(adjust(probs, log_prior(counts), 1.0).argmax(1), minlength=K)
    assert after[0] < before[0] and after[2] > before[2]
    np.testing.assert_allclose(adjust(probs, log_prior(counts), 0.0), probs, atol=1e-9)
    # τ·log π subtracted from log p: the log-ratio of two classes moves by τ·log(π_0/π_2)
    z = np.log(adjust(probs, log_prior(counts), 0.5))
    shift = (z[:, 0] - z[:, 2]) - (np.log(probs[:, 0]) - np.log(probs[:, 2]))
    np.testing.assert_allclose(shift, -0.5 * np.log(900 / 10), atol=1e-9)


def test_tau_is_tuned_for_balanced_accuracy_on_validation() -> None:
    rng = np.random.default_rng(1)
    counts = np.array([800, 150, 50])
    labels = np.repeat(np.arange(K), [200, 200, 200])  # validation: every class
    # logits = evidence for the true class + the training prior's pull (a biased classifier)
    logits = rng.normal(0, 1.0, (600, K)) + 1.5 * np.eye(K)[labels] + np.log(counts / counts.sum())
    tau = choose_tau(logits, labels, log_prior(counts))  # (N, K): one view's logits
    assert 0.5 <= tau <= 1.5  # the pull it must undo is exactly 1 · log π
    unbiased = logits - np.log(counts / counts.sum())
    assert choose_tau(unbiased[:, None, :], labels, log_prior(counts)) < 0.5  # (N, V=1, K)
    assert fit_logit_adjustment("tuned", counts, None, None) == (1.0, "no validation images: τ = 1")
    assert fit_logit_adjustment("0.7", counts, logits, labels) == (0.7, "set")
    assert parse_logit_adjustment("none") == ("fixed", 0.0)
    with pytest.raises(DataError, match="eval.logit_adjustment='tunned'"):
        parse_logit_adjustment("tunned")


def test_the_task_adds_its_logit_bias_to_every_prediction() -> None:
    task = _task().eval()
    x = torch.randint(0, 255, (4, 3, 8, 8), dtype=torch.uint8)
    raw = task(x)
    task.logit_bias.copy_(torch.tensor([-1.0, 0.0, 2.0]))
    np.testing.assert_allclose((task(x) - raw).detach(), [[-1.0, 0.0, 2.0]] * 4, atol=1e-6)
    assert "logit_bias" in task.state_dict()  # checkpoints carry it


# -- mixup / cutmix, progressive resizing ------------------------------------------------------
def test_mixup_mixes_images_and_labels() -> None:
    ce = OmegaConf.create({"name": "ce"})
    assert build_mixup({"mixup_alpha": 0.0, "cutmix_alpha": 0.0}, K, ce) is None
    torch.manual_seed(0)
    task = _task(mixup=build_mixup({"mixup_alpha": 0.4}, K, ce))
    batch = {"image": torch.randint(0, 255, (8, 3, 8, 8), dtype=torch.uint8),
             "label": torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])}  # fmt: skip
    x, y = task.training_inputs(batch)
    plain = task.normalize(batch["image"])
    lam = y[0, 0].item()  # image 0 (class 0) is mixed with image 7 (class 1)
    assert y.shape == (8, K) and 0 < lam < 1
    torch.testing.assert_close(x[0], lam * plain[0] + (1 - lam) * plain[7], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(y.sum(1), torch.ones(8))
    off_x, off_y = _task().training_inputs(batch)  # the control: no mixup
    torch.testing.assert_close(off_x, plain)
    assert torch.equal(off_y, batch["label"])
    with pytest.raises(DataError, match="loss=focal does not take"):
        build_mixup({"cutmix_alpha": 1.0}, K, OmegaConf.create({"name": "focal"}))


def test_progressive_resize_follows_the_schedule() -> None:
    task = _task(resize_schedule={0: 4, 2: 6, 3: 8})
    batch = {"image": torch.zeros(2, 3, 8, 8, dtype=torch.uint8), "label": torch.tensor([0, 1])}
    sizes = []
    for epoch in range(5):
        task.current_epoch_override = epoch
        type(task).current_epoch = property(lambda self: self.current_epoch_override)
        sizes.append(task.training_inputs(batch)[0].shape[-1])
    del type(task).current_epoch
    assert sizes == [4, 4, 6, 8, 8]
    assert _task().train_size(3) is None


# -- test-time views ------------------------------------------------------------------------
def test_tta_averages_the_views() -> None:
    x = torch.randint(0, 255, (3, 3, 8, 8), dtype=torch.uint8)
    task = _task(tta=["hflip", "vflip"]).eval()
    sm = functools.partial(torch.softmax, dim=1)
    expected = (sm(task(x)) + sm(task(x.flip(-1))) + sm(task(x.flip(-2)))) / 3
    torch.testing.assert_close(task.predict_proba(x), expected)
    assert not torch.allclose(_task().eval().predict_proba(x), expected)  # views change it


# -- policy augmentations --------------------------------------------------------------------
@pytest.mark.parametrize("op", ["RandAugment", "TrivialAugment"])
def test_policy_augmentations_change_images_reproducibly(op) -> None:
    img = np.random.default_rng(0).integers(0, 255, (24, 24, 3), dtype=np.uint8)
    a, b = create_transform([{op: {}}], seed=3), create_transform([{op: {}}], seed=3)
    outs = [a(image=img)["image"] for _ in range(30)]
    assert all(np.array_equal(o, b(image=img)["image"]) for o in outs)  # seeded: repeats
    changed = np.mean([not np.array_equal(o, img) for o in outs])
    assert changed > (0.9 if op == "TrivialAugment" else 0.5)
    assert len({o.tobytes() for o in outs}) > 10  # different ops per draw


# -- OneCycle and the time budget -------------------------------------------------------------
def _one_cycle(total: int) -> PlannedOneCycleLR:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    return PlannedOneCycleLR(opt, total_steps=total, max_lr=0.1, pct_start=0.25)


def _lrs(sched: PlannedOneCycleLR, steps: int) -> list[float]:
    out = []
    for _ in range(steps):
        out.append(sched.optimizer.param_groups[0]["lr"])
        sched.optimizer.step()
        sched.step()
    return out


def test_one_cycle_warms_up_then_anneals_and_replans() -> None:
    lrs = _lrs(_one_cycle(100), 100)
    assert np.argmax(lrs) == 24 and max(lrs) == pytest.approx(0.1)
    assert lrs[0] == pytest.approx(0.1 / 25) and lrs[-1] < 1e-4
    sched = _one_cycle(1000)  # planned for 1000 steps, re-planned to 100 after 10
    first = _lrs(sched, 10)
    sched.replan(100)
    rest = _lrs(sched, 95)
    assert np.argmax(first + rest) == 24 and rest[-1] < 1e-4  # it ends with the new plan
    assert _lrs(sched, 10)[-1] == pytest.approx(0.1 / 25 / 1e4)  # past the plan: the floor


def test_time_budget_plans_epochs_that_fit(caplog) -> None:
    sched = _one_cycle(10_000)
    trainer = SimpleNamespace(
        fit_loop=SimpleNamespace(max_epochs=100), should_stop=False, num_training_batches=50,
        lr_scheduler_configs=[SimpleNamespace(scheduler=sched)],
    )  # fmt: skip
    import time

    budget = TimeBudget(budget_s=400, started=time.time() - 95, test_images=1000, report_s=20)
    budget.cap = 100
    # 305 s left − 20 s report − 1000 test images × 0.01 s = 275 s: 27 epochs of 10 s after 3,
    # then 5 s: 24-25 steps of 0.2 s in a last, partial epoch (the clock moved a little)
    budget._plan(trainer, epoch_s=10.0, progress=3.0, per_image_eval=0.01)
    assert trainer.fit_loop.max_epochs == 3 + 27 + 1 and not trainer.should_stop
    assert 30 * 50 + 23 <= sched.total_steps <= 30 * 50 + 25
    assert budget.planned_steps == sched.total_steps
    # with validation (200 images × 0.01 s = 2 s of each 10-s epoch), the partial epoch keeps
    # time for its own: (5 − 2) s / (8 s / 50 steps) = 18 steps
    trainer.val_dataloaders = SimpleNamespace(dataset=range(200))
    budget._plan(trainer, epoch_s=10.0, progress=3.0, per_image_eval=0.01)
    assert 30 * 50 + 16 <= sched.total_steps <= 30 * 50 + 18
    trainer.val_dataloaders = None
    budget.started -= 1000  # over budget: stop after the epoch that just ended
    with caplog.at_level("WARNING", logger="medcls.callbacks.time_budget"):
        budget._plan(trainer, epoch_s=10.0, progress=4.0, per_image_eval=0.01)
    assert trainer.fit_loop.max_epochs == 4 and trainer.should_stop
    assert sched.total_steps == 4 * 50
    assert "training ends after epoch 4 of the 31 planned" in caplog.text  # the cut is said
    assert parse_duration("00:00:06:30") == 390 and parse_duration(None) is None
    with pytest.raises(ValueError, match="DD:HH:MM:SS"):
        parse_duration("6:30")


@pytest.mark.parametrize(
    ("overrides", "scheduler", "lr", "adjustment"),
    [
        ([], "PlannedOneCycleLR", 1e-3, "tuned"),  # the shipped default
        (["recipe=classic"], "CosineAnnealingLR", 1e-3, "none"),
        (["recipe=classic", "optimizer=sgd"], "CosineAnnealingLR", 0.01, "none"),  # its own LR
        (["experiment=glaucoma_cv"], "CosineAnnealingLR", 1e-3, "none"),  # a study keeps its own
        (["experiment=glaucoma_cv", "recipe=default"], "PlannedOneCycleLR", 1e-3, "tuned"),
        (["experiment=ham10000_fast"], "PlannedOneCycleLR", 2e-3, 1.5),
        (["experiment=glaucoma_fast"], "PlannedOneCycleLR", 2e-3, "none"),
        (["scheduler=cosine"], "CosineAnnealingLR", 1e-3, "tuned"),  # a group override wins
    ],
)
def test_recipe_group_sets_scheduler_lr_and_adjustment(
    helpers, overrides, scheduler, lr, adjustment
) -> None:
    cfg = helpers.compose_cfg(overrides)
    assert cfg.scheduler._target_.endswith(scheduler)
    assert cfg.optimizer.lr == pytest.approx(lr)
    assert cfg.eval.logit_adjustment == adjustment


@pytest.mark.parametrize("total", [1, 2, 3, 4])
def test_onecycle_plans_a_run_of_a_few_steps(total: int) -> None:
    """torch's OneCycleLR divides by zero when a phase is empty (4 steps × pct_start 0.25);
    fast_dev_run and limit_train_batches runs take that many."""
    opt = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=1.0)
    sched = PlannedOneCycleLR(opt, total_steps=total, pct_start=0.25, max_lr=1.0)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(total + 1):  # one past the plan holds the floor
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[0] == pytest.approx(1.0 / 25)  # starts at max_lr / div_factor
    assert lrs[-1] == lrs[-2] == pytest.approx(1.0 / 25 / 1e4)  # ends at the floor
    assert max(lrs) <= 1.0

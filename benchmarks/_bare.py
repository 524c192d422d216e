"""The bare PyTorch loops medcls is compared against, on arrays already in memory.

``strong``: what a competent 60-line loop does — timm resnet18 (pretrained=False), cross-entropy
with square-root inverse-frequency class weights, AdamW with OneCycle (max LR 2e-3), random
horizontal + vertical flips, batch 64, fp32, the final epoch's weights, argmax.
``weak``: the earlier reference — plain CE, Adam(lr 1e-3), no augmentation, otherwise the same.

Either runs for a number of epochs, or for a wall-clock budget: then a throw-away copy times
20 steps (after 3 warm-up ones) first, the epochs that fit (test inference kept in reserve) are
planned from that, and OneCycle is planned for exactly those steps, so its LR anneals by the end of the budget.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass

import numpy as np
import timm
import torch
import torch.nn.functional as F


@dataclass
class BareResult:
    probs: np.ndarray  # (N_test, K) softmax probabilities
    pred: np.ndarray  # (N_test,) argmax
    epochs: int
    fit_seconds: float
    images_per_s: float  # training images per fit second
    seconds: float  # fit + test


def _normalise(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(timm.data.IMAGENET_DEFAULT_MEAN).view(1, 3, 1, 1) * 255
    std = torch.tensor(timm.data.IMAGENET_DEFAULT_STD).view(1, 3, 1, 1) * 255
    return (x.float() - mean) / std


def _flips(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    h = torch.rand(len(x), generator=gen) < 0.5
    v = torch.rand(len(x), generator=gen) < 0.5
    x = torch.where(h.view(-1, 1, 1, 1), x.flip(3), x)
    return torch.where(v.view(-1, 1, 1, 1), x.flip(2), x)


def train_bare(
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor,
    num_classes: int,
    recipe: str = "strong",
    epochs: int | None = 8,
    budget_s: float | None = None,
    batch: int = 64,
    seed: int = 42,
    log=print,
) -> BareResult:
    """Train on ``x_train`` ``(N, 3, S, S)`` uint8 / ``y_train`` ``(N,)`` int64 and predict
    ``x_test``; ``budget_s`` (from this call) instead of ``epochs`` plans the epochs."""
    if recipe not in ("strong", "weak"):
        raise ValueError(f"recipe={recipe!r}: strong or weak")
    start = time.perf_counter()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = timm.create_model("resnet18", pretrained=False, num_classes=num_classes)
    strong = recipe == "strong"
    weight = None
    if strong:  # √ inverse frequency, mean 1 over the images
        counts = torch.bincount(y_train, minlength=num_classes).clamp(min=1).double()
        w = counts.rsqrt()
        weight = (w / (w[y_train].mean())).float()
    steps_per_epoch = math.ceil(len(y_train) / batch)

    def make(total_steps: int):
        m = copy.deepcopy(model)
        if strong:
            opt = torch.optim.AdamW(m.parameters(), lr=2e-3)
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=total_steps)
        else:
            opt, sched = torch.optim.Adam(m.parameters(), lr=1e-3), None
        return m, opt, sched

    def step(m, opt, sched, j) -> float:
        x = x_train[j]
        x = _normalise(_flips(x, gen) if strong else x)
        loss = F.cross_entropy(m(x), y_train[j], weight=weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        return float(loss)

    if budget_s is not None:  # time 3 warm-up + 20 steps on a copy, then plan
        # (after a single warm-up step the next ten still ran ~15% slow: 5 epochs planned
        # where 6 fit, a budget the bare loop left unused)
        m, opt, sched = make(1000)
        # cycled: a small set (360 fundus photos: 6 batches) must not time empty batches
        order = torch.randperm(len(y_train), generator=gen).repeat(23 * batch // len(y_train) + 1)
        for i in range(3):
            step(m, opt, sched, order[i * batch : (i + 1) * batch])
        t = time.perf_counter()
        for i in range(3, 23):
            step(m, opt, sched, order[i * batch : (i + 1) * batch])
        per_step = (time.perf_counter() - t) / 20
        test_s = per_step / 3 * len(x_test) / batch  # forward only
        left = budget_s - (time.perf_counter() - start) - test_s
        epochs = max(1, int(left // (per_step * steps_per_epoch)))
        log(f"    bare ({recipe}): {per_step:.3f} s/step, {epochs} epoch(s) planned")
        del m, opt, sched
    model, opt, sched = make(epochs * steps_per_epoch)
    fit_start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(y_train), generator=gen)
        total = 0.0
        for i in range(0, len(order), batch):
            j = order[i : i + batch]
            total += step(model, opt, sched, j) * len(j)
        log(
            f"    bare ({recipe}) epoch {epoch + 1}/{epochs}: train loss "
            f"{total / len(order):.4f} ({time.strftime('%H:%M:%S')})"
        )
    fit_s = time.perf_counter() - fit_start
    model.eval()
    with torch.no_grad():
        logits = torch.cat(
            [model(_normalise(x_test[i : i + 256])) for i in range(0, len(x_test), 256)]
        )
    probs = logits.softmax(1).numpy()
    return BareResult(
        probs=probs,
        pred=probs.argmax(1),
        epochs=epochs,
        fit_seconds=fit_s,
        images_per_s=epochs * len(y_train) / fit_s,
        seconds=time.perf_counter() - start,
    )


def partition_tensors(dm, parts: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, 3, S, S)`` uint8 images and ``(N,)`` labels of medcls's datamodule partitions
    (its decoded cache: the same pixels and split the medcls runs see)."""
    idx = np.sort(np.concatenate([dm.partitions[p] for p in parts]))
    images = np.ascontiguousarray(dm.decoded.images[idx])
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    return x, torch.from_numpy(dm.labels[idx]).long()

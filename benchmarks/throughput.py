"""Training throughput: medcls (its real ``run_train`` path) vs a bare PyTorch loop.

    python benchmarks/throughput.py [--sizes 64 128] [--batch-size 128] [--model resnet18]
        [--steps 20] [--warmup 3] [--rounds 1] [--threads N]
        [--variant NAME="medcls overrides"]...   e.g. --variant fused="+optimizer.fused=true"

Per image size it measures, interleaved so that a change in machine load hits both sides of a
comparison alike (order a, c, b, d, then any --variant; ``--rounds`` repeats that order):

  (a) bare loop, fp32                 timm model, AdamW, CE, random uint8 batches in memory
  (b) bare loop, bf16 autocast + channels_last
  (c) medcls, trainer.precision=32-true
  (d) medcls, default trainer=cpu     precision auto (bf16-mixed + channels_last on AVX512-BF16/AMX)

medcls runs through ``medcls.workflows.train.run_train`` on the synthetic dataset (decoded into
memory; ``data.num_samples`` is raised so the timed steps fit in one epoch), with
``logger=none callbacks=none``, checkpointing, validation, sanity steps, the progress bar and the
model summary off, ``test=false`` and ``trainer.max_steps=warmup+steps``. A callback stamps the
clock at every ``on_train_batch_end``; a step's time is the gap between consecutive stamps, so it
includes loading and collating the batch (num_workers=0: the loader runs in the training
process). The bare loop is stamped the same way. The first ``--warmup`` steps are excluded.
img/s = batch size / median step time; ratios use the median of "quiet" steps (other processes
used < ``--quiet-threshold`` cores meanwhile, read from /proc/stat): on 2 cores a co-tenant on
one core slows a 2-thread PyTorch step several-fold, which no ratio survives. Before each
measurement the script waits (``--max-wait``) for the machine to go quiet, and measures again
(``--retries``) when fewer than ``--min-quiet`` of the steps were quiet; the figures come from
the measurements that counted (the "counted" column; "!" marks a row where none did).

The data pipeline alone (the train DataLoader of ``ClassificationDataModule`` with the
``flips`` and ``strong`` augmentations, no model) is timed at each size after the training
measurements; its share of a medcls step is training img/s / pipeline img/s.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import shlex
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pytorch_lightning as pl  # noqa: E402
import timm  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from _common import CpuClock, load_average, machine_lines, quiet_libraries, table  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402

from medcls.config import CONFIG_DIR  # noqa: E402
from medcls.data.transforms import create_transform  # noqa: E402
from medcls.utils.hardware import resolve_channels_last, resolve_precision  # noqa: E402
from medcls.workflows.common import build_datamodule  # noqa: E402
from medcls.workflows.train import run_train  # noqa: E402

quiet_libraries()

NUM_CLASSES = 5  # the synthetic dataset's default
TRAIN_SHARE = 0.6  # lower bound of the synthetic train partition's share (0.8 * 0.8 = 0.64)


CLOCK = CpuClock()
Stamp = tuple[float, float, float]


class StepTimer(pl.Callback):
    """Clock stamps at every ``on_train_batch_end``; the last instance made is ``latest``."""

    latest: StepTimer | None = None

    def __init__(self) -> None:
        self.stamps: list[Stamp] = []
        StepTimer.latest = self

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.stamps.append(CLOCK.stamp())


def step_times(stamps: list[Stamp], warmup: int) -> list[tuple[float, float]]:
    """(seconds, cores other processes used) of each step after the first ``warmup`` ones."""
    return [
        (b[0] - a[0], CpuClock.others(a, b))
        for a, b in zip(stamps[warmup - 1 : -1], stamps[warmup:], strict=True)
    ]


# -- (a), (b): bare PyTorch ---------------------------------------------------------------------
def bare_loop(
    model_name: str, size: int, batch: int, steps: int, warmup: int, bf16: bool
) -> list[tuple[float, float]]:
    """Per-step times of a plain timm + AdamW + CE loop on in-memory uint8 batches."""
    torch.manual_seed(0)
    model = timm.create_model(model_name, pretrained=False, num_classes=NUM_CLASSES)
    if bf16:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    pool = 4  # distinct batches cycled through
    images = torch.randint(0, 256, (pool, batch, 3, size, size), dtype=torch.uint8)
    labels = torch.randint(0, NUM_CLASSES, (pool, batch))
    mean = torch.tensor(timm.data.IMAGENET_DEFAULT_MEAN).view(1, 3, 1, 1) * 255
    std = torch.tensor(timm.data.IMAGENET_DEFAULT_STD).view(1, 3, 1, 1) * 255
    stamps = []
    for i in range(warmup + steps):
        x, y = images[i % pool], labels[i % pool]
        x = (x.float() - mean) / std
        if bf16:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        stamps.append(CLOCK.stamp())
    return step_times(stamps, warmup)


# -- (c), (d): medcls ---------------------------------------------------------------------------
def medcls_overrides(args, size: int, out_dir: str) -> list[str]:
    num_samples = math.ceil((args.warmup + args.steps + 1) * args.batch_size / TRAIN_SHARE)
    return [
        "data=synthetic",
        f"data.image_size={size}",
        f"data.native_size={max(128, size)}",
        f"data.num_samples={max(1200, num_samples)}",
        f"data.batch_size={args.batch_size}",
        f"model.name={args.model}",
        "logger=none",
        "callbacks=none",
        "+callbacks.step_timer._target_=__main__.StepTimer",
        "test=false",
        "print_config=false",
        f"paths.output_dir={out_dir}",
        f"paths.cache_dir={out_dir}/cache",
        f"+trainer.max_steps={args.warmup + args.steps}",
        "+trainer.limit_val_batches=0",
        "trainer.num_sanity_val_steps=0",
        "+trainer.enable_checkpointing=false",
        "+trainer.enable_progress_bar=false",
        "+trainer.enable_model_summary=false",
    ]


def medcls_run(overrides: list[str], warmup: int) -> list[tuple[float, float]]:
    cfg = compose("train", overrides=overrides)
    with contextlib.redirect_stdout(io.StringIO()):  # decode progress bar, run_train's table
        run_train(cfg)
    timer = StepTimer.latest
    if timer is None or len(timer.stamps) <= warmup:
        raise RuntimeError("the medcls run made too few steps to time")
    StepTimer.latest = None
    return step_times(timer.stamps, warmup)


# -- the data pipeline alone --------------------------------------------------------------------
def pipeline_rates(overrides: list[str], augmentations: list[str], epochs: int) -> dict:
    """img/s of iterating the medcls train DataLoader (augment + collate), per augmentation.

    Runs after all training measurements, so cv2 thread pools it starts cannot affect them.
    """
    cfg = compose("train", overrides=overrides)
    dm = build_datamodule(cfg)
    with contextlib.redirect_stdout(io.StringIO()):
        dm.setup()
    rates = {}
    for aug in augmentations:
        aug_cfg = compose("train", overrides=[*overrides, f"augmentation={aug}"])
        dm.train_transform = create_transform(aug_cfg.augmentation.train)
        loader = dm.train_dataloader()
        next(iter(loader))  # warm-up: first-call costs of albumentations and collate
        n, start = 0, time.perf_counter()
        for _ in range(epochs):
            for b in loader:
                n += int(b["image"].shape[0])
        rates[aug] = n / (time.perf_counter() - start)
    return rates


class Steps:
    """The timed steps of one configuration: (seconds, cores used by other processes).

    Every measurement (attempt) is kept; the figures come from the *good* attempts (at least
    ``min_quiet`` of their steps quiet), pooled, or else from the single quietest attempt: the
    steps right around a co-tenant's burst are slowed too, so a mostly noisy attempt's "quiet"
    steps are not trustworthy.
    """

    def __init__(self, batch: int, threshold: float, min_quiet: float) -> None:
        self.batch, self.threshold, self.min_quiet = batch, threshold, min_quiet
        self.attempts: list[list[tuple[float, float]]] = []

    def quiet_share(self, attempt: list[tuple[float, float]]) -> float:
        return sum(o < self.threshold for _, o in attempt) / max(1, len(attempt))

    def good(self, attempt: list[tuple[float, float]]) -> bool:
        return self.quiet_share(attempt) >= self.min_quiet

    @property
    def steps(self) -> list[tuple[float, float]]:
        good = [s for a in self.attempts if self.good(a) for s in a]
        return good or max(self.attempts, key=self.quiet_share)

    def quiet(self) -> list[float]:
        return [t for t, o in self.steps if o < self.threshold]

    def rate(self, which: str = "best") -> float:
        """img/s from the median step: ``quiet`` steps, ``all`` steps, or ``best`` (quiet when
        there are at least 3, else all)."""
        quiet = self.quiet()
        times = quiet if which == "quiet" or (which == "best" and len(quiet) >= 3) else None
        times = times if times is not None else [t for t, _ in self.steps]
        return self.batch / statistics.median(times) if times else float("nan")

    def mean_rate(self) -> float:
        return self.batch * len(self.steps) / sum(t for t, _ in self.steps)

    def others(self) -> float:
        return statistics.fmean(o for _, o in self.steps)

    def counted(self) -> str:
        """'good attempts/attempts', with '!' when none was good (figures then unreliable)."""
        good = sum(self.good(a) for a in self.attempts)
        return f"{good}/{len(self.attempts)}{'' if good else '!'}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--model", default="resnet18")
    p.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps before them (>= 1)")
    p.add_argument("--rounds", type=int, default=1, help="repeat the interleaved a,c,b,d order")
    p.add_argument("--pipeline-epochs", type=int, default=2)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument(
        "--quiet-threshold",
        type=float,
        default=0.1,
        help="a step is 'quiet' when other processes used fewer cores than this",
    )
    p.add_argument(
        "--min-quiet",
        type=float,
        default=0.8,
        help="a measurement counts when at least this share of its steps were quiet",
    )
    p.add_argument(
        "--max-wait",
        type=float,
        default=20.0,
        help="before each measurement wait up to this many s for other processes to go quiet",
    )
    p.add_argument(
        "--retries",
        type=int,
        default=2,
        help="measure a configuration again (at most this often) when it did not count",
    )
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar='NAME="OVERRIDES"',
        help="extra medcls configuration after (d): the (d) overrides plus these, e.g. "
        'fused="+optimizer.fused=true" (repeatable)',
    )
    args = p.parse_args()
    args.warmup = max(1, args.warmup)
    torch.set_num_threads(args.threads)

    started = time.time()
    print("medcls training throughput vs a bare PyTorch loop")
    print("\n".join(machine_lines()))
    auto_precision = resolve_precision("auto", "cpu")
    auto_cl = resolve_channels_last("auto", auto_precision)
    print(
        f"model {args.model} (pretrained=False), batch {args.batch_size}, sizes {args.sizes}, "
        f"{args.steps} timed steps after {args.warmup} warm-up, {args.rounds} round(s); "
        f"trainer=cpu precision auto -> {auto_precision}, channels_last {auto_cl}"
    )
    print()

    configs = {
        "a": "bare fp32",
        "b": "bare bf16 autocast + channels_last",
        "c": "medcls trainer.precision=32-true",
        "d": f"medcls trainer=cpu ({auto_precision}{', channels_last' if auto_cl else ''})",
    }
    variants: dict[str, list[str]] = {}
    for i, v in enumerate(args.variant):
        name, _, extra = v.partition("=")
        configs[f"v{i + 1}"] = f"medcls trainer=cpu + {name}: {extra}"
        variants[f"v{i + 1}"] = shlex.split(extra)
    order = ["a", "c", "b", "d", *variants]
    results: dict[tuple[int, str], Steps] = {}
    pipes: dict[int, dict[str, float]] = {}
    waited = 0.0

    def measure(size: int, key: str, base: list[str]) -> list[tuple[float, float]]:
        if key in "ab":
            return bare_loop(args.model, size, args.batch_size, args.steps, args.warmup, key == "b")
        extra = ["trainer.precision=32-true"] if key == "c" else variants.get(key, [])
        return medcls_run(base + extra, args.warmup)

    with (
        tempfile.TemporaryDirectory(prefix="medcls-bench-") as tmp,
        initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"),
    ):
        for size in args.sizes:
            base = medcls_overrides(args, size, tmp)
            for _ in range(args.rounds):
                for key in order:
                    res = results.setdefault(
                        (size, key),
                        Steps(args.batch_size, args.quiet_threshold, args.min_quiet),
                    )
                    for _attempt in range(1 + max(0, args.retries)):
                        waited += CLOCK.wait_for_quiet(args.max_wait, args.quiet_threshold)
                        steps = measure(size, key, base)
                        res.attempts.append(steps)
                        quiet = sum(o < args.quiet_threshold for _, o in steps)
                        median = args.batch_size / statistics.median(t for t, _ in steps)
                        print(
                            f"  measured {size}px ({key}) {configs[key]}: median {median:.1f} "
                            f"img/s, {quiet}/{len(steps)} quiet steps [load {load_average()}]",
                            flush=True,
                        )
                        if res.good(steps):
                            break
        # Pipelines last: see pipeline_rates.
        for size in args.sizes:
            waited += CLOCK.wait_for_quiet(args.max_wait, args.quiet_threshold)
            pipes[size] = pipeline_rates(
                medcls_overrides(args, size, tmp), ["flips", "strong"], args.pipeline_epochs
            )

    print()
    print(
        "Training throughput (img/s = batch / median step time; step = batch loading + "
        "forward/backward/optimizer)"
    )
    print(
        f"quiet step: other processes used < {args.quiet_threshold} cores meanwhile. "
        f"A measurement counts when >= {args.min_quiet:.0%} of its steps were quiet; figures pool "
        "the counted ones (else the quietest; marked !). others: cores other processes used."
    )
    rows = []
    for size in args.sizes:
        a = results[(size, "a")].rate()
        for key, name in configs.items():
            r = results[(size, key)]
            rows.append(
                [
                    f"{size}px ({key}) {name}",
                    f"{r.rate('quiet'):.1f}",
                    f"{len(r.quiet())}/{len(r.steps)}",
                    r.counted(),
                    f"{r.rate('all'):.1f}",
                    f"{r.mean_rate():.1f}",
                    f"{r.others():.2f}",
                    f"{r.rate() / a:.2f}",
                ]
            )
    print(
        table(
            [
                "config",
                "quiet img/s",
                "quiet steps",
                "counted",
                "all img/s",
                "mean img/s",
                "others",
                "x (a)",
            ],
            rows,
        )
    )

    print()
    print("Ratios (median of quiet steps; * = a side had no measurement that counted)")
    rows, verdicts = [], []
    for size in args.sizes:
        for label, num, den, target in (
            ("c/a medcls fp32 / bare fp32", "c", "a", 0.9),
            ("d/a medcls default / bare fp32", "d", "a", 1.6),
            ("b/a bare bf16+CL / bare fp32", "b", "a", None),
            ("d/b medcls default / bare bf16+CL", "d", "b", None),
            ("d/c medcls default / medcls fp32", "d", "c", None),
            *((f"{k}/a {configs[k].split(': ')[0]} / bare fp32", k, "a", None) for k in variants),
            *(
                (f"{k}/d {configs[k].split(': ')[0]} / medcls default", k, "d", None)
                for k in variants
            ),
        ):
            value = results[(size, num)].rate() / results[(size, den)].rate()
            noisy = any(results[(size, k)].counted().endswith("!") for k in (num, den))
            ok = "" if target is None else ("yes" if value >= target else "NO")
            rows.append(
                [f"{size}px {label}", f"{value:.2f}{'*' if noisy else ''}", target or "", ok]
            )
            if target is not None and value < target:
                verdicts.append(f"{size}px {label.split()[0]} = {value:.2f} < {target}")
    print(table(["ratio", "value", "target", "met"], rows))

    print()
    print("Data pipeline alone (train DataLoader, num_workers=0, augment + collate, no model)")
    rows, shares = [], []
    for size in args.sizes:
        d = results[(size, "d")].rate()
        c = results[(size, "c")].rate()
        for aug, r in pipes[size].items():
            shares.append(100 * d / r)
            rows.append(
                [
                    f"{size}px {aug}",
                    f"{r:.0f}",
                    f"{c:.1f}",
                    f"{d:.1f}",
                    f"{100 * c / r:.1f}%",
                    f"{100 * d / r:.1f}%",
                ]
            )
    print(
        table(
            [
                "size / augmentation",
                "pipeline img/s",
                "medcls (c) img/s",
                "medcls (d) img/s",
                "share (c)",
                "share (d)",
            ],
            rows,
        )
    )
    worst = max(shares)
    print(
        "share = part of a medcls training step spent in the loader (it runs in the training "
        "process). "
        + (
            f"The pipeline is never the bottleneck here (largest share {worst:.1f}%)."
            if worst < 10
            else f"The pipeline takes up to {worst:.1f}% of a step: worth num_workers>0 or "
            "lighter augmentation."
        )
    )
    print()
    print(
        f"load average at end: {load_average()}; waited {waited:.0f} s for quiet; "
        f"wall time {time.time() - started:.0f} s"
    )
    if verdicts:
        print("targets missed: " + "; ".join(verdicts))
    return 0


if __name__ == "__main__":
    sys.exit(main())

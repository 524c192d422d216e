"""HAM10000 at 64 px: medcls-train vs a bare PyTorch loop on the same lesion-grouped split.

    python benchmarks/bare_loop_ham10000.py [--root ../shared/data/ham10000] [--epochs 8]
        [--skip-experiment] [--variant NAME="override ..."]... [--work-dir DIR] [--cache-dir DIR]

Runs, one after the other (one heavy job at a time on a small machine):

  (a) medcls default: ``medcls-train data=ham10000 data.root=ROOT model.name=resnet18
      data.image_size=64 trainer.max_epochs=8`` (everything else the shipped default: plain CE,
      flips, AdamW + cosine, bf16-mixed where the CPU has it, test on the best-val checkpoint)
  (a') medcls ``experiment=ham10000_resnet18`` (class-weighted CE; 64 px, 8 epochs, flips)
  (b) a bare loop: timm resnet18 (pretrained=False), plain CE, Adam(lr 1e-3), batch 64,
      ``--epochs`` epochs, no augmentation, fp32, final-epoch weights. Its images (the decoded
      64 px arrays), ImageNet mean/std normalisation and train/test partitions are taken from
      medcls's ``ClassificationDataModule`` built with the same data config, so both sides see
      the same pixels and the same split; the script checks that medcls's test predictions cover
      exactly that test partition.

medcls runs are subprocesses of the real CLI, in ``--work-dir`` (their Hydra run dir, MLflow
``mlflow.db``); only ``hydra.run.dir`` is set, which changes no training setting. The decode
cache (``--cache-dir``, default ``$MEDCLS_CACHE_DIR`` or ``<repo>/.cache/medcls``, medcls's own
default for runs started in the repository) is shared by all runs, so JPEGs are decoded once.
Test metrics are recomputed from each run's ``test_predictions.csv`` with scikit-learn.

Duration: about 12.5 min on a quiet 2-core Xeon (AMX) (medcls runs ~3.8 min each, the fp32 bare
loop ~4.7 min). A co-tenant using one core slows 2-thread PyTorch several-fold (52 min measured
with other test suites running), so the table reports the cores other processes used.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytorch_lightning as pl  # noqa: E402, F401  (imported before quiet_libraries)
import timm  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from _common import CpuClock, load_average, machine_lines, quiet_libraries, table  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from sklearn.metrics import accuracy_score, balanced_accuracy_score  # noqa: E402

from medcls.config import CONFIG_DIR  # noqa: E402
from medcls.workflows.common import build_datamodule  # noqa: E402

quiet_libraries()

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLOCK = CpuClock()


def base_overrides(root: str, epochs: int) -> list[str]:
    return [
        "data=ham10000",
        f"data.root={root}",
        "model.name=resnet18",
        "data.image_size=64",
        f"trainer.max_epochs={epochs}",
    ]


def medcls_command() -> list[str]:
    exe = os.path.join(os.path.dirname(sys.executable), "medcls-train")
    return [exe] if os.path.isfile(exe) else [sys.executable, "-m", "medcls.train"]


def run_medcls(name: str, overrides: list[str], work_dir: str, env: dict) -> dict:
    """One medcls-train run as a subprocess; test metrics from its test_predictions.csv."""
    run_dir = os.path.join(work_dir, "runs", name)
    cmd = [*medcls_command(), *overrides, f"hydra.run.dir={run_dir}"]
    log_path = os.path.join(work_dir, f"{name}.log")
    print(f"  [{time.strftime('%H:%M:%S')}] {name}: {shlex.join(cmd)}", flush=True)
    a = CLOCK.stamp()
    with open(log_path, "w") as log:
        proc = subprocess.run(cmd, cwd=work_dir, env=env, stdout=log, stderr=subprocess.STDOUT)
    b = CLOCK.stamp()
    if proc.returncode != 0:
        with open(log_path) as f:
            tail = f.read()[-3000:]
        raise RuntimeError(f"{name} failed (exit {proc.returncode}); log {log_path}:\n{tail}")
    preds = pd.read_csv(os.path.join(run_dir, "test_predictions.csv"))
    with open(log_path) as f:
        text = f.read()
    reported = re.search(r"balanced_accuracy\W+([0-9.]+)", text)
    precision = re.search(r"precision\W+(\S+-\S+)\s", text)
    return {
        "bacc": balanced_accuracy_score(preds["label"], preds["prediction"]),
        "acc": accuracy_score(preds["label"], preds["prediction"]),
        "reported_bacc": float(reported.group(1)) if reported else float("nan"),
        "test_ids": set(preds["image_id"].astype(str)),
        "seconds": b[0] - a[0],
        "others": CpuClock.others(a, b),
        "precision": precision.group(1) if precision else "?",
        "log": log_path,
    }


def run_bare(dm, epochs: int, batch: int, lr: float, seed: int) -> dict:
    """Plain timm resnet18 + CE + Adam, fp32, no augmentation, final-epoch weights."""
    torch.manual_seed(seed)
    images = dm.decoded.images  # (N, 64, 64, 3) uint8, the medcls decode cache

    def tensors(part: str) -> tuple[torch.Tensor, torch.Tensor]:
        idx = np.sort(dm.partitions[part])
        x = torch.from_numpy(np.ascontiguousarray(images[idx])).permute(0, 3, 1, 2).contiguous()
        return x, torch.from_numpy(dm.labels[idx])

    x_train, y_train = tensors("train")
    x_test, y_test = tensors("test")
    mean = torch.tensor(timm.data.IMAGENET_DEFAULT_MEAN).view(1, 3, 1, 1) * 255
    std = torch.tensor(timm.data.IMAGENET_DEFAULT_STD).view(1, 3, 1, 1) * 255
    model = timm.create_model("resnet18", pretrained=False, num_classes=dm.num_classes)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    a = CLOCK.stamp()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(y_train), generator=gen)
        total, n = 0.0, 0
        for i in range(0, len(order), batch):
            j = order[i : i + batch]
            logits = model((x_train[j].float() - mean) / std)
            loss = F.cross_entropy(logits, y_train[j])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, n = total + float(loss) * len(j), n + len(j)
        print(
            f"    bare epoch {epoch + 1}/{epochs}: train loss {total / n:.4f} "
            f"({time.strftime('%H:%M:%S')})",
            flush=True,
        )
    model.eval()
    with torch.no_grad():
        pred = torch.cat(
            [
                model((x_test[i : i + 256].float() - mean) / std).argmax(1)
                for i in range(0, len(y_test), 256)
            ]
        )
    b = CLOCK.stamp()
    return {
        "bacc": balanced_accuracy_score(y_test.numpy(), pred.numpy()),
        "acc": accuracy_score(y_test.numpy(), pred.numpy()),
        "seconds": b[0] - a[0],
        "others": CpuClock.others(a, b),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", default=os.path.join(REPO, "..", "shared", "data", "ham10000"))
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=64, help="bare loop")
    p.add_argument("--lr", type=float, default=1e-3, help="bare loop Adam learning rate")
    p.add_argument("--seed", type=int, default=42, help="bare loop seed")
    p.add_argument("--skip-experiment", action="store_true", help="no experiment= run")
    p.add_argument("--skip-default", action="store_true", help="no default medcls run")
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar='NAME="OVERRIDES"',
        help="extra medcls run: the default overrides plus these (repeatable)",
    )
    p.add_argument("--work-dir", default=None, help="default: a new folder under /tmp")
    p.add_argument(
        "--cache-dir",
        default=os.environ.get("MEDCLS_CACHE_DIR", os.path.join(REPO, ".cache", "medcls")),
    )
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    root = os.path.abspath(args.root)
    work_dir = os.path.abspath(
        args.work_dir or os.path.join("/tmp", f"medcls-ham-bench-{time.strftime('%Y%m%d-%H%M%S')}")
    )
    os.makedirs(work_dir, exist_ok=True)
    env = {**os.environ, "MEDCLS_CACHE_DIR": os.path.abspath(args.cache_dir)}
    env.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    os.environ["MEDCLS_CACHE_DIR"] = env["MEDCLS_CACHE_DIR"]

    started = time.time()
    print("HAM10000 64 px: medcls-train vs a bare PyTorch loop, same lesion-grouped test partition")
    print("\n".join(machine_lines()))
    print(f"data: {root}; work dir: {work_dir}; decode cache: {env['MEDCLS_CACHE_DIR']}")
    print()

    base = base_overrides(root, args.epochs)
    runs: list[tuple[str, list[str]]] = []
    if not args.skip_default:
        runs.append(("medcls default", base))
    if not args.skip_experiment:
        runs.append(
            (
                "medcls experiment=ham10000_resnet18",
                ["experiment=ham10000_resnet18", f"data.root={root}"]
                + ([f"trainer.max_epochs={args.epochs}"] if args.epochs != 8 else []),
            )
        )
    for v in args.variant:
        name, _, extra = v.partition("=")
        runs.append((f"medcls {name}", base + shlex.split(extra)))

    # The data as medcls builds it (decodes into the cache on first use, like the runs would).
    t0 = time.perf_counter()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[*base, f"paths.output_dir={work_dir}/bare"])
    dm = build_datamodule(cfg)
    with contextlib.redirect_stdout(io.StringIO()):
        dm.setup()
    parts = {k: len(dm.partitions[k]) for k in ("train", "val", "test")}
    counts = np.bincount(dm.labels[dm.partitions["test"]], minlength=dm.num_classes)
    test_ids = {dm.records[i].image_id for i in dm.partitions["test"]}
    print(
        f"data module: {len(dm.records)} images, {dm.num_classes} classes {dm.class_names}, "
        f"train/val/test {parts['train']}/{parts['val']}/{parts['test']} (lesion-grouped), "
        f"{len(dm.skipped)} skipped; setup {time.perf_counter() - t0:.0f} s"
    )
    print(
        "test partition per class: "
        + ", ".join(f"{c} {n}" for c, n in zip(dm.class_names, counts, strict=True))
    )
    print()

    results: dict[str, dict] = {}
    print("runs:")
    for i, (name, overrides) in enumerate(runs):
        results[name] = run_medcls(f"run{i}", overrides, work_dir, env)
        r = results[name]
        print(
            f"    {name}: test bacc {r['bacc']:.4f}, {r['seconds']:.0f} s "
            f"[others {r['others']:.2f} cores, load {load_average()}]",
            flush=True,
        )
        if i == 0:  # the bare loop between the medcls runs
            print(f"  [{time.strftime('%H:%M:%S')}] bare loop", flush=True)
            results["bare loop"] = run_bare(dm, args.epochs, args.batch_size, args.lr, args.seed)
            r = results["bare loop"]
            print(
                f"    bare loop: test bacc {r['bacc']:.4f}, {r['seconds']:.0f} s "
                f"[others {r['others']:.2f} cores, load {load_average()}]",
                flush=True,
            )
    if not runs:
        results["bare loop"] = run_bare(dm, args.epochs, args.batch_size, args.lr, args.seed)

    print()
    print(f"Test partition: {parts['test']} images, {dm.num_classes} classes (same for every row)")
    rows = []
    for name, r in results.items():
        same = "yes" if "test_ids" not in r else ("yes" if r["test_ids"] == test_ids else "NO")
        extra = (
            "fp32, Adam, no aug, final epoch"
            if name == "bare loop"
            else f"{r['precision']}, best-val ckpt, medcls bacc {r['reported_bacc']:.4f}"
        )
        rows.append(
            [
                name,
                f"{r['bacc']:.4f}",
                f"{r['acc']:.4f}",
                f"{r['seconds']:.0f}",
                f"{r['others']:.2f}",
                same,
                extra,
            ]
        )
    print(
        table(
            ["run", "test bacc", "test acc", "seconds", "others", "same test set", "notes"],
            rows,
            left=(0, 6),
        )
    )
    print(
        "seconds: whole run (medcls: CLI start to exit incl. validation, test, MLflow; bare: "
        "training + test). others: cores other processes used meanwhile (0 = quiet machine)."
    )
    bare = results["bare loop"]["bacc"]
    if "medcls default" in results:
        d = results["medcls default"]["bacc"]
        verdict = "reaches" if d >= bare else "does NOT reach"
        print(
            f"medcls default {verdict} the bare loop's balanced accuracy ({d:.4f} vs {bare:.4f})."
        )
    busy = [n for n, r in results.items() if r["others"] > 0.2]
    if busy:
        print(
            "note: other processes used > 0.2 cores during "
            + ", ".join(busy)
            + "; those durations are not this machine's quiet timings."
        )
    print(f"load average at end: {load_average()}; wall time {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

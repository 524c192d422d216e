"""Study tables from MLflow: one row per configuration, runs differing only in fold/seed pooled.

Each row holds numbers (mean, std, count over the configuration's runs, and 95% bootstrap
intervals of every metric the evaluation report bootstraps, on the pooled per-image test
predictions); they become ``mean ± std`` and ``[low, high]`` text only when printed or written. Tables can be turned (metrics as
rows) to match a paper's layout. ``compare`` adds a paired test between two configurations on the
same test images.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from medcls.data.records import Record
from medcls.errors import DataError
from medcls.evaluation.files import read_predictions
from medcls.studies.stats import METRICS, mcnemar, paired_bootstrap


def config_label(overrides: str, ignore: Sequence[str]) -> str:
    """The overrides that define a configuration (fold, seed and the like removed)."""
    keep = []
    for item in overrides.split():
        key = item.split("=", 1)[0].lstrip("+~")
        if not any(fnmatch.fnmatch(key, pat) for pat in ignore):
            keep.append(item)
    return " ".join(keep)


# Runs that only hold other runs (a multirun's parent, a pseudo-labelling study): never a row.
CONTAINER_ROLES = ("sweep", "pseudo")


def fetch_runs(
    client, experiment: str, parent: str | None = None, filter_string: str | None = None
):
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise DataError(f"MLflow experiment {experiment!r} not found in {client.tracking_uri}.")
    clauses = [
        c for c in (filter_string, f"tags.mlflow.parentRunId = '{parent}'" if parent else None) if c
    ]
    runs = client.search_runs([exp.experiment_id], " and ".join(clauses), max_results=5000)
    return [
        r
        for r in runs
        if r.data.tags.get("medcls.role") not in CONTAINER_ROLES and r.info.status == "FINISHED"
    ]


def runs_table(
    runs,
    metrics: Sequence[str],
    ignore: Sequence[str],
    label_tag: str | None = None,
    ensemble: str = "rows",
) -> pd.DataFrame:
    """One row per run: its configuration label, run id and ``metrics``.

    ``label_tag``: name configurations by this MLflow tag (e.g. ``backbone``) instead of their
    overrides, in the order the runs started; overrides that differ between runs beyond the
    tagged one are appended, so differently configured runs are never pooled.

    Ensemble runs are rows of their own (``ensemble (5 models) hflip``). An ensemble of one
    configuration's fold models (``medcls-ensemble per_config=true``; tag ``medcls.config``)
    gets that configuration's label too: appended to its row name (``ensemble="rows"``), or,
    with ``ensemble="columns"``, as the configuration's own label plus an ``ensemble`` column
    (True), so :func:`summarize` turns its metrics into columns of the configuration's row.
    """
    if label_tag:
        runs = sorted(runs, key=lambda r: r.info.start_time or 0)
    rows = []
    for r in runs:
        tags = r.data.tags
        of_config = tags.get("medcls.role") == "ensemble" and "medcls.config" in tags
        overrides = tags["medcls.config"] if of_config else tags.get("overrides", "")
        label = config_label(overrides, ignore) or tags.get("mlflow.runName", r.info.run_id)
        name = None
        if tags.get("medcls.role") == "ensemble":
            name = f"ensemble ({len(tags.get('checkpoints', '').split())} models) {tags.get('tta', '')}".strip()
            label = label if of_config else name
        rows.append(
            {
                "config": label,
                "run_id": r.info.run_id,
                "named": tags.get(label_tag) if label_tag else None,
                "of_config": of_config,
                "ensemble_name": name,
                **{m: r.data.metrics.get(m, np.nan) for m in metrics},
            }
        )
    table = pd.DataFrame(rows)
    if label_tag and len(table):
        table["config"] = _tag_labels(table, label_tag)
    if len(table) and ensemble == "columns":
        table.insert(2, "ensemble", table["of_config"].astype(bool))
    elif len(table):
        of = table["of_config"].astype(bool)
        several = table.loc[~of & table["ensemble_name"].isna(), "config"].nunique() > 1
        table.loc[of, "config"] = [
            f"{n} · {c}" if several else n
            for n, c in zip(table.loc[of, "ensemble_name"], table.loc[of, "config"], strict=True)
        ]
    return table.drop(columns=["named", "of_config", "ensemble_name"], errors="ignore")


def _tag_labels(table: pd.DataFrame, label_tag: str | None = None) -> list[str]:
    """The tag's value, + the other overrides where runs differ in them."""
    names = [n if isinstance(n, str) and n else None for n in table["named"]]  # NaN: untagged
    rests = []
    for named, config in zip(names, table["config"], strict=True):
        # drop the override that set the tag (model=alexnet for backbone=alexnet; ablation=...)
        rests.append(
            " ".join(
                o
                for o in config.split()
                if o.split("=", 1)[-1] != named and o.split("=", 1)[0].lstrip("+~") != label_tag
            )
        )
    varied = len(set(rests)) > 1
    return [
        (f"{named} {rest}".strip() if varied else named) if named else config
        for named, config, rest in zip(names, table["config"], rests, strict=True)
    ]


def latest_sweep(client, experiment: str) -> str | None:
    """The run id of the newest multirun (sweep parent run) in ``experiment``, if any."""
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    runs = client.search_runs(
        [exp.experiment_id], order_by=["attributes.start_time DESC"], max_results=5000
    )
    return next((r.info.run_id for r in runs if r.data.tags.get("medcls.role") == "sweep"), None)


def pooled_predictions(
    client, run_ids: Sequence[str], artifact: str = "test_predictions.csv"
) -> pd.DataFrame | None:
    frames = []
    for run_id in run_ids:
        for name in (artifact, "ensemble_predictions.csv"):
            try:
                frames.append(
                    read_predictions(client.download_artifacts(run_id, name)).assign(run_id=run_id)
                )
                break
            except Exception:  # noqa: BLE001 - artifact absent in this run
                continue
    return pd.concat(frames, ignore_index=True) if frames else None


def _labels_and_preds(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    classes = [c[2:] for c in df.columns if c.startswith("p_")]
    index = {c: i for i, c in enumerate(classes)}
    return df["label"].map(index).to_numpy(), df[[f"p_{c}" for c in classes]].to_numpy().argmax(1)


def bootstrap_units(df: pd.DataFrame) -> np.ndarray:
    """What a bootstrap draws as one unit: the image's group (patient, lesion) where it has one,
    else the image. Pooled fold/seed models predict each test image several times; drawing rows
    independently would shrink the interval as if those were new images."""
    units = df["path"].astype(str).to_numpy()
    if "group" in df:
        group = df["group"].astype(str).to_numpy()
        units = np.where(group != "", "group:" + group, units)
    return units


def summarize(table: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Numbers, per configuration: ``runs``, and per metric its mean over the runs (``<m>``),
    sample standard deviation (``<m> std``, NaN for one run) and count (``<m> n``). With an
    ``ensemble`` column (see :func:`runs_table`) the ensemble runs' figures go to
    ``<m> (ensemble)`` columns. :func:`format_table` turns them into text."""
    if "ensemble" in table:
        return _with_ensemble_columns(table, metrics)
    g = table.groupby("config", sort=False)
    out = pd.DataFrame({"runs": g.size()})
    for m in metrics:
        out[m], out[f"{m} std"], out[f"{m} n"] = g[m].mean(), g[m].std(ddof=1), g[m].count()
    return out


def _with_ensemble_columns(table: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """The fold runs summarised as usual, then each configuration's ensemble figures per metric
    (``<m> (ensemble)``; NaN where a configuration has no ensemble)."""
    ens = table["ensemble"].astype(bool)
    out = summarize(table.loc[~ens].drop(columns="ensemble"), metrics)
    ensembles = summarize(table.loc[ens].drop(columns="ensemble"), metrics)
    out = out.reindex(out.index.append(ensembles.index.difference(out.index, sort=False)))
    out["runs"] = out["runs"].fillna(0).astype(int)
    for m in metrics:
        for suffix in ("", " std", " n"):
            out[f"{m} (ensemble){suffix}"] = ensembles[f"{m}{suffix}"].reindex(out.index)
    return out


def format_table(
    summary: pd.DataFrame, metrics: Sequence[str], level: float = 0.95
) -> pd.DataFrame:
    """The printed and written table: ``runs``, per metric ``mean ± std`` (one run: its value;
    none: ``—``), then, for each metric with intervals, ``<m> 95% CI`` as ``[low, high]``."""
    shown = pd.DataFrame({"runs": summary["runs"].fillna(0).astype(int)}, index=summary.index)
    shown.index.name = summary.index.name
    for m in metrics:
        shown[m] = [
            _cell(mean, std, n)
            for mean, std, n in zip(summary[m], summary[f"{m} std"], summary[f"{m} n"], strict=True)
        ]
    for m in metrics:
        if f"{m} ci_low" in summary and summary[f"{m} ci_low"].notna().any():
            shown[f"{m} {level:.0%} CI"] = [
                f"[{lo:.4f}, {hi:.4f}]" if np.isfinite(lo) else "—"
                for lo, hi in zip(summary[f"{m} ci_low"], summary[f"{m} ci_high"], strict=True)
            ]
    return shown


def _cell(mean: float, std: float, n: float) -> str:
    if not n or not np.isfinite(mean):
        return "—"
    return f"{mean:.4f} ± {std:.4f}" if n > 1 else f"{mean:.4f}"  # one run: no made-up spread


def add_bootstrap(
    summary: pd.DataFrame, table: pd.DataFrame, client, metrics: Sequence[str], n_boot: int
) -> pd.DataFrame:
    """``<m> ci_low`` / ``<m> ci_high`` of each ``test/<name>`` metric the evaluation report
    bootstraps (:func:`~medcls.evaluation.report.headline_metrics`), on each configuration's
    pooled test predictions: an image predicted by several fold or seed models is one unit of
    the draw (with its group: :func:`bootstrap_units`), so more models never narrow it."""
    from medcls.evaluation import EvalSettings, Predictions
    from medcls.evaluation.report import headline_metrics

    settings = EvalSettings(n_boot=n_boot, curves=False)
    for config in summary.index:
        df = pooled_predictions(client, table.loc[table.config == config, "run_id"].tolist())
        if df is None or "label" not in df:
            continue
        classes = [c[2:] for c in df.columns if c.startswith("p_")]
        probs = df[[f"p_{c}" for c in classes]].to_numpy(dtype=float)
        labels = df["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
        records = [Record(str(p), -1) for p in df["path"]]
        pred = Predictions(probs, labels, records, classes, positive=1)
        values = headline_metrics(pred, settings, list(bootstrap_units(df)))
        for m in metrics:
            name = m.split("/", 1)[1] if m.startswith("test/") else None
            if name and f"{name}_ci_low" in values:
                summary.loc[config, f"{m} ci_low"] = values[f"{name}_ci_low"]
                summary.loc[config, f"{m} ci_high"] = values[f"{name}_ci_high"]
    return summary


def drop_shared_overrides(labels: Sequence[str]) -> tuple[list[str], list[str]]:
    """The configuration labels without the overrides every one of them has (those are said
    once, returned second); labels unchanged when there is one configuration."""
    if len(set(labels)) < 2:
        return list(labels), []
    token_sets = [set(label.split()) for label in labels]
    shared = set.intersection(*token_sets)
    shared = {t for t in shared if "=" in t}
    order = [t for t in labels[0].split() if t in shared]
    return [
        " ".join(t for t in label.split() if t not in shared) or label for label in labels
    ], order


def compare_configs(table: pd.DataFrame, client, a: str, b: str, metric: str, n_boot: int) -> dict:
    """Paired comparison on the images both configurations predicted (fold models averaged):
    ``{"images", "mcnemar", "paired_bootstrap"}``. Both resample or count whole groups
    (patients, lesions) where the predictions carry them (:func:`bootstrap_units`); McNemar's
    ``unit`` / ``method`` say whether it was the clustered test
    (:func:`~medcls.studies.stats.mcnemar`)."""
    preds = {}
    for name in (a, b):
        ids = table.loc[table.config == name, "run_id"].tolist()
        if not ids:
            raise DataError(
                f"compare: no runs for configuration {name!r}; choose from {sorted(set(table.config))}"
            )
        df = pooled_predictions(client, ids)
        pcols = [c for c in df.columns if c.startswith("p_")]
        first = {c: "first" for c in ("label", "group") if c in df}
        preds[name] = df.groupby("path").agg({**{c: "mean" for c in pcols}, **first})
    common = preds[a].index.intersection(preds[b].index)
    if common.empty:
        raise DataError(f"compare: {a!r} and {b!r} share no test images.")
    shared = preds[a].loc[common].reset_index()
    y_a, p_a = _labels_and_preds(shared)
    _, p_b = _labels_and_preds(preds[b].loc[common])
    units = bootstrap_units(shared)  # a group (patient, lesion) where the images have one
    boot = paired_bootstrap(y_a, p_a, p_b, METRICS[metric], n_boot=n_boot, groups=units)
    # both tests on the same units: McNemar is clustered by group when groups hold several images
    return {
        "images": len(common),
        "mcnemar": mcnemar(y_a, p_a, p_b, groups=units),
        "paired_bootstrap": boot,
    }


def write_outputs(
    summary: pd.DataFrame, metrics: Sequence[str], layout: str, out_dir: str, title: str
) -> list[str]:
    """``report.md`` and ``report.csv`` (:func:`format_table`: the table as printed) and
    ``report.png``, a bar chart of the means with their standard deviations."""
    os.makedirs(out_dir, exist_ok=True)
    shown = format_table(summary, metrics)
    if layout == "metrics_as_rows":
        shown = shown.T
    md, csv, png = (os.path.join(out_dir, f"report.{ext}") for ext in ("md", "csv", "png"))
    with open(md, "w") as f:
        f.write(f"# {title}\n\n{markdown_table(shown)}\n")
    shown.to_csv(csv)
    _bar_chart(summary, metrics, png, title)
    return [md, csv, png]


def markdown_table(df: pd.DataFrame) -> str:
    cols = [str(df.index.name or "")] + [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for idx, row in df.iterrows():
        lines.append("| " + " | ".join([str(idx), *map(str, row.tolist())]) + " |")
    return "\n".join(lines)


def _bar_chart(summary: pd.DataFrame, metrics: Sequence[str], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    means = summary[list(metrics)].to_numpy(dtype=float)
    stds = np.nan_to_num(summary[[f"{m} std" for m in metrics]].to_numpy(dtype=float))
    n_cfg, n_met = means.shape
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * n_cfg * n_met / 2), 4), dpi=120)
    width = 0.8 / n_met
    for j, m in enumerate(metrics):
        ax.bar(
            np.arange(n_cfg) + j * width, means[:, j], width, yerr=stds[:, j], label=m, capsize=3
        )
    ax.set_xticks(
        np.arange(n_cfg) + 0.4 - width / 2,
        [c[:40] for c in summary.index],
        rotation=20,
        ha="right",
        fontsize=7,
    )
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def subgroup_summary(runs, table: pd.DataFrame) -> pd.DataFrame:
    """The evaluation report's subgroup metrics (``subgroup/<attribute>/<subgroup>/<metric>``,
    ``eval.subgroups``) per configuration: one row per (config, attribute, subgroup), per metric
    its mean over the configuration's runs, std and count, and (one run) its interval. Rows
    ``subgroup = "largest gap"`` hold the ``gap_<metric>`` figures, with the interval
    ``gap_<metric>_ci_low`` / ``_ci_high`` as ``<metric>_ci_low`` / ``_ci_high`` (the
    group bootstrap of the evaluation report). Empty when no run has any."""
    config_of = dict(zip(table["run_id"], table["config"], strict=True))
    values: dict[tuple[str, str, str], dict[str, list[float]]] = {}
    for r in runs:
        config = config_of.get(r.info.run_id)
        for key, value in r.data.metrics.items() if config is not None else ():
            parts = key.split("/")
            if parts[0] != "subgroup" or len(parts) not in (3, 4):
                continue
            if len(parts) == 3:  # subgroup/<attribute>/gap_<metric>
                parts = [*parts[:2], "largest gap", parts[2].removeprefix("gap_")]
            values.setdefault((config, parts[1], parts[2]), {}).setdefault(parts[3], []).append(
                value
            )
    rows = []
    for (config, attribute, subgroup), by_metric in values.items():
        row = {"config": config, "attribute": attribute, "subgroup": subgroup}
        for metric, v in by_metric.items():
            row[metric] = float(np.mean(v))
            if not metric.endswith(("_ci_low", "_ci_high")):
                row[f"{metric} std"] = float(np.std(v, ddof=1)) if len(v) > 1 else np.nan
                row[f"{metric} n"] = len(v)
        rows.append(row)
    return pd.DataFrame(rows)


def format_subgroups(sub: pd.DataFrame) -> pd.DataFrame:
    """The subgroup table as text: images, and balanced accuracy and AUROC as ``value [low,
    high]`` (one run) or ``mean ± std`` (several)."""
    out = sub[["config", "attribute", "subgroup"]].copy()
    out["images"] = [
        "" if not np.isfinite(n) else f"{n:.0f}"
        for n in sub.get("images", pd.Series(np.nan, sub.index))
    ]
    for metric in ("balanced_accuracy", "auroc"):
        if metric not in sub:
            continue
        cells = []
        for _, r in sub.iterrows():
            mean, n = r.get(metric), r.get(f"{metric} n", 1)
            if mean is None or not np.isfinite(mean):
                cells.append("—")
            elif n and n > 1:
                cells.append(f"{mean:.4f} ± {r[f'{metric} std']:.4f}")
            elif np.isfinite(r.get(f"{metric}_ci_low", np.nan)):
                cells.append(
                    f"{mean:.4f} [{r[f'{metric}_ci_low']:.4f}, {r[f'{metric}_ci_high']:.4f}]"
                )
            else:
                cells.append(f"{mean:.4f}")
        out[metric] = cells
    return out


def write_subgroups(sub: pd.DataFrame, out_dir: str, title: str) -> list[str]:
    """``report_subgroups.csv`` (numbers) and ``report_subgroups.md`` (text)."""
    os.makedirs(out_dir, exist_ok=True)
    csv, md = (os.path.join(out_dir, f"report_subgroups.{ext}") for ext in ("csv", "md"))
    sub.to_csv(csv, index=False, float_format="%.6f")
    with open(md, "w") as f:
        f.write(
            f"# {title}: subgroups\n\n{markdown_table(format_subgroups(sub).set_index('config'))}\n"
        )
    return [csv, md]

"""Study tables from MLflow: one row per configuration, runs differing only in fold/seed pooled.

Each cell is ``mean ± std`` over the configuration's runs; a 95% bootstrap interval of the chosen
metric is computed on the pooled per-image test predictions. Tables can be turned (metrics as
rows) to match a paper's layout. ``compare`` adds a paired test between two configurations on the
same test images.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from medcls.data.records import DataError
from medcls.studies.stats import METRICS, bootstrap_ci, mcnemar, paired_bootstrap
from medcls.tracking.artifacts import read_predictions


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
    """``mean ± std`` (n runs; one run: its value) per configuration and metric; with an
    ``ensemble`` column (see :func:`runs_table`) the ensemble runs' values go to
    ``<metric> (ensemble)`` columns."""
    if "ensemble" in table:
        return _with_ensemble_columns(table, metrics)
    g = table.groupby("config", sort=False)
    out = pd.DataFrame({"runs": g.size()})
    for m in metrics:
        mean, std, n = g[m].mean(), g[m].std(ddof=1), g[m].count()
        out[m] = [  # one run has no spread to show: its value alone
            ("—" if not np.isfinite(a) else f"{a:.4f} ± {s:.4f}" if k > 1 else f"{a:.4f}")
            for a, s, k in zip(mean, std, n, strict=True)
        ]
        out[f"{m} (mean)"] = mean
    return out


def _with_ensemble_columns(table: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """The fold runs summarised as usual, then each configuration's ensemble value per metric
    (``mean ± std`` if it has several ensemble runs, ``—`` if none)."""
    ens = table["ensemble"].astype(bool)
    out = summarize(table.loc[~ens].drop(columns="ensemble"), metrics)
    ensembles = summarize(table.loc[ens].drop(columns="ensemble"), metrics)
    out = out.reindex(out.index.append(ensembles.index.difference(out.index, sort=False)))
    out["runs"] = out["runs"].fillna(0).astype(int)
    for m in metrics:
        values = ensembles[f"{m} (mean)"].reindex(out.index)
        several = ensembles["runs"].reindex(out.index).fillna(0) > 1
        shown = ensembles[m].reindex(out.index)
        out[f"{m} (ensemble)"] = [
            s if many else (f"{v:.4f}" if np.isfinite(v) else "—")
            for s, v, many in zip(shown, values, several, strict=True)
        ]
        out[f"{m} (ensemble) (mean)"] = values
        out[m] = out[m].fillna("—")
    return out


def add_bootstrap(
    summary: pd.DataFrame, table: pd.DataFrame, client, metric: str, n_boot: int
) -> pd.DataFrame:
    cis = []
    for config in summary.index:
        df = pooled_predictions(client, table.loc[table.config == config, "run_id"].tolist())
        if df is None or "label" not in df:
            cis.append("—")
            continue
        y, p = _labels_and_preds(df)
        _, lo, hi = bootstrap_ci(y, p, METRICS[metric], n_boot=n_boot, groups=bootstrap_units(df))
        cis.append(f"[{lo:.4f}, {hi:.4f}]")
    summary[f"{metric} 95% CI (pooled test predictions)"] = cis
    return summary


def compare_configs(table: pd.DataFrame, client, a: str, b: str, metric: str, n_boot: int) -> dict:
    """Paired comparison on the images both configurations predicted (fold models averaged)."""
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
    boot = paired_bootstrap(
        y_a, p_a, p_b, METRICS[metric], n_boot=n_boot, groups=bootstrap_units(shared)
    )
    return {"images": len(common), "mcnemar": mcnemar(y_a, p_a, p_b), "paired_bootstrap": boot}


def write_outputs(
    summary: pd.DataFrame, metrics: Sequence[str], layout: str, out_dir: str, title: str
) -> list[str]:
    """Markdown, CSV and a bar chart (mean ± std) of ``summary``."""
    os.makedirs(out_dir, exist_ok=True)
    shown = summary[["runs", *metrics, *[c for c in summary.columns if "CI" in c]]]
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

    means = summary[[f"{m} (mean)" for m in metrics]].to_numpy(dtype=float)
    stds = np.array(
        [
            [float(str(v).split("±")[1]) if "±" in str(v) else 0.0 for v in summary[m]]
            for m in metrics
        ]
    ).T
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

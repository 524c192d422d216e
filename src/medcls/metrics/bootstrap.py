"""Bootstrap draws that resample whole groups (patients, lesions): medcls's one bootstrap.

Images of one patient are not independent: resampling them one by one makes an interval too
narrow. A draw takes G groups with replacement out of G. As weight matrices (each image weighs
as often as its group was drawn: :mod:`medcls.metrics.weighted` scores all draws at once), or as
index arrays for any metric function (:mod:`medcls.studies.stats`: study tables, paired tests).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np


def group_index(groups: Sequence[str | None] | None, n: int) -> np.ndarray:
    """``(N,)`` group number of each image; an image without a group is a group of its own."""
    if groups is None:
        return np.arange(n)
    keys = np.array([g if g is not None else f"\0img{i}" for i, g in enumerate(groups)], object)
    return np.unique(keys, return_inverse=True)[1].reshape(-1)


def index_draws(group_of: np.ndarray) -> Callable[[np.random.Generator], np.ndarray]:
    """A function drawing one bootstrap sample's image indices: G groups drawn with replacement
    out of ``group_of``'s G, each bringing all its images. Members are found once, not per draw."""
    order = np.argsort(group_of, kind="stable")
    members = np.split(order, np.flatnonzero(np.diff(group_of[order])) + 1) if len(order) else []
    return lambda rng: np.concatenate(
        [members[g] for g in rng.integers(0, len(members), len(members))]
    )


def weight_draws(
    group_of: np.ndarray, n_boot: int, seed: int = 0, chunk: int = 200
) -> Iterator[np.ndarray]:
    """``(b, N)`` weights of ``n_boot`` draws, ``chunk`` draws at a time (bounded memory)."""
    rng = np.random.default_rng(seed)
    n_groups = int(group_of.max()) + 1 if len(group_of) else 0
    left = n_boot
    while left > 0:
        b = min(chunk, left)
        counts = rng.multinomial(n_groups, np.full(n_groups, 1 / n_groups), size=b)
        yield counts[:, group_of].astype(np.float64)
        left -= b


def bootstrap_intervals(
    score: Callable[[np.ndarray], dict[str, np.ndarray]],
    group_of: np.ndarray,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """Percentile interval of each metric ``score(weights)`` returns (``(B,)`` per metric).

    Draws where a metric is undefined (NaN: e.g. no positive image drawn) are left out of
    that metric's interval; a metric undefined in every draw gets ``(nan, nan)``.
    """
    draws: dict[str, list[np.ndarray]] = {}
    for w in weight_draws(group_of, n_boot, seed):
        for name, values in score(w).items():
            draws.setdefault(name, []).append(values)
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    out = {}
    for name, parts in draws.items():
        values = np.concatenate(parts)
        values = values[~np.isnan(values)]
        lo, hi = np.percentile(values, q) if len(values) else (np.nan, np.nan)
        out[name] = (float(lo), float(hi))
    return out

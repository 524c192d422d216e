"""``medcls-train``: one training run, or a sweep with ``-m``."""

from __future__ import annotations

import math

import hydra
from omegaconf import DictConfig

from medcls.config import CONFIG_DIR, run_guarded


def optimized_value(metrics: dict[str, float], metric: str | None) -> float | None:
    """What the job returns to its sweeper: ``metrics[metric]``, or None without a ``metric``.

    A configured metric the run did not log, or a NaN, raises an error naming it (the Optuna
    sweeper then stores the trial as FAIL); returning None or NaN instead would end the search
    with a bare "not float-castable" error, or leave the trial RUNNING in the study.
    """
    if not metric:
        return None
    if metric not in metrics:
        raise KeyError(
            f"optimized_metric={metric!r} was not logged by this run; it logged: "
            f"{', '.join(sorted(metrics)) or 'nothing'}"
        )
    value = float(metrics[metric])
    if math.isnan(value):
        raise FloatingPointError(f"optimized_metric={metric!r} is NaN (did training diverge?)")
    return value


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    from medcls.workflows.train import run_train

    metrics = run_guarded(run_train, cfg)
    return optimized_value(metrics, cfg.get("optimized_metric"))


if __name__ == "__main__":
    main()

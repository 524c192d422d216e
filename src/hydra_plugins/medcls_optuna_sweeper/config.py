"""``hydra/sweeper=medcls_optuna``: the sweeper's settings (``hydra.sweeper.*``)."""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore


@dataclass
class MedclsOptunaSweeperConf:
    _target_: str = "hydra_plugins.medcls_optuna_sweeper.sweeper.MedclsOptunaSweeper"
    # tpe | cmaes | random | grid; seeded with seed + the trials the study already holds
    sampler: str = "tpe"
    seed: Any = None
    sampler_kwargs: dict[str, Any] = field(default_factory=dict)
    # median | hyperband | successive_halving | none: jobs report their monitored val metric
    # per epoch to their trial and stop when it is pruned
    pruner: str = "none"
    pruner_kwargs: dict[str, Any] = field(default_factory=dict)
    direction: str = "maximize"
    storage: Any = None  # e.g. sqlite:///optuna.db (a relative path: from the launch directory)
    study_name: Any = None
    n_trials: int = 20
    n_jobs: int = 1  # trials per batch, launched together by hydra/launcher
    max_failure_rate: float = 0.0  # failed trials per batch before the session stops
    # seconds between the heartbeats of each running trial (with a storage; null: none, and
    # trials a killed session leaves RUNNING stay so); a resumed session stores as FAIL and runs
    # again the trials whose heartbeat stopped grace_period seconds ago (null: 2 intervals), and
    # leaves those of a session still running alone
    heartbeat_interval: Any = 60
    grace_period: Any = None
    params: dict[str, Any] = field(default_factory=dict)  # the search space


ConfigStore.instance().store(
    group="hydra/sweeper", name="medcls_optuna", node=MedclsOptunaSweeperConf, provider="medcls"
)

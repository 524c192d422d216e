"""A training job as an Optuna trial (``hparams_search=optuna``): what it reports, how it is tagged.

The sweeper (``hydra_plugins/medcls_optuna_sweeper``) adds ``++optuna.trial``, ``++optuna.study``
and ``++optuna.storage`` to each job's overrides; the pruner is the sweeper's setting
(``hydra.sweeper.pruner``), read from the job's own Hydra config.
"""

from __future__ import annotations

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from medcls.search.pruning import OptunaPruning
from medcls.search.study import TRIAL_KEY, create_pruner, job_trial


def _identity(cfg: DictConfig):
    node = cfg.get(TRIAL_KEY)
    return node if node and node.get("trial") is not None and node.get("storage") else None


def pruning_callback(cfg: DictConfig) -> OptunaPruning | None:
    """The callback reporting ``cfg.monitor`` per epoch to this job's trial (None outside a
    search, or for a search without storage)."""
    node = _identity(cfg)
    if node is None:
        return None
    sweeper = HydraConfig.get().sweeper if HydraConfig.initialized() else {}
    pruner = create_pruner(
        str(sweeper.get("pruner", "none")), **dict(sweeper.get("pruner_kwargs") or {})
    )
    trial = job_trial(str(node.storage), str(node.study), int(node.trial), pruner)
    return OptunaPruning(trial, str(cfg.monitor))


def trial_tags(cfg: DictConfig) -> dict[str, str]:
    """MLflow tags naming the study and the trial number (empty outside a search)."""
    node = cfg.get(TRIAL_KEY)
    if not node or node.get("trial") is None:
        return {}
    return {"optuna.study": str(node.get("study")), "optuna.trial": str(node.trial)}

"""An Optuna search as a Hydra sweeper, on Optuna's ask-and-tell API.

Each batch of ``n_jobs`` trials is asked from the study, launched by ``hydra/launcher`` (basic,
joblib, submitit, ...) with the suggested values as overrides plus the trial's identity
(``++optuna.trial``, ``++optuna.study``, ``++optuna.storage``: the job reports its epochs there
and stops when pruned, ``medcls.search.trial``), then told: COMPLETE with the job's
return value, PRUNED when the job was pruned, FAIL when it raised. Rerunning the same command
resumes the stored study; the trials a killed session left RUNNING (their heartbeat stopped) are
stored as FAIL and run again first. The session's result goes to
``<sweep dir>/optimization_results.yaml``.
"""

import logging
import os
from typing import Any

from hydra.core.plugins import Plugins
from hydra.core.utils import JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


class MedclsOptunaSweeper(Sweeper):
    """Settings: ``config.MedclsOptunaSweeperConf`` (``hydra.sweeper.*``)."""

    def __init__(
        self,
        sampler: str = "tpe",
        seed: int | None = None,
        sampler_kwargs: dict | None = None,
        pruner: str = "none",
        pruner_kwargs: dict | None = None,
        direction: str = "maximize",
        storage: str | None = None,
        study_name: str | None = None,
        n_trials: int = 20,
        n_jobs: int = 1,
        max_failure_rate: float = 0.0,
        params: dict | None = None,
        heartbeat_interval: int | None = 60,
        grace_period: int | None = None,
    ) -> None:
        self.sampler, self.seed = str(sampler), seed
        self.sampler_kwargs = dict(sampler_kwargs or {})
        self.pruner, self.pruner_kwargs = str(pruner), dict(pruner_kwargs or {})
        self.direction, self.storage, self.study_name = str(direction), storage, study_name
        self.n_trials, self.n_jobs = int(n_trials), max(1, int(n_jobs))
        self.max_failure_rate = float(max_failure_rate)
        self.params = dict(params or {})
        self.heartbeat_interval, self.grace_period = heartbeat_interval, grace_period

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )

    def sweep(self, arguments: list[str]) -> None:
        from medcls.search import study as search

        lines = [f"{k}={v}" for k, v in self.params.items()] + list(arguments)
        distributions, fixed = search.search_space(lines)
        study, storage, url = self._open_study(distributions)
        n_trials = self.n_trials
        if self.sampler == "grid":  # each combination once, across sessions
            n_trials = min(n_trials, search.grid_left(distributions, study.get_trials()))
        log.info("%d trial(s) to run in this session", n_trials)
        job = 0
        while n_trials > 0:
            batch = min(n_trials, self.n_jobs)
            trials = [search.ask(study, storage) for _ in range(batch)]
            overrides = [
                (*search.trial_overrides(t, distributions, fixed),
                 *search.identity_overrides(t.number, study.study_name, url))
                for t in trials
            ]  # fmt: skip
            with search.heartbeat(study, storage, [t.number for t in trials]):
                returns = self.launcher.launch(overrides, initial_job_idx=job)
            job += len(returns)
            try:
                failed = [
                    r for t, r in zip(trials, returns, strict=True) if not self._tell(study, t, r)
                ]
            except search.SearchSpaceError:  # a job that returns no number: every one will
                self._save(study)
                raise
            n_trials -= batch
            if failed and len(failed) / len(returns) > self.max_failure_rate:
                self._save(study)
                failed[0].return_value  # noqa: B018  (raises the job's own error)
        self._save(study)

    def _open_study(self, distributions: dict):
        """The stored study (created or resumed) with this session's sampler, after the trials
        a killed session left RUNNING were marked FAIL and queued again; its storage and URL."""
        import optuna

        from medcls.search import study as search

        url = search.absolute_storage(self.storage)
        search.check_pruning_storage(self.pruner, url)
        storage = search.open_storage(url, self.heartbeat_interval, self.grace_period)
        study = optuna.create_study(
            study_name=self.study_name,
            storage=storage,
            direction=self.direction,
            load_if_exists=True,
            pruner=search.create_pruner(self.pruner, **self.pruner_kwargs),
        )
        failed, live = search.fail_stale_trials(study, storage)
        if failed:
            log.warning(
                "trial(s) %s: left RUNNING by a killed session, now FAIL; run again first",
                failed,
            )
        if live:
            log.info("trial(s) %s: RUNNING in another session, left to it", live)
        stored = study.get_trials(deepcopy=False)
        # a grid's points are numbered in the order its seed shuffles them: the same seed in
        # every session, or a resumed session would repeat points and skip others
        seed = (
            (self.seed or 0)
            if self.sampler == "grid"
            else search.session_seed(self.seed, len(stored))
        )
        study.sampler = search.create_sampler(
            self.sampler, seed, distributions, **self.sampler_kwargs
        )
        log.info(
            "Optuna study %r in %s: %d trial(s) stored; sampler %s (seed %s), pruner %s",
            study.study_name, url, len(stored), self.sampler, seed, self.pruner,
        )  # fmt: skip
        return study, storage, url

    def _tell(self, study, trial, ret) -> bool:
        """Record one finished job in its trial; False when the job failed."""
        from optuna.trial import TrialState

        from medcls.search import study as search

        if ret.status == JobStatus.FAILED:
            search.tell(study, trial, state=TrialState.FAIL)
            log.warning("trial %d failed: %s", trial.number, ret._return_value)
            return False
        frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number)
        if "pruned_at_epoch" in frozen.user_attrs:  # set by the job (medcls.callbacks)
            search.tell(study, trial, state=TrialState.PRUNED)
            log.info(
                "trial %d pruned at epoch %s", trial.number, frozen.user_attrs["pruned_at_epoch"]
            )
            return True
        try:
            value = float(ret.return_value)
        except (TypeError, ValueError):
            search.tell(study, trial, state=TrialState.FAIL)
            raise search.SearchSpaceError(
                f"trial {trial.number} returned {ret.return_value!r}, not a number, and so would "
                "every trial: set optimized_metric to a metric the run logs (e.g. "
                "optimized_metric=val/balanced_accuracy); the trial is stored as FAIL"
            ) from None
        search.tell(study, trial, value)
        return True

    def _save(self, study) -> None:
        """``optimization_results.yaml``: the best trial so far and the trials by state."""
        from optuna.trial import TrialState

        trials = study.get_trials(deepcopy=False)
        counts = {s.name: sum(t.state == s for t in trials) for s in TrialState}
        out: dict[str, Any] = {
            "name": "optuna",
            "study_name": study.study_name,
            "trials": {k: v for k, v in counts.items() if v},
        }
        if counts["COMPLETE"]:
            best = study.best_trial
            out.update(best_params=dict(best.params), best_value=float(best.value))
            out["best_trial"] = best.number
            log.info(
                "Best value %s, parameters %s (trial %d)", best.value, best.params, best.number
            )
        sweep_dir = self.config.hydra.sweep.dir
        os.makedirs(sweep_dir, exist_ok=True)
        OmegaConf.save(OmegaConf.create(out), os.path.join(sweep_dir, "optimization_results.yaml"))

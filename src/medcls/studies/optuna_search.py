"""A TPE sampler whose seed moves on when an Optuna search resumes.

``medcls-train hparams_search=optuna`` keeps its study in SQLite; rerunning the command loads
that study and asks for ``n_trials`` more. hydra-optuna-sweeper builds a new sampler for every
session, so a plain ``TPESampler(seed=42)`` would replay its random stream: the resumed
session's start-up trials would repeat, one for one, the parameters the first session already
tried. :class:`ResumableTPESampler` seeds its TPE sampler with ``seed + number of trials the
study already holds`` when the session asks for its first trial. A new study therefore gets
exactly ``TPESampler(seed)`` (reproducible), a resumed one new suggestions, and the resumed
session is itself reproducible given what the storage holds.

The trial count is read from the study Optuna hands to every sampler call (the first trial's
number), not from ``storage`` + ``study_name``: the sweeper's sampler node is a structured
config (``TPESamplerConfig``) that refuses extra keys, and ``${hydra:...}`` does not resolve
while Hydra instantiates the sweeper. This way only ``_target_`` changes, every
``TPESamplerConfig`` field still applies, and any storage works (no storage: offset 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, TPESampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState


def session_seed(seed: int | None, stored_trials: int) -> int | None:
    """The seed of a session that starts with ``stored_trials`` trials in its study (None
    stays None: an unseeded search is random anyway)."""
    return None if seed is None else seed + stored_trials


class ResumableTPESampler(BaseSampler):
    """``TPESampler(seed=session_seed(seed, n), **tpe_kwargs)``, created when the first trial
    (number ``n``) is asked; every sampler call is delegated to it."""

    def __init__(self, seed: int | None = None, **tpe_kwargs: Any) -> None:
        self._seed = seed
        self._tpe_kwargs = tpe_kwargs
        self._sampler: TPESampler | None = None
        self.session_seed: int | None = None  # known once the first trial is asked

    def _tpe(self, trial: FrozenTrial) -> TPESampler:
        if self._sampler is None:
            self.session_seed = session_seed(self._seed, trial.number)
            self._sampler = TPESampler(seed=self.session_seed, **self._tpe_kwargs)
        return self._sampler

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return self._tpe(trial).infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self._tpe(trial).sample_relative(study, trial, search_space)

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self._tpe(trial).sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._tpe(trial).after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        if self._sampler is not None:
            self._sampler.reseed_rng()
        else:  # not seeded yet: it will be, randomly
            self._seed = None

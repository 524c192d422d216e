"""The pieces of ``hparams_search=optuna``: the search space, samplers, pruners, trial overrides.

medcls's Hydra sweeper (``hydra_plugins/medcls_optuna_sweeper``) drives Optuna's ask-and-tell
API with these; the job side of pruning is :class:`medcls.callbacks.OptunaPruning`.

- **Search space** in Hydra's sweep syntax, as ``hydra.sweeper.params``:
  ``interval(a, b)`` (uniform float), ``tag(log, interval(a, b))`` (log-uniform),
  ``tag(int, interval(a, b))`` / ``tag(int, log, interval(a, b))`` (integers), ``range(a, b[, step])`` (ints or a float step), ``choice(x, y, ...)``
  (categorical); a plain value is fixed in every trial.
- **Samplers** ``tpe`` (default), ``cmaes``, ``random``, ``grid`` (every combination of the
  choices and ranges, each once). A resumed study's sampler is seeded with ``seed + trials
  stored`` (:func:`session_seed`): a new study is reproducible, a resumed session does not
  replay the first session's suggestions. The grid sampler is seeded with ``seed`` itself in
  every session: it numbers the grid's points in the order its seed shuffles them, and a
  stored trial's number would name another point under another seed.
- **Pruners** ``median``, ``hyperband``, ``successive_halving``, ``none``: each job reports its
  monitored validation metric per epoch to its trial and stops when the pruner says so.
- **Killed sessions**: the sweeper records a heartbeat of each trial it runs (Optuna's RDB
  heartbeat). A resumed session marks FAIL the trials whose heartbeat stopped more than
  ``grace_period`` seconds ago and queues their parameters again (Optuna's
  ``RetryHeartbeatStaleTrialCallback``): the grid points and suggestions a killed session left
  RUNNING are run, while a session still running beside it keeps its trials.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import inspect
import logging
import os
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import (
    ChoiceSweep,
    IntervalSweep,
    Override,
    RangeSweep,
    Transformer,
)
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.trial import TrialState

from medcls.errors import SearchSpaceError

log = logging.getLogger(__name__)

SAMPLERS = ("tpe", "cmaes", "random", "grid")
PRUNERS = ("median", "hyperband", "successive_halving", "none")
# the job reads these overrides (set by the sweeper on every trial's command line)
TRIAL_KEY = "optuna"
# system attribute of the trials whose session records heartbeats (see ask)
HEARTBEAT_ATTR = "medcls_heartbeat"


def session_seed(seed: int | None, stored_trials: int) -> int | None:
    """The seed of a session that starts with ``stored_trials`` trials in its study (None
    stays None: an unseeded search is random anyway)."""
    return None if seed is None else seed + stored_trials


# ------------------------------------------------------------------------------ search space
def _distribution(override: Override) -> BaseDistribution | Any:
    """One ``key=value`` override as a distribution, or its fixed value (a string)."""
    if not override.is_sweep_override():
        return override.get_value_element_as_str()
    value = override.value()
    key = override.get_key_element()
    if isinstance(value, ChoiceSweep) or (isinstance(value, RangeSweep) and value.shuffle):
        # numbers stay numbers; strings keep Hydra's escaping (they go back on a command line)
        return CategoricalDistribution(
            list(override.sweep_iterator(transformer=Transformer.encode))
        )
    if isinstance(value, RangeSweep):
        start, stop, step = value.start, value.stop, value.step
        if any(isinstance(v, float) for v in (start, stop, step)):
            # range() excludes its stop; Optuna's high is inclusive
            n = int(round((stop - start) / step))
            return FloatDistribution(start, start + (n - 1) * step, step=step)
        return IntDistribution(int(start), int(stop) - int(step), step=int(step))
    if isinstance(value, IntervalSweep):
        log = "log" in value.tags
        if "int" in value.tags:  # Hydra's interval() is always float
            return IntDistribution(int(value.start), int(value.end), log=log)
        return FloatDistribution(float(value.start), float(value.end), log=log)
    raise SearchSpaceError(
        f"hydra.sweeper.params.{key}={override.input_line}: use interval(a, b), "
        "tag(log, interval(a, b)), range(a, b[, step]), choice(x, y, ...) or a fixed value"
    )


def search_space(lines: list[str]) -> tuple[dict[str, BaseDistribution], dict[str, str]]:
    """``key=value`` lines (``hydra.sweeper.params``, then the command line's arguments) →
    (distributions, fixed values)."""
    distributions, fixed = {}, {}
    for override in OverridesParser.create().parse_overrides(lines):
        key, value = override.get_key_element(), _distribution(override)
        distributions.pop(key, None), fixed.pop(key, None)  # a later line wins
        target = distributions if isinstance(value, BaseDistribution) else fixed
        target[key] = value
    return distributions, fixed


def grid_choices(name: str, dist: BaseDistribution) -> list:
    """Every value of a discrete distribution (``sampler=grid``)."""
    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    if isinstance(dist, IntDistribution) and not dist.log:
        return list(range(dist.low, dist.high + 1, dist.step))
    if isinstance(dist, FloatDistribution) and dist.step is not None:
        n = int(round((dist.high - dist.low) / dist.step)) + 1
        return [dist.low + i * dist.step for i in range(n)]
    raise SearchSpaceError(
        f"hydra.sweeper.params.{name}: sampler=grid needs choice(...) or range(...), "
        "not an interval"
    )


def suggest(trial: optuna.Trial, name: str, dist: BaseDistribution) -> Any:
    """``trial.suggest_*`` for one distribution (the public API, so every sampler applies)."""
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)


def trial_overrides(
    trial: optuna.Trial, distributions: dict[str, BaseDistribution], fixed: dict[str, str]
) -> list[str]:
    """A trial's command-line overrides: the suggested values, then the fixed ones."""
    values = {name: suggest(trial, name, d) for name, d in distributions.items()}
    return [f"{k}={v}" for k, v in {**values, **fixed}.items()]


def identity_overrides(number: int, study_name: str, storage: str | None) -> list[str]:
    """Where a job reports its epochs: trial ``number`` of ``study_name`` in ``storage``
    (``cfg.optuna``; read by :func:`job_trial`)."""
    out = [f"++{TRIAL_KEY}.trial={number}", f"++{TRIAL_KEY}.study={_quoted(study_name)}"]
    return out + ([f"++{TRIAL_KEY}.storage={_quoted(storage)}"] if storage else [])


def _quoted(text: str) -> str:
    # Hydra's quoted values: a backslash escapes only a quote (or backslashes before one)
    return "'" + text.replace("'", "\\'") + "'"


def absolute_storage(storage: str | None) -> str | None:
    """A relative SQLite path (``sqlite:///optuna.db``) made absolute, so that a job whose
    working directory differs writes to the same file."""
    prefix = "sqlite:///"
    if storage and storage.startswith(prefix) and not storage.startswith(prefix + "/"):
        path = storage[len(prefix) :]
        if path and path != ":memory:":
            return prefix + os.path.abspath(path)
    return storage


def grid_left(distributions: dict[str, BaseDistribution], stored: list) -> int:
    """Combinations of a grid still to run: those no ``stored`` trial has finished or is
    running, including those queued again (WAITING) after a killed session."""
    size = 1
    for name, dist in distributions.items():
        size *= len(grid_choices(name, dist))
    # a killed session's trials (FAIL, each queued again as a WAITING copy) take no point
    requeued = {n for t in stored for n in t.system_attrs.get("retry_history", ())}
    tried = {
        tuple(sorted(t.params.items()))
        for t in stored
        if t.params and t.state != TrialState.WAITING and t.number not in requeued
    }
    return max(0, size - len(tried))


def tell(study: optuna.Study, trial: optuna.Trial, *args, **kwargs) -> None:
    """``study.tell``, except that a grid sampler's "the grid is done" (it calls ``study.stop()``,
    which Optuna only allows inside ``optimize``) is not an error between batches, nor is a
    trial another session already stored as FAIL (its heartbeat came late: its parameters are
    queued again, :func:`fail_stale_trials`)."""
    try:
        study.tell(trial, *args, skip_if_finished=True, **kwargs)
    except RuntimeError as e:
        if "Study.stop" not in str(e):
            raise


# --------------------------------------------------------------------------- killed sessions
def open_storage(
    url: str | None, heartbeat_interval: int | None = 60, grace_period: int | None = None
) -> optuna.storages.RDBStorage | None:
    """The study's storage (None: in memory), keeping trial heartbeats every
    ``heartbeat_interval`` seconds (None: none): a trial whose heartbeat stopped more than
    ``grace_period`` seconds ago (default: two intervals) is stale (:func:`fail_stale_trials`)."""
    if url is None:
        return None
    if not heartbeat_interval:
        return optuna.storages.RDBStorage(url)
    # optuna 4.9 renamed failed_trial_callback (still accepted, with a warning)
    name = "heartbeat_stale_trial_callback"
    if name not in inspect.signature(optuna.storages.RDBStorage).parameters:
        name = "failed_trial_callback"
    callback = {name: _requeue}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url,
            heartbeat_interval=int(heartbeat_interval),
            grace_period=int(grace_period) if grace_period else None,
            **callback,
        )


def _requeue(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """A stale trial's parameters queued again as a WAITING trial (Optuna's
    RetryHeartbeatStaleTrialCallback: it keeps the grid sampler's point), without the killed job's
    user attributes (a ``pruned_at_epoch`` would make the sweeper store the new run as PRUNED)."""
    trial = copy.copy(trial)
    trial.user_attrs = {}
    # the callback's name from optuna 4.9 (the older one is deprecated there)
    retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        (retry or optuna.storages.RetryFailedTrialCallback)()(study, trial)


def _trial_id(storage: optuna.storages.RDBStorage, study: optuna.Study, number: int) -> int:
    study_id = storage.get_study_id_from_name(study.study_name)
    return storage.get_trial_id_from_study_id_trial_number(study_id, number)


def ask(study: optuna.Study, storage: optuna.storages.RDBStorage | None) -> optuna.Trial:
    """``study.ask`` (a queued trial first), with the trial's first heartbeat recorded at once
    where the storage keeps them: a session killed from here on leaves a trial that goes
    stale, not one RUNNING for ever."""
    with warnings.catch_warnings():  # "supposed to be used with Study.optimize": the sweeper
        warnings.filterwarnings("ignore", message="Heartbeat of storage")  # keeps them itself
        trial = study.ask()
    if storage is not None and storage.get_heartbeat_interval():
        trial_id = _trial_id(storage, study, trial.number)
        storage.record_heartbeat(trial_id)
        storage.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, True)
    return trial


@contextlib.contextmanager
def heartbeat(
    study: optuna.Study, storage: optuna.storages.RDBStorage | None, numbers: list[int]
) -> Iterator[None]:
    """While the block runs (a batch's jobs), record the heartbeat of trials ``numbers`` every
    heartbeat interval, so that another session does not take them for a killed one's."""
    interval = storage.get_heartbeat_interval() if storage is not None else None
    if not interval:
        yield
        return
    ids = [_trial_id(storage, study, n) for n in numbers]
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            for trial_id in ids:
                try:
                    storage.record_heartbeat(trial_id)
                except Exception as e:  # e.g. SQLite busy: the next beat may pass
                    log.warning("heartbeat of trial id %d not recorded: %s", trial_id, e)

    thread = threading.Thread(target=beat, name="optuna-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def fail_stale_trials(
    study: optuna.Study, storage: optuna.storages.RDBStorage | None
) -> tuple[list[int], list[int]]:
    """Mark FAIL the trials that earlier, killed sessions left RUNNING and queue their
    parameters again (:func:`_requeue`): those whose heartbeat stopped more than the grace period
    ago (Optuna's check), and those without heartbeats (from a session of an earlier medcls)
    that started longer ago. A trial with a recent heartbeat belongs to a session still
    running: it is left alone. Returns (numbers failed, numbers left RUNNING)."""
    if storage is None or not storage.get_heartbeat_interval():
        return [], []
    running = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    grace = storage.grace_period or 2 * storage.get_heartbeat_interval()
    since = datetime.datetime.now() - datetime.timedelta(seconds=grace)
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if HEARTBEAT_ATTR in t.system_attrs or not t.datetime_start or t.datetime_start > since:
            continue
        trial_id = _trial_id(storage, study, t.number)
        with contextlib.suppress(UpdateFinishedTrialError):  # another session was quicker
            if storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                _requeue(study, storage.get_trial(trial_id))
    left = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    return sorted(running - left), sorted(running & left)


def job_trial(storage: str, study_name: str, number: int, pruner: optuna.pruners.BasePruner):
    """In a job: its trial (number ``number``) of the stored study, judged by ``pruner``."""
    store = optuna.storages.get_storage(storage)
    study = optuna.load_study(study_name=study_name, storage=store, pruner=pruner)
    study_id = store.get_study_id_from_name(study_name)
    trial_id = store.get_trial_id_from_study_id_trial_number(study_id, number)
    return optuna.trial.Trial(study, trial_id)


# ------------------------------------------------------------------------- samplers, pruners
def create_sampler(
    name: str,
    seed: int | None,
    distributions: dict[str, BaseDistribution] | None = None,
    **kwargs: Any,
) -> optuna.samplers.BaseSampler:
    """``tpe`` | ``cmaes`` | ``random`` | ``grid`` (``distributions``: the grid's space)."""
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, **kwargs)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, **kwargs)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        grid = {k: grid_choices(k, d) for k, d in (distributions or {}).items()}
        return optuna.samplers.GridSampler(grid, seed=seed)
    raise SearchSpaceError(f"hydra.sweeper.sampler={name!r}: use one of {', '.join(SAMPLERS)}")


def check_pruning_storage(pruner: str | None, storage: str | None) -> None:
    """A pruner judges the epochs each job reports to its trial in the study's storage: without
    one (an in-memory study) the jobs could not report, and nothing would ever be pruned."""
    if pruner not in (None, "none", "null") and not storage:
        raise SearchSpaceError(
            f"hydra.sweeper.pruner={pruner} needs hydra.sweeper.storage (e.g. "
            "sqlite:///optuna.db): each job reports its epochs to its trial there; or use "
            "hydra.sweeper.pruner=none"
        )


def create_pruner(name: str | None, **kwargs: Any) -> optuna.pruners.BasePruner:
    """``median`` (a trial whose best value so far is below the median of earlier trials at the
    same epoch; defaults: 2 finished trials first, never before the 2nd epoch), ``hyperband``,
    ``successive_halving`` or ``none``."""
    if name in (None, "none", "null"):
        return optuna.pruners.NopPruner()
    if name == "median":
        kw = {"n_startup_trials": 2, "n_warmup_steps": 1, **kwargs}
        return optuna.pruners.MedianPruner(**kw)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(**{"min_resource": 1, **kwargs})
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(**{"min_resource": 1, **kwargs})
    raise SearchSpaceError(f"hydra.sweeper.pruner={name!r}: use one of {', '.join(PRUNERS)}")

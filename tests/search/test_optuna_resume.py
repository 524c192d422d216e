"""A resumed grid search runs every grid point once: after a clean stop, and after a killed
session that left trials RUNNING (their heartbeat stopped: stored as FAIL and run again), while
the trials of a session still running are left to it. The sweeper runs in process with a fake
launcher (as in test_optuna_pieces.py)."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import optuna
import pytest
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf
from optuna.trial import TrialState

from hydra_plugins.medcls_optuna_sweeper.sweeper import MedclsOptunaSweeper
from medcls.search import study as search

optuna.logging.set_verbosity(optuna.logging.WARNING)
GRID = {"a": "choice(x, y)", "b": "range(1, 4)"}
GRID_LINES = [f"{k}={v}" for k, v in GRID.items()]
POINTS = {(a, b) for a, b in itertools.product(["x", "y"], [1, 2, 3])}  # 6


class _Killed(Exception):
    """The session dies while its jobs run."""


class _Launcher:
    """Every job returns 0.5 (after ``job_s`` seconds); with ``kill``, the session dies after the
    first batch is asked (its trials stay RUNNING), the first job having marked its trial pruned."""

    def __init__(self, url: str, kill: bool = False, job_s: float = 0.0, during=None) -> None:
        self.url, self.kill, self.job_s, self.during = url, kill, job_s, during
        self.launched: list = []

    def launch(self, overrides, initial_job_idx):
        self.launched += overrides
        if self.kill:
            number = int(next(o for o in overrides[0] if "optuna.trial=" in o).split("=")[1])
            job = search.job_trial(self.url, "g", number, optuna.pruners.NopPruner())
            job.set_user_attr("pruned_at_epoch", 1)
            raise _Killed
        time.sleep(self.job_s)
        if self.during is not None:
            self.during()
        return [JobReturn(status=JobStatus.COMPLETED, _return_value=0.5) for _ in overrides]


def _session(tmp_path: Path, launcher: _Launcher, **kwargs) -> MedclsOptunaSweeper:
    sweeper = MedclsOptunaSweeper(
        sampler="grid", seed=0, study_name="g", storage=launcher.url, params=GRID, **kwargs
    )
    sweeper.config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
    sweeper.launcher = launcher
    sweeper.sweep([])
    return sweeper


def _trials(url: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name="g", storage=url).get_trials()


def _complete_points(url: str) -> list[tuple]:
    return [(t.params["a"], t.params["b"]) for t in _trials(url) if t.state == TrialState.COMPLETE]


def test_a_resumed_grid_repeats_no_point_and_skips_none(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/o.db"
    for _ in range(3):  # three sessions of two trials each
        _session(tmp_path, _Launcher(url), n_trials=2)
    assert sorted(_complete_points(url)) == sorted(POINTS)  # each point once
    launcher = _Launcher(url)
    _session(tmp_path, launcher, n_trials=2)  # the grid is done
    assert launcher.launched == []


def test_a_resumed_grid_runs_the_points_a_killed_session_left_running(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/o.db"
    beats = {"heartbeat_interval": 1, "grace_period": 1}
    with pytest.raises(_Killed):
        _session(tmp_path, _Launcher(url, kill=True), n_trials=6, n_jobs=3, **beats)
    # and a trial of a session from before medcls kept heartbeats, killed as well
    space, _ = search.search_space(GRID_LINES)
    legacy = optuna.load_study(study_name="g", storage=url)
    legacy.sampler = search.create_sampler("grid", 0, space)
    search.trial_overrides(legacy.ask(), space, {})
    killed = [t.number for t in _trials(url)]
    assert len(killed) == 4 and all(t.state == TrialState.RUNNING for t in _trials(url))
    time.sleep(2.2)  # > grace_period, on SQLite's one-second clock
    launcher = _Launcher(url)
    _session(tmp_path, launcher, n_trials=20, **beats)
    trials = {t.number: t for t in _trials(url)}
    assert [trials[n].state for n in killed] == [TrialState.FAIL] * 4
    done = _complete_points(url)
    assert sorted(done) == sorted(POINTS)  # every grid point COMPLETE exactly once
    assert len(launcher.launched) == 6  # the 4 killed points first, then the 2 never asked
    again = [t for t in trials.values() if "failed_trial" in t.system_attrs]
    assert sorted(t.system_attrs["failed_trial"] for t in again) == killed
    assert all(t.state == TrialState.COMPLETE for t in again)  # not PRUNED: a new run
    assert all(t.number > max(killed) for t in again)


def test_a_session_still_running_keeps_its_trials(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/o.db"
    with pytest.raises(_Killed):  # as far as the storage can tell: running, heartbeats fresh
        _session(tmp_path, _Launcher(url, kill=True), n_trials=3, n_jobs=3)
    _session(tmp_path, _Launcher(url), n_trials=20)  # the default grace period: 120 s
    trials = _trials(url)
    assert [t.state for t in trials[:3]] == [TrialState.RUNNING] * 3
    running = {(t.params["a"], t.params["b"]) for t in trials[:3]}
    assert sorted(_complete_points(url)) == sorted(POINTS - running)  # the other three


def test_the_heartbeat_keeps_a_long_job_from_looking_killed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/o.db"
    failed: list = []

    def another_session() -> None:  # sees the running trial after > grace_period seconds
        storage = search.open_storage(url, heartbeat_interval=1, grace_period=1)
        study = optuna.load_study(study_name="g", storage=storage)
        failed.extend(search.fail_stale_trials(study, storage)[0])

    launcher = _Launcher(url, job_s=3.2, during=another_session)
    _session(tmp_path, launcher, n_trials=1, heartbeat_interval=1, grace_period=1)
    assert failed == [] and [t.state for t in _trials(url)] == [TrialState.COMPLETE]

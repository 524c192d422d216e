"""The pieces of ``hparams_search=optuna`` in process: the search-space syntax, the samplers and
their resumed seeds, the pruners, a job's trial in the stored study, the composed config."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from optuna.distributions import FloatDistribution, IntDistribution

from medcls.config import CONFIG_DIR
from medcls.search import study as search

optuna.logging.set_verbosity(optuna.logging.WARNING)
LOSSES = ["ce", "label_smoothing", "class_weighted", "focal"]
SPACE = [
    "optimizer.lr=tag(log, interval(1e-4, 1e-2))",
    "loss=choice(ce, label_smoothing, class_weighted, focal)",
]


# ------------------------------------------------------------------------------ search space
def test_search_space_syntax() -> None:
    dists, fixed = search.search_space(
        [
            *SPACE,
            "optimizer.weight_decay=interval(0.0, 0.1)",
            "data.batch_size=tag(int, interval(8, 64))",
            "model.depth=tag(int, log, interval(2, 32))",
            "trainer.max_epochs=range(2, 10, 2)",
            "eval.tau=range(0.5, 2.0, 0.5)",
            "data.image_size=64",
            "loss=ce",  # a later line wins: the command line's over the config's
        ]
    )
    assert dists == {
        "optimizer.lr": FloatDistribution(1e-4, 1e-2, log=True),
        "optimizer.weight_decay": FloatDistribution(0.0, 0.1),
        "data.batch_size": IntDistribution(8, 64),
        "model.depth": IntDistribution(2, 32, log=True),
        "trainer.max_epochs": IntDistribution(2, 8, step=2),  # range() excludes its stop
        "eval.tau": FloatDistribution(0.5, 1.5, step=0.5),
    }
    assert fixed == {"data.image_size": "64", "loss": "ce"}


def test_grid_choices_and_what_is_left() -> None:
    dists, _ = search.search_space(["a=choice(x, y)", "b=range(1, 4)"])
    assert search.grid_choices("b", dists["b"]) == [1, 2, 3]
    assert search.grid_left(dists, []) == 6
    study = optuna.create_study(sampler=search.create_sampler("grid", 0, dists))
    for _ in range(2):
        trial = study.ask()
        search.trial_overrides(trial, dists, {})
        study.tell(trial, 0.0)
    assert search.grid_left(dists, study.get_trials()) == 4
    with pytest.raises(search.SearchSpaceError, match="c: sampler=grid needs choice"):
        search.grid_choices("c", FloatDistribution(0.0, 1.0))


def test_a_grid_search_tries_every_combination_once() -> None:
    dists, _ = search.search_space(["a=choice(x, y)", "b=range(1, 4)"])
    study = optuna.create_study(sampler=search.create_sampler("grid", 0, dists))
    seen = []
    for _ in range(6):
        trial = study.ask()
        seen.append(tuple(search.trial_overrides(trial, dists, {})))
        search.tell(study, trial, 0.0)  # the last one ends the grid: no error
    assert len(set(seen)) == 6


def test_trial_overrides_round_trip_through_hydras_parser() -> None:
    dists, fixed = search.search_space([*SPACE, "data.image_size=64"])
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(0)).ask()
    name = "it's a study\\name"
    lines = [
        *search.trial_overrides(trial, dists, fixed),
        *search.identity_overrides(trial.number, name, "sqlite:////tmp/x/optuna.db"),
    ]
    parsed = {o.key_or_group: o.value() for o in OverridesParser.create().parse_overrides(lines)}
    assert parsed["optimizer.lr"] == pytest.approx(trial.params["optimizer.lr"], rel=1e-12)
    assert parsed["loss"] == trial.params["loss"]
    assert parsed["data.image_size"] == 64
    assert parsed["optuna.trial"] == trial.number
    assert parsed["optuna.study"] == name
    assert parsed["optuna.storage"] == "sqlite:////tmp/x/optuna.db"


def test_relative_sqlite_storage_becomes_absolute(workdir: Path) -> None:
    assert search.absolute_storage("sqlite:///optuna.db") == f"sqlite:///{workdir / 'optuna.db'}"
    assert search.absolute_storage("sqlite:////abs/o.db") == "sqlite:////abs/o.db"
    assert search.absolute_storage("postgresql://h/db") == "postgresql://h/db"
    assert search.absolute_storage(None) is None


def test_bad_entries_name_themselves() -> None:
    with pytest.raises(search.SearchSpaceError, match="sampler='bayes'.*tpe, cmaes, random, grid"):
        search.create_sampler("bayes", 0)
    with pytest.raises(search.SearchSpaceError, match="pruner='early'.*median, hyperband"):
        search.create_pruner("early")


# ----------------------------------------------------------------------- samplers and seeds
def suggest(study: optuna.Study, n: int) -> list[dict]:
    dists, _ = search.search_space(SPACE)
    out = []
    for _ in range(n):
        trial = study.ask()
        search.trial_overrides(trial, dists, {})
        study.tell(trial, math.log10(trial.params["optimizer.lr"]))
        out.append(dict(trial.params))
    return out


def session(storage: str, name: str = "tpe", seed: int | None = 7) -> optuna.Study:
    """A session as the sweeper opens one: load or create, then seed by the stored trials."""
    study = optuna.create_study(study_name="s", storage=storage, load_if_exists=True)
    stored = len(study.get_trials(deepcopy=False))
    study.sampler = search.create_sampler(name, search.session_seed(seed, stored))
    return study


def test_session_seed() -> None:
    assert search.session_seed(42, 0) == 42
    assert search.session_seed(42, 3) == 45
    assert search.session_seed(None, 3) is None


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("tpe", optuna.samplers.TPESampler),
        ("random", optuna.samplers.RandomSampler),
        ("cmaes", optuna.samplers.CmaEsSampler),
    ],
)
def test_samplers(name: str, cls: type) -> None:
    sampler = search.create_sampler(name, 3)
    assert isinstance(sampler, cls)
    a = suggest(optuna.create_study(sampler=search.create_sampler(name, 3)), 3)
    assert a == suggest(optuna.create_study(sampler=search.create_sampler(name, 3)), 3)
    assert a != suggest(optuna.create_study(sampler=search.create_sampler(name, 4)), 3)


def test_resumed_study_offsets_the_seed_by_the_stored_trials(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    first = suggest(session(storage), 2)
    assert first == suggest(optuna.create_study(sampler=optuna.samplers.TPESampler(seed=7)), 2)
    resumed = suggest(session(storage), 2)
    assert not {p["optimizer.lr"] for p in resumed} & {p["optimizer.lr"] for p in first}
    assert len(session(storage).trials) == 4
    # the negative control: a plain seeded TPESampler replays the first session
    replay = optuna.create_study(study_name="s", storage=storage, load_if_exists=True)
    replay.sampler = optuna.samplers.TPESampler(seed=7)
    assert suggest(replay, 2) == first


# ---------------------------------------------------------------------------------- pruners
@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("median", optuna.pruners.MedianPruner),
        ("hyperband", optuna.pruners.HyperbandPruner),
        ("successive_halving", optuna.pruners.SuccessiveHalvingPruner),
        ("none", optuna.pruners.NopPruner),
    ],
)
def test_pruners(name: str, cls: type) -> None:
    assert isinstance(search.create_pruner(name), cls)


def test_a_jobs_trial_reports_to_the_stored_study_and_the_median_prunes_it(tmp_path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    for _ in range(2):  # two finished trials at 0.8 per epoch: the median
        t = study.ask()
        for epoch in range(3):
            t.report(0.8, epoch)
        study.tell(t, 0.8)
    bad, good = study.ask(), study.ask()
    median = search.create_pruner("median")
    # the job's side: its trial found by number in the storage, with the sweeper's pruner
    job_bad = search.job_trial(storage, "s", bad.number, median)
    job_good = search.job_trial(storage, "s", good.number, median)
    job_bad.report(0.3, 0)
    job_good.report(0.3, 0)
    assert not job_bad.should_prune()  # warm-up: never at the first epoch
    job_bad.report(0.4, 1)
    job_good.report(0.9, 1)
    assert job_bad.should_prune()
    assert not job_good.should_prune()  # the control: above the median
    stored = {t.number: t for t in study.get_trials()}
    assert stored[bad.number].intermediate_values == {0: 0.3, 1: 0.4}
    assert not search.job_trial(
        storage, "s", bad.number, search.create_pruner("none")
    ).should_prune()


# ----------------------------------------------------------------------------------- config
def test_optuna_config_composes_to_medcls_sweeper(workdir) -> None:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", ["hparams_search=optuna"], return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("medcls_optuna_sweeper.sweeper.MedclsOptunaSweeper")
    assert cfg.optimized_metric == cfg.monitor == "val/balanced_accuracy"
    assert sweeper.direction == "maximize"
    assert sweeper.storage == "sqlite:///optuna.db"
    assert sweeper.study_name == "medcls-synthetic-resnet18"
    assert sweeper.sampler == "tpe" and sweeper.seed == cfg.seed and sweeper.pruner == "none"
    losses = sweeper.params["loss"]
    for name in LOSSES:
        assert name in losses
        assert (Path(CONFIG_DIR) / "loss" / f"{name}.yaml").is_file()
    dists, _ = search.search_space([f"{k}={v}" for k, v in sweeper.params.items()])
    assert dists["optimizer.lr"] == FloatDistribution(1e-4, 1e-2, log=True)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        minimize = compose(
            "train",
            ["hparams_search=optuna", "monitor=val/loss", "monitor_mode=min"],
            return_hydra_config=True,
        )
    assert minimize.optimized_metric == "val/loss"
    assert minimize.hydra.sweeper.direction == "minimize"


# ------------------------------------------------------------------- the sweeper, no training
class _FakeLauncher:
    """Returns ``values`` in turn as the jobs' results (one per launched job)."""

    def __init__(self, values) -> None:
        self.values, self.launched = list(values), []

    def launch(self, overrides, initial_job_idx):
        from hydra.core.utils import JobReturn, JobStatus

        self.launched += overrides
        return [
            JobReturn(status=JobStatus.COMPLETED, _return_value=self.values.pop(0))
            for _ in overrides
        ]


def _sweeper(tmp_path: Path, values, **kwargs):
    from omegaconf import OmegaConf

    from hydra_plugins.medcls_optuna_sweeper.sweeper import MedclsOptunaSweeper

    sweeper = MedclsOptunaSweeper(
        study_name="s", params={"optimizer.lr": "interval(0.1, 1)"}, **kwargs
    )
    sweeper.config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
    sweeper.launcher = _FakeLauncher(values)
    return sweeper


def test_sweeper_tells_each_value(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path}/o.db"
    sweeper = _sweeper(tmp_path, [0.3, 0.9, 0.5], storage=storage, n_trials=3, seed=0)
    sweeper.sweep([])
    study = optuna.load_study(study_name="s", storage=storage)
    assert [t.value for t in study.trials] == [0.3, 0.9, 0.5]
    assert all(any(o.startswith("optimizer.lr=") for o in ov) for ov in sweeper.launcher.launched)
    results = (tmp_path / "optimization_results.yaml").read_text()
    assert "best_value: 0.9" in results and "best_trial: 1" in results


def test_sweeper_stops_at_a_job_that_returns_no_number(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path}/o.db"
    sweeper = _sweeper(tmp_path, [None, 0.5, 0.5], storage=storage, n_trials=3)
    with pytest.raises(search.SearchSpaceError, match="trial 0 returned None.*optimized_metric"):
        sweeper.sweep([])
    study = optuna.load_study(study_name="s", storage=storage)
    assert [t.state.name for t in study.trials] == ["FAIL"]  # not three FAILs
    assert "FAIL: 1" in (tmp_path / "optimization_results.yaml").read_text()


def test_sweeper_refuses_a_pruner_without_storage(tmp_path: Path) -> None:
    sweeper = _sweeper(tmp_path, [0.5], pruner="median", n_trials=1)
    with pytest.raises(search.SearchSpaceError, match="pruner=median needs hydra.sweeper.storage"):
        sweeper.sweep([])
    assert sweeper.launcher.launched == []
    _sweeper(tmp_path, [0.5], pruner="none", n_trials=1).sweep([])  # in memory is fine unpruned

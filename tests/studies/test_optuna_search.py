"""``hparams_search=optuna``: a search that resumes from its SQLite storage with new suggestions,
trial values that are the kept checkpoint's val metric, failed trials stored as FAIL — end to end —
and the pieces in process: the seed offset of :class:`ResumableTPESampler`, the config, and
the value the train task returns to the sweeper."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from medcls.config import CONFIG_DIR
from medcls.studies.optuna_search import ResumableTPESampler, session_seed
from medcls.train import optimized_value

optuna.logging.set_verbosity(optuna.logging.WARNING)

METRIC = "val/balanced_accuracy"
LOSSES = ["ce", "label_smoothing", "class_weighted", "focal"]


# ------------------------------------------------------------------------ end to end (CLI)
@pytest.fixture(scope="module")
def search(helpers, mlflow_uri, tmp_path_factory) -> dict:
    """Three ``medcls-train hparams_search=optuna hydra.sweeper.n_trials=1`` sessions in one
    directory: a new study, the same command again (resume), then a session whose job fails."""
    work = tmp_path_factory.mktemp("optuna")
    experiment = "optuna-resume"
    args = [
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=1",
        *[o for o in helpers.train_overrides() if o != "logger=none"],
        "data.num_samples=64",
        "trainer.max_epochs=2",  # the kept epoch need not be the last
        "callbacks.early_stopping=null",
        *helpers.mlflow_overrides(mlflow_uri, experiment),
    ]
    procs = [helpers.run_cli("medcls-train", args, cwd=work) for _ in range(2)]
    for proc in procs:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # Fails fast, after the trial was asked: the Trainer refuses the unknown argument.
    failed = helpers.run_cli("medcls-train", [*args, "+trainer.no_such_argument=1"], cwd=work)
    study = optuna.load_study(
        study_name=f"{experiment}-synthetic-test_efficientnet",
        storage=helpers.sqlite_uri(work / "optuna.db"),
    )
    client = MlflowClient(mlflow_uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])
    return {"study": study, "failed": failed, "client": client, "runs": runs, "work": work}


@pytest.mark.slow
def test_resumed_search_holds_the_trials_of_every_session(search) -> None:
    trials = search["study"].get_trials(deepcopy=False)
    assert [t.number for t in trials] == [0, 1, 2]
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAIL]
    assert search["study"].direction == optuna.study.StudyDirection.MAXIMIZE
    for t in trials:
        assert set(t.params) == {"optimizer.lr", "optimizer.weight_decay", "loss"}
        assert 1e-4 <= t.params["optimizer.lr"] <= 1e-2


@pytest.mark.slow
def test_resumed_session_suggests_new_parameters(search) -> None:
    first, resumed, third = (t.params for t in search["study"].get_trials(deepcopy=False))
    # Without the seed offset every session would start with the same suggestion.
    assert resumed["optimizer.lr"] != first["optimizer.lr"]
    assert resumed["optimizer.weight_decay"] != first["optimizer.weight_decay"]
    assert third["optimizer.lr"] not in (first["optimizer.lr"], resumed["optimizer.lr"])


@pytest.mark.slow
def test_trial_values_are_the_val_metric_of_their_mlflow_runs(search) -> None:
    runs = search["runs"]
    parents = [r for r in runs if r.data.tags.get("medcls.role") == "sweep"]
    assert len(parents) == 3  # one parent run per session
    done = [t for t in search["study"].get_trials() if t.state == TrialState.COMPLETE]
    for trial, parent in zip(done, parents[:2], strict=True):
        children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        assert len(children) == 1
        child = children[0]
        assert child.info.status == "FINISHED"
        assert float(child.data.params["optimizer.lr"]) == pytest.approx(
            trial.params["optimizer.lr"], rel=1e-12
        )
        assert f"loss={trial.params['loss']}" in child.data.tags["overrides"].split()
        # the value is the kept (best) checkpoint's monitored score, not the last epoch's
        history = search["client"].get_metric_history(child.info.run_id, METRIC)
        assert len(history) == 2
        assert trial.value == pytest.approx(max(h.value for h in history), abs=1e-6)
        best = torch.load(search["work"] / child.data.tags["best_checkpoint"], weights_only=True)
        (state,) = [
            v
            for k, v in best["callbacks"].items()
            if k.startswith("ModelCheckpoint") and v.get("monitor") == METRIC
        ]
        assert trial.value == pytest.approx(float(state["best_model_score"]), abs=1e-6)


@pytest.mark.slow
def test_a_failed_job_is_a_failed_trial_and_ends_the_session(search) -> None:
    proc = search["failed"]
    assert proc.returncode != 0
    assert "no_such_argument" in proc.stderr
    trial = search["study"].get_trials(deepcopy=False)[2]
    assert trial.state == TrialState.FAIL and trial.value is None
    runs = search["runs"]
    parent = [r for r in runs if r.data.tags.get("medcls.role") == "sweep"][2]
    child = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert [c.info.status for c in child] == ["FAILED"]
    assert "no_such_argument" in child[0].data.tags["medcls.error"]
    assert search["client"].get_run(parent.info.run_id).info.status == "FAILED"


# --------------------------------------------------------------------- the sampler (in process)
def suggest(study: optuna.Study, n: int) -> list[dict]:
    """Ask ``n`` trials (a log-uniform lr, a loss) as the sweeper does: ask, suggest, tell."""
    out = []
    for _ in range(n):
        trial = study.ask()
        params = {
            "lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
            "loss": trial.suggest_categorical("loss", LOSSES),
        }
        study.tell(trial, math.log10(params["lr"]))
        out.append(params)
    return out


def session(storage: str, sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    return optuna.create_study(
        study_name="s", storage=storage, sampler=sampler, load_if_exists=True
    )


def test_session_seed() -> None:
    assert session_seed(42, 0) == 42
    assert session_seed(42, 3) == 45
    assert session_seed(None, 3) is None


def test_new_study_gets_exactly_the_seeded_tpe_suggestions() -> None:
    sampler = ResumableTPESampler(seed=7)
    ours = suggest(optuna.create_study(sampler=sampler), 3)
    assert sampler.session_seed == 7
    assert ours == suggest(optuna.create_study(sampler=optuna.samplers.TPESampler(seed=7)), 3)
    again = suggest(optuna.create_study(sampler=ResumableTPESampler(seed=7)), 3)
    assert again == ours  # reproducible


def test_resumed_study_offsets_the_seed_by_the_stored_trials(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    first = suggest(session(storage, ResumableTPESampler(seed=7)), 2)

    sampler = ResumableTPESampler(seed=7)
    resumed = suggest(session(storage, sampler), 2)
    assert sampler.session_seed == 9
    assert not {p["lr"] for p in resumed} & {p["lr"] for p in first}
    assert len(session(storage, sampler).trials) == 4

    # The problem it solves: a plain seeded TPESampler replays the first session.
    replay = suggest(session(storage, optuna.samplers.TPESampler(seed=7)), 2)
    assert replay == first


def test_resumed_sessions_are_reproducible(tmp_path: Path) -> None:
    """Two copies of one stored state, resumed alike, continue alike."""
    outs = []
    for name in ("a", "b"):
        storage = f"sqlite:///{tmp_path / name}.db"
        suggest(session(storage, ResumableTPESampler(seed=3)), 1)
        outs.append(suggest(session(storage, ResumableTPESampler(seed=3)), 2))
    assert outs[0] == outs[1]


def test_unseeded_and_reseeded_samplers_stay_unseeded() -> None:
    sampler = ResumableTPESampler(seed=None)
    suggest(optuna.create_study(sampler=sampler), 1)
    assert sampler.session_seed is None
    sampler = ResumableTPESampler(seed=5)
    sampler.reseed_rng()  # before the first trial: what Optuna does for parallel workers
    suggest(optuna.create_study(sampler=sampler), 1)
    assert sampler.session_seed is None


def test_optuna_config_composes_to_a_resumable_search(workdir) -> None:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", ["hparams_search=optuna"], return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert cfg.optimized_metric == cfg.monitor == METRIC
    assert sweeper.direction == "maximize"
    assert sweeper.storage == "sqlite:///optuna.db"
    assert sweeper.study_name == "medcls-synthetic-resnet18"
    sampler = instantiate(sweeper.sampler)  # as the sweeper does, TPESamplerConfig fields too
    assert isinstance(sampler, ResumableTPESampler)
    suggest(optuna.create_study(sampler=sampler), 1)
    assert sampler.session_seed == cfg.seed
    losses = sweeper.params["loss"]
    for name in LOSSES:
        assert name in losses
        assert (Path(CONFIG_DIR) / "loss" / f"{name}.yaml").is_file()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        minimize = compose(
            "train",
            ["hparams_search=optuna", "monitor=val/loss", "monitor_mode=min"],
            return_hydra_config=True,
        )
    assert minimize.optimized_metric == "val/loss"
    assert minimize.hydra.sweeper.direction == "minimize"


# ------------------------------------------------------------ the value returned to the sweeper
def test_optimized_value() -> None:
    metrics = {METRIC: 0.75, "val/loss": 0.5}
    assert optimized_value(metrics, METRIC) == 0.75
    assert optimized_value(metrics, None) is None  # plain runs and grid sweeps return nothing
    with pytest.raises(KeyError, match="val/auroc_macro.*val/balanced_accuracy, val/loss"):
        optimized_value(metrics, "val/auroc_macro")
    with pytest.raises(KeyError, match="logged: nothing"):
        optimized_value({}, METRIC)
    with pytest.raises(FloatingPointError, match="val/loss.*NaN"):
        optimized_value({"val/loss": float("nan")}, "val/loss")

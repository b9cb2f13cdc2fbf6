"""Search files (the study's settings, the space, the experiment each trial trains) and the
Optuna study they name, opened before anything heavy loads.

name: ...                 # the study (and its MLflow parent run)
base: experiments/x.yaml  # every trial starts from this experiment
study: {...}              # StudyConfig
space: {"model.width": {choices: [...]}, "optimizer.learning_rate": {low:, high:, log: true}}
trial_overrides: {...}    # the fixed budget of one trial
final_overrides: {...}    # for retraining the best configuration
robot_budget: {...}       # what robot code can afford (iklab.learning.robot_cost.RobotBudget); null: none
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import random
import re
import sqlite3
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import optuna
from optuna.storages import RDBStorage
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError, ProgrammingError, SQLAlchemyError

from iklab.learning.config import (
    ConfigError,
    ExperimentConfig,
    apply_overrides,
    at_least,
    build_dataclass,
    experiment_from_dict,
    positive,
    read_yaml,
)
from iklab.learning.robot_cost import RobotBudget


@dataclass(frozen=True)
class StudyConfig:
    name: str = "ik-jaco-search"
    storage: str = "sqlite:///optuna.db"  # never MLflow's database (schema clash)
    n_trials: int = at_least(1, default=16)  # complete + pruned trials the study stops at (reruns resume towards it)
    timeout_minutes: float = positive(default=8.0)  # this process stops starting trials after this
    seed: int = at_least(0, default=0)
    # median | successive_halving | hyperband | none. successive_halving and hyperband are
    # multi-fidelity: most trials stop at an early rung (epochs), few reach the last one.
    pruner: str = "median"
    pruner_startup_trials: int = at_least(0, default=3)  # median: trials that always finish, to give it a basis
    pruner_warmup_epochs: int = at_least(0, default=2)  # median: no pruning before; the others: first rung
    pruner_reduction_factor: int = at_least(2, default=3)  # successive_halving, hyperband: 1 in this many go on
    diagnostic_pruning_epochs: int = at_least(1, default=3)  # a trial still dead or collapsed after this is pruned
    heartbeat_seconds: int = at_least(1, default=30)  # a trial silent for 2x this (crash, kill) is marked failed
    finalize: bool = True  # retrain, evaluate and register the best; false for extra workers
    retrain: bool = True  # retrain the best configuration with `final_overrides` (all rows)


@dataclass(frozen=True)
class SearchConfig:
    name: str
    base: str  # the experiment file every trial starts from
    study: StudyConfig = field(default_factory=StudyConfig)
    space: dict = field(default_factory=dict)  # "section.key" -> {choices | low/high[/log]}, role
    trial_overrides: dict = field(default_factory=dict)  # the fixed budget of one trial
    final_overrides: dict = field(default_factory=dict)  # for retraining the best configuration
    enqueue: tuple[dict, ...] = ()  # known good configurations (space keys -> values), tried first
    # a configuration over it is pruned before training, and a trained one over it is not the champion
    robot_budget: RobotBudget | None = field(default_factory=RobotBudget)
    source: str = ""  # the search file


def load_search(path: str | os.PathLike, overrides: dict | None = None) -> SearchConfig:
    raw = read_yaml(path)
    raw.setdefault("name", os.path.splitext(os.path.basename(path))[0])
    study = {**raw.get("study", {}), **(overrides or {})}
    config = build_dataclass(SearchConfig, {**raw, "study": study, "source": str(path)}, str(path))
    if not config.space:
        raise ConfigError(
            f"{path}: space is empty: nothing to search (give at least one key; one training is python -m iklab.train)"
        )
    for key, spec in config.space.items():
        _check_space_entry(key, spec, str(path))
        for value in _space_values(spec):  # every choice and both ends build a valid experiment
            base_experiment(config, {key: value})
    for index, params in enumerate(config.enqueue):
        _check_enqueued(params, config.space, f"{path}: enqueue[{index}]")
        base_experiment(config, params)
    base_experiment(config)  # fail now, not in trial 0, on a bad base or override
    if config.study.retrain and config.final_overrides:
        base_experiment(config, final=True)  # and not at the end, after every trial, on a bad final override
    return config


def _check_enqueued(params: dict, space: dict, where: str) -> None:
    """An enqueued configuration sets only keys of the space, to values the space allows."""
    for key, value in params.items():
        spec = space.get(key)
        if spec is None:
            raise ConfigError(f"{where}: {key} is not in the space ({', '.join(space)})")
        if "choices" in spec and value not in spec["choices"]:
            raise ConfigError(f"{where}: {key}={value!r} is not one of {spec['choices']}")
        if "low" in spec and not (isinstance(value, (int, float)) and spec["low"] <= value <= spec["high"]):
            raise ConfigError(f"{where}: {key}={value!r} is outside [{spec['low']}, {spec['high']}]")


def _check_space_entry(key: str, spec: object, source: str) -> None:
    if not isinstance(spec, dict) or not ({"choices"} <= set(spec) or {"low", "high"} <= set(spec)):
        raise ConfigError(f"{source}: space.{key} needs `choices: [...]` or `low:` and `high:`")
    unknown = set(spec) - {"choices", "low", "high", "log", "step", "role"}
    if unknown:
        raise ConfigError(f"{source}: space.{key}: unknown field {sorted(unknown)[0]}")
    if spec.get("role", "scientific") not in ("scientific", "nuisance"):
        raise ConfigError(
            f"{source}: space.{key}: role must be scientific or nuisance (fixed parameters go in trial_overrides)"
        )
    where = f"{source}: space.{key}"
    if "choices" in spec:
        if not isinstance(spec["choices"], list) or not spec["choices"]:
            raise ConfigError(f"{where}: choices must be a non-empty list, got {spec['choices']!r}")
        return
    numbers = {}
    for name in ("low", "high", "step"):
        value = spec.get(name, 1)
        numbers[name] = _number(value)
        if numbers[name] is None:
            raise ConfigError(f"{where}: {name} must be a number, got {value!r}")
    low, high = numbers["low"], numbers["high"]
    if not low < high:
        raise ConfigError(f"{where}: low must be below high, got low {spec['low']!r}, high {spec['high']!r}")
    if not isinstance(spec.get("log", False), bool):
        raise ConfigError(f"{where}: log must be true or false, got {spec['log']!r}")
    if spec.get("log") and low <= 0:
        raise ConfigError(f"{where}: a log scale needs low > 0, got {spec['low']!r}")
    if numbers["step"] <= 0 or (spec.get("log") and "step" in spec):
        raise ConfigError(f"{where}: step must be > 0 and cannot go with log")


def _number(value: object) -> float | None:
    """A finite number (YAML reads 1e-3, without a dot, as the string "1e-3": taken too), or None."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _space_values(spec: dict) -> list:
    """What a trial can draw for an entry that a check can try: every choice, or both ends."""
    return list(spec["choices"]) if "choices" in spec else [spec["low"], spec["high"]]


def base_experiment(config: SearchConfig, params: dict | None = None, final: bool = False) -> ExperimentConfig:
    """The experiment of one trial (or of the final retraining) as a validated config."""
    raw = read_yaml(config.base)
    raw.setdefault("name", os.path.splitext(os.path.basename(config.base))[0])
    overrides = {**config.trial_overrides, **(config.final_overrides if final else {}), **(params or {})}
    return experiment_from_dict(apply_overrides(raw, overrides, config.source), config.source)


# How long a study's storage call keeps retrying while its database cannot be reached (a
# PostgreSQL restart): then the error goes up, and the trial or the worker fails as before.
STORAGE_RETRY_SECONDS = 120.0


def _connection_lost(exc: BaseException | None) -> bool:
    """The database went away (refused, closed, restarting), here or as the cause Optuna wrapped."""
    while exc is not None:
        if isinstance(exc, (OperationalError, InterfaceError)) or getattr(exc, "connection_invalidated", False):
            return True
        exc = exc.__cause__
    return False


def _retrying(method: Callable) -> Callable:
    @functools.wraps(method)
    def call(self: RDBStorage, *args: object, **kwargs: object) -> object:
        delay, waited = 0.5, 0.0
        while True:
            try:
                return method(self, *args, **kwargs)
            except Exception as exc:
                if self.url.startswith("sqlite") or not _connection_lost(exc) or waited >= STORAGE_RETRY_SECONDS:
                    raise
                if not waited:
                    print(
                        f"study storage unreachable ({_first_line(exc)}): retrying for up to "
                        f"{STORAGE_RETRY_SECONDS:.0f} s",
                        flush=True,
                    )
                time.sleep(delay)
                waited, delay = waited + delay, min(2 * delay, 8.0)

    return call


class ResilientRDBStorage(RDBStorage):
    """Optuna's RDB storage whose calls ride out a database server's restart (not SQLite's: a
    file does not restart, and its OperationalError is a real error): connections are checked
    before use (``pool_pre_ping``) and a call that loses its connection is retried with bounded
    back-off (0.5 s doubling to 8 s, for up to STORAGE_RETRY_SECONDS), heartbeats included, so
    trials in progress go on instead of failing. A trial created by a call whose reply was lost
    (committed, then retried) would be a second, empty trial: it goes stale and is failed."""


for _name in (
    "create_new_study",
    "delete_study",
    "set_study_user_attr",
    "set_study_system_attr",
    "get_study_id_from_name",
    "get_study_name_from_id",
    "get_study_directions",
    "get_study_user_attrs",
    "get_study_system_attrs",
    "get_all_studies",
    "create_new_trial",
    "set_trial_param",
    "get_trial_id_from_study_id_trial_number",
    "set_trial_state_values",
    "set_trial_intermediate_value",
    "set_trial_user_attr",
    "set_trial_system_attr",
    "get_trial",
    "get_all_trials",
    "get_n_trials",
    "record_heartbeat",
    "_get_stale_trial_ids",
):
    setattr(ResilientRDBStorage, _name, _retrying(getattr(RDBStorage, _name)))


def _open_storage(s: StudyConfig) -> RDBStorage:
    """The study's RDB storage with heartbeats. Several workers opening a fresh PostgreSQL
    database at once race to create Optuna's schema (a duplicate type or table): the losers
    retry after a short random pause, when the schema exists."""
    _refuse_mlflow_database(s.storage)
    for attempt in range(6):
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna 5, and we rely on them
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return ResilientRDBStorage(
                    s.storage,
                    engine_kwargs={"pool_pre_ping": True},
                    heartbeat_interval=s.heartbeat_seconds,
                    grace_period=2 * s.heartbeat_seconds,
                    heartbeat_stale_trial_callback=fail_lost_runs,
                )
        except (IntegrityError, ProgrammingError, OperationalError) as exc:
            racing = any(
                words in str(exc)
                for words in ("already exists", "duplicate key", "UNIQUE constraint failed", "database is locked")
            )
            if not racing or attempt == 5:
                raise ConfigError(f"study.storage {redact(s.storage)!r} cannot be opened: {_first_line(exc)}") from None
            time.sleep(random.uniform(0.2, 1.0))
        except (SQLAlchemyError, ImportError) as exc:  # a bad URL, a missing driver, an unreachable database
            raise ConfigError(f"study.storage {redact(s.storage)!r} cannot be opened: {_first_line(exc)}") from None
    raise AssertionError("unreachable")


def _refuse_mlflow_database(url: str) -> None:
    """Optuna's tables never go into MLflow's database (a schema clash, and MLflow's own
    migrations would then refuse it): refused when the SQLite file holds MLflow's tables."""
    if not url.startswith("sqlite:///"):
        return
    path = url.removeprefix("sqlite:///").split("?")[0]
    if not os.path.isfile(path):
        return
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error:
        return  # not a database Optuna can use either: its own error says so
    if {"experiments", "runs", "registered_models"} <= tables:
        raise ConfigError(
            f"study.storage {url!r} is MLflow's tracking database: give Optuna its own (sqlite:///optuna.db)"
        )


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0]


def make_study(config: SearchConfig) -> optuna.Study:
    s = config.study
    storage = _open_storage(s)
    first_rung = max(1, s.pruner_warmup_epochs)  # epochs are reported from step 0: step s ends epoch s + 1
    pruners = {
        "median": optuna.pruners.MedianPruner(s.pruner_startup_trials, s.pruner_warmup_epochs),
        "successive_halving": optuna.pruners.SuccessiveHalvingPruner(
            min_resource=first_rung, reduction_factor=s.pruner_reduction_factor
        ),
        "hyperband": optuna.pruners.HyperbandPruner(
            min_resource=first_rung, reduction_factor=s.pruner_reduction_factor
        ),
        "none": optuna.pruners.NopPruner(),
    }
    if s.pruner not in pruners:
        raise ConfigError(f"{config.source}: study.pruner must be median, successive_halving, hyperband or none")
    study = optuna.create_study(
        study_name=s.name, storage=storage, direction="minimize", load_if_exists=True, pruner=pruners[s.pruner]
    )
    study.sampler = TrialSeededTPESampler(seed=s.seed)
    with warnings.catch_warnings():  # "experimental" in Optuna 5
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([OBJECTIVE_NAME])  # what optuna-dashboard shows instead of "Objective 0"
    return study


# The objective, as Optuna's dashboard names it.
OBJECTIVE_NAME = "validation median position error (mm)"


def fail_lost_runs(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Optuna calls this, in whichever worker notices, when a trial's heartbeat stopped (its
    worker crashed or was killed) and the trial was marked FAIL: the trial's MLflow run and the
    dead worker's parent run, if still RUNNING, become FAILED with the reason, at the same
    moment. A tracking server that cannot be reached is not the study's problem: skipped."""
    import mlflow  # loaded by then: only workers that train notice stale trials

    reason = (
        f"worker lost: trial {trial.number} stopped sending heartbeats (crash or kill); "
        f"marked failed by process {os.getpid()}"
    )
    client = mlflow.MlflowClient()
    for key in ("mlflow_run_id", "mlflow_parent_run_id"):
        end_if_running(client, trial.user_attrs.get(key), "FAILED", "failure_reason", reason)


def end_if_running(client: object, run_id: str | None, status: str, tag: str, reason: str) -> None:
    """End MLflow run ``run_id`` with ``status``, ``reason`` in tag ``tag``, if it is still
    RUNNING. A tracking error is skipped: it must not break the study."""
    if not run_id:
        return
    try:
        if client.get_run(run_id).info.status == "RUNNING":
            client.set_tag(run_id, tag, reason)
            client.set_terminated(run_id, status)
    except Exception:  # MLflow raises several types
        return


class TrialSeededTPESampler(optuna.samplers.TPESampler):
    """TPE whose random draws for a trial are seeded by the study's seed and the trial's number.

    Trial numbers are handed out by the storage, once each, so workers that open the study at
    the same moment still draw differently (each seeded with `seed + len(trials)`, as before,
    two workers started together drew the same configurations), a single worker is
    reproducible, and a resumed study does not replay its start. TPE's constant liar (Optuna's
    default) counts the other workers' running trials as bad, so their neighbourhoods are not
    sampled twice either.
    """

    def __init__(self, seed: int) -> None:
        super().__init__(seed=seed, constant_liar=True)
        self._base_seed = seed

    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        trial_seed = (self._base_seed * 1_000_003 + trial.number) % 2**32
        # the two random streams TPE draws from (Optuna 5.0's attributes, pinned in pyproject)
        self._rng.rng.seed(trial_seed)
        self._random_sampler._rng.rng.seed(trial_seed)
        super().before_trial(study, trial)


def redact(url: str) -> str:
    """No database password in MLflow params."""
    return re.sub(r"://([^:/@]+):[^@]+@", r"://\1:***@", url)

"""`run_search(config) -> StudyResult`: an Optuna study over architectures, one nested MLflow
run per trial, pruning on the validation error and on the diagnostics, and at the end a
retrained, registered champion (see `iklab.champion`).

Behind `mlflow run . -e search`, `make search` and `python -m iklab.search`.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass, field, replace

import keras
import mlflow
import optuna
from optuna.storages import RDBStorage
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState

from .config import (ConfigError, ExperimentConfig, apply_overrides, build_dataclass,
                     experiment_from_dict, read_yaml)
from .train import train


@dataclass(frozen=True)
class StudyConfig:
    name: str = "ik-jaco-search"
    storage: str = "sqlite:///optuna.db"  # never MLflow's database (schema clash)
    n_trials: int = 16  # complete + pruned trials the study stops at (reruns resume towards it)
    timeout_minutes: float = 8.0  # this process stops starting trials after this
    seed: int = 0
    pruner: str = "median"  # median | hyperband | none
    pruner_startup_trials: int = 3  # trials that always finish, to give the median a basis
    pruner_warmup_epochs: int = 2
    diagnostic_pruning_epochs: int = 3  # a trial still dead or collapsed after this is pruned
    heartbeat_seconds: int = 30  # a trial silent for 2x this (crash, kill) is marked failed
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
    source: str = ""  # the search file


@dataclass
class StudyResult:
    study_name: str
    parent_run_id: str
    counts: dict  # complete / pruned / failed trials
    best_trial: int | None = None
    best_value: float | None = None  # validation median position error, mm
    best_params: dict = field(default_factory=dict)
    champion: dict = field(default_factory=dict)  # see iklab.champion.finalize
    wall_seconds: float = 0.0


def load_search(path, overrides: dict | None = None) -> SearchConfig:
    raw = read_yaml(path)
    raw.setdefault("name", os.path.splitext(os.path.basename(path))[0])
    study = {**raw.get("study", {}), **(overrides or {})}
    config = build_dataclass(SearchConfig, {**raw, "study": study, "source": str(path)}, str(path))
    for key, spec in config.space.items():
        _check_space_entry(key, spec, str(path))
    base_experiment(config)  # fail now, not in trial 0, on a bad base or override
    return config


def _check_space_entry(key: str, spec, source: str) -> None:
    if not isinstance(spec, dict) or not ({"choices"} <= set(spec) or {"low", "high"} <= set(spec)):
        raise ConfigError(f"{source}: space.{key} needs `choices: [...]` or `low:` and `high:`")
    unknown = set(spec) - {"choices", "low", "high", "log", "step", "role"}
    if unknown:
        raise ConfigError(f"{source}: space.{key}: unknown field {sorted(unknown)[0]}")
    if spec.get("role", "scientific") not in ("scientific", "nuisance"):
        raise ConfigError(f"{source}: space.{key}: role must be scientific or nuisance "
                          "(fixed parameters go in trial_overrides)")


def base_experiment(config: SearchConfig, params: dict | None = None, final: bool = False) -> ExperimentConfig:
    """The experiment of one trial (or of the final retraining) as a validated config."""
    raw = read_yaml(config.base)
    raw.setdefault("name", os.path.splitext(os.path.basename(config.base))[0])
    overrides = {**config.trial_overrides, **(config.final_overrides if final else {}), **(params or {})}
    return experiment_from_dict(apply_overrides(raw, overrides, config.source), config.source)


def sample_params(trial: optuna.Trial, space: dict) -> dict:
    params = {}
    for key, spec in space.items():
        if "choices" in spec:
            params[key] = trial.suggest_categorical(key, spec["choices"])
        elif isinstance(spec["low"], int) and isinstance(spec["high"], int) and not spec.get("log"):
            params[key] = trial.suggest_int(key, spec["low"], spec["high"], step=spec.get("step", 1))
        else:
            params[key] = trial.suggest_float(key, float(spec["low"]), float(spec["high"]),
                                              log=bool(spec.get("log", False)))
    return params


def trial_run_name(number: int, config: ExperimentConfig) -> str:
    """e.g. `t007 mlp 4x256 relu bn-before`: readable in the MLflow runs table."""
    m = config.model
    shape = "-".join(map(str, m.widths)) if m.widths else f"{m.depth}x{m.width}"
    front = f"conv{m.conv_layers}x{m.conv_filters}+" if m.family == "conv1d" else ""
    return f"t{number:03d} {m.family} {front}{shape} {m.activation} bn-{m.batch_norm}"


class PruneCallback(keras.callbacks.Callback):
    """Reports the probe's position error to Optuna; stops hopeless, dead or collapsed trials."""

    def __init__(self, trial: optuna.Trial, diagnostic_epochs: int):
        super().__init__()
        self.trial, self.diagnostic_epochs = trial, diagnostic_epochs
        self.stop_reason: str | None = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        value = logs.get("val_position_error_mm", math.nan)
        if math.isfinite(value):
            self.trial.report(value, epoch)
        reason = self._diagnostic_reason(epoch, logs)
        if reason is None and self.trial.should_prune():
            reason = f"pruner: val position error {value:.1f} mm at epoch {epoch + 1} is worse than the median"
        if reason:
            self.stop_reason = reason
            self.model.stop_training = True

    def _diagnostic_reason(self, epoch: int, logs: dict) -> str | None:
        if epoch + 1 < self.diagnostic_epochs:
            return None
        dead = {k.split("/", 1)[1]: v for k, v in logs.items() if k.startswith("dead_fraction/") and v >= 0.99}
        if dead:
            return f"dead_layer: {', '.join(dead)} >= 99% dead after {epoch + 1} epochs"
        if logs.get("r2_mean", 1.0) < 0.05:
            return f"collapsed_to_mean: mean R^2 {logs['r2_mean']:.3f} after {epoch + 1} epochs"
        return None


def make_study(config: SearchConfig) -> optuna.Study:
    s = config.study
    storage = RDBStorage(s.storage, heartbeat_interval=s.heartbeat_seconds, grace_period=2 * s.heartbeat_seconds)
    pruners = {"median": optuna.pruners.MedianPruner(s.pruner_startup_trials, s.pruner_warmup_epochs),
               "hyperband": optuna.pruners.HyperbandPruner(min_resource=s.pruner_warmup_epochs),
               "none": optuna.pruners.NopPruner()}
    if s.pruner not in pruners:
        raise ConfigError(f"{config.source}: study.pruner must be median, hyperband or none")
    study = optuna.create_study(study_name=s.name, storage=storage, direction="minimize", load_if_exists=True,
                                pruner=pruners[s.pruner])
    # Seeded, offset by the trials already stored, so a resumed study does not replay its start.
    study.sampler = optuna.samplers.TPESampler(seed=s.seed + len(study.trials))
    return study


def objective_for(config: SearchConfig, parent_run_id: str):
    def objective(trial: optuna.Trial) -> float:
        params = sample_params(trial, config.space)
        experiment = base_experiment(config, params)
        trial.set_user_attr("family", experiment.model.family)
        pruner = PruneCallback(trial, config.study.diagnostic_pruning_epochs)
        tags = {"study": config.study.name, "family": experiment.model.family, "trial": str(trial.number)}
        result = train(experiment, parent_run_id=parent_run_id, run_name=trial_run_name(trial.number, experiment),
                       tags=tags, extra_callbacks=(pruner,), log_model=False)
        trial.set_user_attr("mlflow_run_id", result.run_id)
        mlflow.MlflowClient().log_param(result.run_id, "trial_number", trial.number)
        if result.status == "pruned":
            trial.set_user_attr("prune_reason", result.reason)
            raise optuna.TrialPruned(result.reason)
        if result.status == "failed":
            trial.set_user_attr("fail_reason", result.reason)
            return math.nan  # Optuna records the trial as failed
        for key in ("test/position_error_mm_median", "test/rotation_error_deg_median",
                    "baseline/knn/position_error_mm_median"):
            trial.set_user_attr(key, result.metrics[key])
        return result.metrics["val/position_error_mm_median"]

    return objective


def progress_line(started: float):
    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        short = " ".join(f"{k.split('.')[-1]}={_short(v)}" for k, v in trial.params.items())
        value = f"{trial.value:.2f} mm" if trial.value is not None else "-"
        reason = trial.user_attrs.get("prune_reason") or trial.user_attrs.get("fail_reason") or ""
        print(f"[trial {trial.number:3d}] {trial.state.name.lower():8s} {value:>10s}  {short}  "
              f"{reason}  ({(time.perf_counter() - started) / 60:.1f} min)", flush=True)

    return callback


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def trial_counts(study: optuna.Study) -> dict:
    states = [t.state for t in study.get_trials(deepcopy=False)]
    return {"complete": states.count(TrialState.COMPLETE), "pruned": states.count(TrialState.PRUNED),
            "failed": states.count(TrialState.FAIL), "running": states.count(TrialState.RUNNING)}


def run_search(config: SearchConfig) -> StudyResult:
    """Run (or resume) the study under one parent MLflow run; finalize if configured."""
    from .champion import finalize, log_study_artifacts, parent_run

    started = time.perf_counter()
    study = make_study(config)
    with parent_run(config) as parent:
        stop = MaxTrialsCallback(config.study.n_trials, states=(TrialState.COMPLETE, TrialState.PRUNED))
        study.optimize(objective_for(config, parent.info.run_id), n_trials=config.study.n_trials,
                       timeout=config.study.timeout_minutes * 60, callbacks=[stop, progress_line(started)],
                       gc_after_trial=True, catch=(Exception,))  # a crashing trial is a failed trial
        result = StudyResult(config.study.name, parent.info.run_id, trial_counts(study))
        if result.counts["complete"]:
            best = study.best_trial
            result.best_trial, result.best_value, result.best_params = best.number, best.value, best.params
            if config.study.finalize:
                result.champion = finalize(config, study, parent.info.run_id)
        result.wall_seconds = time.perf_counter() - started
        log_study_artifacts(config, study, result)
    return result


def _parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m iklab.search", description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="experiments/search_jaco.yaml", help="search file")
    parser.add_argument("--n-trials", type=int, default=0, help="0: the file's value")
    parser.add_argument("--timeout-minutes", type=float, default=0, help="0: the file's value")
    parser.add_argument("--storage", default="", help="Optuna storage URL; empty: the file's value")
    parser.add_argument("--study-name", default="", help="empty: the file's value")
    parser.add_argument("--dataset-rows", type=int, default=0, help="dataset size; 0: the base experiment's")
    parser.add_argument("--finalize", default="", choices=["", "true", "false"],
                        help="retrain and register the best at the end (false for extra workers)")
    return parser.parse_args(argv)


def config_from_args(args) -> SearchConfig:
    study = {key: value for key, value in (("n_trials", args.n_trials), ("timeout_minutes", args.timeout_minutes),
                                           ("storage", args.storage), ("name", args.study_name)) if value}
    if args.finalize:
        study["finalize"] = args.finalize == "true"
    config = load_search(args.experiment, study)
    if args.dataset_rows:
        config = replace(config, trial_overrides={**config.trial_overrides, "data.rows": args.dataset_rows})
    return config


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    keras.config.disable_interactive_logging()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own line per trial instead
    try:
        result = run_search(config_from_args(args))
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        print(f"iklab.search: error: {exc}", file=sys.stderr)
        return 2
    c = result.counts
    print(f"study {result.study_name}: {c['complete']} complete, {c['pruned']} pruned, {c['failed']} failed "
          f"in {result.wall_seconds / 60:.1f} min; parent run {result.parent_run_id}")
    if result.champion:
        print(result.champion["summary_line"])
    return 0 if result.best_trial is not None else 1


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())

"""`run_search(config) -> StudyResult`: an Optuna study over architectures, one nested MLflow
run per trial, pruning on the validation error and on the diagnostics, and at the end a
retrained, registered champion (see `iklab.study` and `iklab.registry`).

Behind `mlflow run . -e search`, `make search` and `python -m iklab.search`.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import replace

import mlflow
import optuna
from optuna.storages import RDBStorage
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState
from sqlalchemy.exc import SQLAlchemyError

from . import metric_names as M
from .config import ConfigError, ExperimentConfig
from .console import quiet_console
from .diagnostics import COLLAPSE_R2, DEAD_LAYER_FRACTION
from .search_config import SearchConfig, base_experiment, load_search
from .study import StudyResult, finalize, log_study_artifacts, parent_run, redact
from .train import StoppingCallback, train


def sample_params(trial: optuna.Trial, space: dict) -> dict:
    params = {}
    for key, spec in space.items():
        if "choices" in spec:
            params[key] = trial.suggest_categorical(key, spec["choices"])
        elif isinstance(spec["low"], int) and isinstance(spec["high"], int) and not spec.get("log"):
            params[key] = trial.suggest_int(key, spec["low"], spec["high"], step=spec.get("step", 1))
        else:
            params[key] = trial.suggest_float(
                key, float(spec["low"]), float(spec["high"]), log=bool(spec.get("log", False))
            )
    return params


def trial_run_name(number: int, config: ExperimentConfig) -> str:
    """e.g. `t007 mlp 4x256 relu bn-before`: readable in the MLflow runs table."""
    m = config.model
    shape = "-".join(map(str, m.widths)) if m.widths else f"{m.depth}x{m.width}"
    front = f"conv{m.conv_layers}x{m.conv_filters}+" if m.family == "conv1d" else ""
    return f"t{number:03d} {m.family} {front}{shape} {m.activation} bn-{m.batch_norm}"


class PruneCallback(StoppingCallback):
    """Reports the probe's position error to Optuna; stops hopeless, dead or collapsed trials.

    Reads what train()'s probes wrote into ``logs`` this epoch; the thresholds are the
    diagnostics' own (a trial is pruned for what would flag a finished run).
    """

    def __init__(self, trial: optuna.Trial, diagnostic_epochs: int) -> None:
        super().__init__()
        self.trial, self.diagnostic_epochs = trial, diagnostic_epochs

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        value = logs.get(M.VAL_POSITION_ERROR_MM, math.nan)
        if math.isfinite(value):
            self.trial.report(value, epoch)
        reason = self._diagnostic_reason(epoch, logs)
        if reason is None and self.trial.should_prune():
            reason = f"pruner: val position error {value:.1f} mm at epoch {epoch + 1} is worse than the median"
        if reason:
            self.request_stop(reason)

    def _diagnostic_reason(self, epoch: int, logs: dict) -> str | None:
        if epoch + 1 < self.diagnostic_epochs:
            return None
        dead = {
            k.removeprefix(M.DEAD_FRACTION): v
            for k, v in logs.items()
            if k.startswith(M.DEAD_FRACTION) and v >= DEAD_LAYER_FRACTION
        }
        if dead:
            return f"dead_layer: {', '.join(dead)} >= {DEAD_LAYER_FRACTION:.0%} dead after {epoch + 1} epochs"
        if logs.get(M.R2_MEAN, 1.0) < COLLAPSE_R2:
            return f"collapsed_to_mean: mean R^2 {logs[M.R2_MEAN]:.3f} after {epoch + 1} epochs"
        return None


def make_study(config: SearchConfig) -> optuna.Study:
    s = config.study
    try:
        with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna 5, and we rely on them
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = RDBStorage(
                s.storage, heartbeat_interval=s.heartbeat_seconds, grace_period=2 * s.heartbeat_seconds
            )
    except (SQLAlchemyError, ImportError) as exc:  # a bad URL, a missing driver, an unreachable database
        reason = str(exc).splitlines()[0]
        raise ConfigError(f"study.storage {redact(s.storage)!r} cannot be opened: {reason}") from None
    pruners = {
        "median": optuna.pruners.MedianPruner(s.pruner_startup_trials, s.pruner_warmup_epochs),
        "hyperband": optuna.pruners.HyperbandPruner(min_resource=s.pruner_warmup_epochs),
        "none": optuna.pruners.NopPruner(),
    }
    if s.pruner not in pruners:
        raise ConfigError(f"{config.source}: study.pruner must be median, hyperband or none")
    study = optuna.create_study(
        study_name=s.name, storage=storage, direction="minimize", load_if_exists=True, pruner=pruners[s.pruner]
    )
    # Seeded, offset by the trials already stored, so a resumed study does not replay its start.
    study.sampler = optuna.samplers.TPESampler(seed=s.seed + len(study.trials))
    return study


def objective_for(config: SearchConfig, parent_run_id: str) -> Callable[[optuna.Trial], float]:
    def objective(trial: optuna.Trial) -> float:
        params = sample_params(trial, config.space)
        experiment = base_experiment(config, params)
        trial.set_user_attr("family", experiment.model.family)
        pruner = PruneCallback(trial, config.study.diagnostic_pruning_epochs)
        tags = {"study": config.study.name, "family": experiment.model.family, "trial": str(trial.number)}
        result = train(
            experiment,
            parent_run_id=parent_run_id,
            run_name=trial_run_name(trial.number, experiment),
            tags=tags,
            extra_callbacks=(pruner,),
            log_model=False,
        )
        trial.set_user_attr("mlflow_run_id", result.run_id)
        mlflow.MlflowClient().log_param(result.run_id, "trial_number", trial.number)
        if result.status == "pruned":
            trial.set_user_attr("prune_reason", result.reason)
            raise optuna.TrialPruned(result.reason)
        if result.status == "failed":
            trial.set_user_attr("fail_reason", result.reason)
            return math.nan  # Optuna records the trial as failed
        for key in (M.TEST_POSITION_MEDIAN, M.TEST + M.ROTATION_MEDIAN, M.KNN_POSITION_MEDIAN):
            trial.set_user_attr(key, result.metrics[key])
        return result.metrics[M.VAL_POSITION_MEDIAN]

    return objective


def progress_line(started: float) -> Callable[[optuna.Study, optuna.trial.FrozenTrial], None]:
    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        short = " ".join(f"{k.split('.')[-1]}={_short(v)}" for k, v in trial.params.items())
        value = f"{trial.value:.2f} mm" if trial.value is not None else "-"
        reason = trial.user_attrs.get("prune_reason") or trial.user_attrs.get("fail_reason") or ""
        print(
            f"[trial {trial.number:3d}] {trial.state.name.lower():8s} {value:>10s}  {short}  "
            f"{reason}  ({(time.perf_counter() - started) / 60:.1f} min)",
            flush=True,
        )

    return callback


def _short(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def trial_counts(study: optuna.Study) -> dict:
    states = [t.state for t in study.get_trials(deepcopy=False)]
    return {
        "complete": states.count(TrialState.COMPLETE),
        "pruned": states.count(TrialState.PRUNED),
        "failed": states.count(TrialState.FAIL),
        "running": states.count(TrialState.RUNNING),
    }


def run_search(config: SearchConfig) -> StudyResult:
    """Run (or resume) the study under one parent MLflow run; finalize if configured."""
    started = time.perf_counter()
    study = make_study(config)
    with parent_run(config) as parent:
        stop = MaxTrialsCallback(config.study.n_trials, states=(TrialState.COMPLETE, TrialState.PRUNED))
        study.optimize(
            objective_for(config, parent.info.run_id),
            n_trials=config.study.n_trials,
            timeout=config.study.timeout_minutes * 60,
            callbacks=[stop, progress_line(started)],
            gc_after_trial=True,
            catch=(Exception,),
        )  # a crashing trial is a failed trial
        result = StudyResult(config.study.name, parent.info.run_id, trial_counts(study))
        if result.counts["complete"]:
            best = study.best_trial
            result.best_trial, result.best_value, result.best_params = best.number, best.value, best.params
            if config.study.finalize:
                result.champion = finalize(config, study, parent.info.run_id)
        result.wall_seconds = time.perf_counter() - started
        log_study_artifacts(config, study, result)
    return result


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m iklab.search", description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="experiments/search_jaco.yaml", help="search file")
    parser.add_argument("--n-trials", type=int, default=0, help="0: the file's value")
    parser.add_argument("--timeout-minutes", type=float, default=0, help="0: the file's value")
    parser.add_argument("--storage", default="", help="Optuna storage URL; empty: the file's value")
    parser.add_argument("--study-name", default="", help="empty: the file's value")
    parser.add_argument("--dataset-rows", type=int, default=0, help="dataset size; 0: the base experiment's")
    parser.add_argument(
        "--finalize",
        default="",
        choices=["", "true", "false"],
        help="retrain and register the best at the end (false for extra workers)",
    )
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> SearchConfig:
    study = {
        key: value
        for key, value in (
            ("n_trials", args.n_trials),
            ("timeout_minutes", args.timeout_minutes),
            ("storage", args.storage),
            ("name", args.study_name),
        )
        if value
    }
    if args.finalize:
        study["finalize"] = args.finalize == "true"
    config = load_search(args.experiment, study)
    if args.dataset_rows:
        config = replace(config, trial_overrides={**config.trial_overrides, "data.rows": args.dataset_rows})
    return config


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    quiet_console()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own line per trial instead
    try:
        result = run_search(config_from_args(args))
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        print(f"iklab.search: error: {exc}", file=sys.stderr)
        return 2
    c = result.counts
    print(
        f"study {result.study_name}: {c['complete']} complete, {c['pruned']} pruned, {c['failed']} failed "
        f"in {result.wall_seconds / 60:.1f} min; parent run {result.parent_run_id}"
    )
    if result.champion:
        print(result.champion["summary_line"])
    return 0 if result.best_trial is not None else 1


if __name__ == "__main__":
    sys.exit(main())

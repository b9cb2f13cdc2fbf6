"""`run_search(config) -> StudyResult`: an Optuna study over architectures in MLflow, from
start to end: the parent run, one nested MLflow run per trial (pruned on the validation
error and on the diagnostics), the end of the study (retrain the best configuration and hand
it to the registry policy, `iklab.studies.registry`) and the study's artifacts (plots, trials.csv,
summary.md). Its command line is `python -m iklab.search`.
"""

from __future__ import annotations

import contextlib
import datetime
import math
import os
import socket
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import mlflow
import optuna
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState

from iklab.core.kinematics import load_robot
from iklab.core.processes import process_alive
from iklab.learning import metric_names as M
from iklab.learning.branch_coverage import branches_line, branches_tag
from iklab.learning.config import ExperimentConfig
from iklab.learning.console import QuietTrialEnd, raise_if_terminated
from iklab.learning.datasets import config_region
from iklab.learning.diagnostics import COLLAPSE_R2, DEAD_LAYER_FRACTION
from iklab.learning.robot_cost import (
    BEFORE_TRAINING_MARGIN,
    RobotBudget,
    RobotCost,
    cost_before_training,
    cost_of_solver,
    robot_solver,
)
from iklab.learning.run_logging import results_table, training_run
from iklab.learning.training import StoppingCallback, TrainResult, model_metadata, train
from iklab.studies import robot_front, study_plots
from iklab.studies.registry import ComparisonRows, register_and_compare
from iklab.studies.robot_front import BEFORE_TRAINING_KEY, COST_KEY, REFUSED_KEY, WITHIN_KEY, chosen_trial
from iklab.studies.search_file import SearchConfig, base_experiment, end_if_running, make_study, redact


@dataclass
class StudyResult:
    study_name: str
    parent_run_id: str
    counts: dict  # complete / pruned / failed trials
    best_trial: int | None = None
    best_value: float | None = None  # validation median position error, mm
    best_params: dict = field(default_factory=dict)
    champion: dict = field(default_factory=dict)  # see finalize
    wall_seconds: float = 0.0
    trials_seconds: float = 0.0  # this process's time in trials
    final_seconds: float = 0.0  # retraining the best configuration and the registry decision
    note: str = ""  # e.g. why nothing ran


@contextlib.contextmanager
def parent_run(config: SearchConfig) -> Iterator[mlflow.ActiveRun]:
    """The study's parent run: `mlflow run`'s own run if there is one, else a new one."""
    base = base_experiment(config)
    with training_run(config.study.name, f"ik-{base.data.robot_name}-search") as run:
        mlflow.set_tags({"study": config.study.name, "role": "study", "robot": base.data.robot_name})
        mlflow.log_params(
            {
                "study.name": config.study.name,
                "study.storage": redact(config.study.storage),
                "study.search_file": config.source,
                "study.n_trials": config.study.n_trials,
                "study.timeout_minutes": config.study.timeout_minutes,
                "study.base": config.base,
                "study.dataset_rows": base.data.rows,
            }
        )
        yield run


def finalize(config: SearchConfig, study: optuna.Study, parent_run_id: str) -> dict:
    """Retrain the best configuration within the robot budget, register it, move `champion` if
    it is within budget and better."""
    best = chosen_trial(study)
    experiment = base_experiment(config, best.params, final=config.study.retrain)
    result = train(
        experiment,
        parent_run_id=parent_run_id,
        run_name=f"final t{best.number:03d} (best trial)",
        tags={"study": config.study.name, "role": "final", "source_trial": str(best.number)},
        log_model=True,
    )
    if result.status != "finished":
        return {"promoted": False, "summary_line": f"retraining the best trial failed: {result.reason}"}
    test = result.dataset.test.head(experiment.evaluation.test_rows)
    rows = ComparisonRows(result.dataset.robot, test.poses(), test.q, result.dataset.digest)
    cost = log_robot_cost(result, experiment, config.robot_budget)
    decision = register_and_compare(
        f"ik-{experiment.data.robot_name}",
        result.model_uri,
        result.run_id,
        result.metrics[M.TEST_POSITION_MEDIAN],
        rows,
        cost=cost,
        budget=config.robot_budget,
    )
    decision.update(
        {"run_id": result.run_id, "metrics": result.metrics, "source_trial": best.number, "robot_cost": cost}
    )
    client = mlflow.MlflowClient()
    client.log_batch(
        parent_run_id,
        metrics=[
            mlflow.entities.Metric(f"champion/{key}", float(value), 0, 0)
            for key, value in decision.items()
            if key in ("new_version", "new_test_median_mm", "previous_test_median_mm", "promoted") and value is not None
        ],
    )
    client.log_batch(
        parent_run_id,
        metrics=[mlflow.entities.Metric(key, value, 0, 0) for key, value in cost.metrics("champion/").items()],
    )
    # the champion's branches/* beside a single-branch study's in the UI (the same names)
    figures = {key: value for key, value in result.metrics.items() if key.startswith(M.BRANCHES)}
    client.log_batch(parent_run_id, metrics=[mlflow.entities.Metric(k, float(v), 0, 0) for k, v in figures.items()])
    decision["branches_tag"] = branches_tag(
        experiment.data.output_encoding == "mixture", experiment.model.mixture_components, experiment.data.region
    )
    client.set_tag(parent_run_id, M.BRANCHES_TAG, decision["branches_tag"])
    client.set_tag(parent_run_id, "champion_decision", decision["summary_line"])
    return decision


def log_study_artifacts(config: SearchConfig, study: optuna.Study, result: StudyResult) -> None:
    counts = result.counts
    mlflow.log_metrics(
        {
            "trials_complete": counts["complete"],
            "trials_pruned": counts["pruned"],
            "trials_failed": counts["failed"],
            "wall_seconds": result.wall_seconds,
            "trials_seconds": result.trials_seconds,
            "final_seconds": result.final_seconds,
        }
    )
    if result.best_value is not None:
        mlflow.log_metric(M.BEST_PROBE_POSITION_MM, result.best_value)
        mlflow.set_tags({f"best.{key}": str(value) for key, value in result.best_params.items()})
    mlflow.log_text(study_plots.trials_table(study).to_csv(index=False), "trials.csv")
    mlflow.log_figure(
        study_plots.optimization_history(study, title=config.study.name), "plots/optimization_history.png"
    )
    mlflow.log_figure(study_plots.param_importances(study, title=config.study.name), "plots/param_importances.png")
    mlflow.log_figure(study_plots.params_vs_objective(study, title=config.study.name), "plots/params_vs_objective.png")
    mlflow.log_text(robot_front.front_table(study).to_csv(index=False), "robot_front.csv")
    mlflow.log_figure(
        robot_front.front_figure(study, config.robot_budget, title=config.study.name), "plots/robot_front.png"
    )
    summary = summary_markdown(config, study, result, study_plots.edge_warnings(study))
    mlflow.log_text(summary, "summary.md")
    mlflow.set_tag("mlflow.note.content", summary)  # the run's description in the UI


def summary_markdown(config: SearchConfig, study: optuna.Study, result: StudyResult, edges: list[str]) -> str:
    c = result.counts
    lines = [
        f"# Study {config.study.name}",
        "",
        f"{c['complete']} complete, {c['pruned']} pruned, {c['failed']} failed trials in "
        f"{result.wall_seconds / 60:.1f} min (search file `{config.source}`, storage "
        f"`{redact(config.study.storage)}`).",
        "",
    ]
    lines += [budget_line(study, result), ""]
    budget = config.robot_budget
    lines += [
        f"**Robot budget:** {budget.describe()}, against roboticstoolbox's ik_LM in the same process."
        if budget is not None
        else "**Robot budget:** none (the cost is measured, not enforced).",
        "",
    ]
    front = robot_front.front_markdown(robot_front.front_table(study), budget)
    if front:
        lines += ["## Accuracy against robot-time cost: the front (plots/robot_front.png)", "", *front, ""]
    if result.best_trial is None:
        return "\n".join(lines + [result.champion.get("summary_line") or "No trial completed."]) + "\n"
    best = chosen_trial(study)
    lines += [f"## Best trial within the budget: {best.number} (validation median {best.value:.2f} mm)", ""]
    lines += [f"- `{key}`: {value}" for key, value in best.params.items()]
    if edges:
        lines += ["", f"Best value at the edge of its range (widen it): {', '.join(edges)}."]
    champion = result.champion
    if champion.get("metrics"):
        lines += [
            "",
            "## Retrained on the full training split, test split (FK of predicted joints)",
            "",
            *results_table(champion["metrics"]),
        ]
        if M.BRANCHES_RAW_POSITION in champion["metrics"]:
            lines += ["", branches_line(champion["metrics"], champion["branches_tag"])]
    if champion.get("summary_line"):
        lines += ["", f"**Registry:** {champion['summary_line']}"]
    return "\n".join(lines) + "\n"


def budget_line(study: optuna.Study, result: StudyResult) -> str:
    """How this process split its time: trials (and where pruned ones stopped), the final
    retraining, the rest (data, artifacts, the registry)."""
    stops: dict[int, int] = {}
    refused = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,)):
        if robot_front.refused_before_training(trial):
            refused += 1  # never trained
            continue
        epochs = (trial.last_step or 0) + 1
        stops[epochs] = stops.get(epochs, 0) + 1
    pruned = ", ".join(
        [f"{count} after {epochs} epoch{'s' if epochs > 1 else ''}" for epochs, count in sorted(stops.items())]
        + ([f"{refused} over the robot budget before training"] if refused else [])
    )
    other = max(0.0, result.wall_seconds - result.trials_seconds - result.final_seconds)
    return (
        f"**Budget:** {result.trials_seconds / 60:.1f} min of trials"
        + (f" (pruned: {pruned})" if pruned else "")
        + f", {result.final_seconds / 60:.1f} min retraining the best configuration, "
        f"{other / 60:.1f} min outside them (the dataset is made in the first trial)."
    )


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
    residual = " residual" if m.residual else ""
    return f"t{number:03d} {m.family} {front}{shape} {m.activation} bn-{m.batch_norm}{residual}"


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
        value = logs.get(M.PROBE_POSITION_MM, math.nan)
        if math.isfinite(value):
            self.trial.report(value, epoch)
        reason = self._diagnostic_reason(epoch, logs)
        if reason is None and self.trial.should_prune():
            reason = f"pruner: val position error {value:.1f} mm at epoch {epoch + 1} is {self._verdict()}"
        if reason:
            self.request_stop(reason)

    def _verdict(self) -> str:
        pruner = self.trial.study.pruner
        if isinstance(pruner, optuna.pruners.MedianPruner):
            return "worse than the median"
        return f"not among the best at this rung ({type(pruner).__name__})"

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


def objective_for(config: SearchConfig, parent_run_id: str) -> Callable[[optuna.Trial], float]:
    def objective(trial: optuna.Trial) -> float:
        raise_if_terminated()  # a signal between two trials
        if surplus(trial, config.study.n_trials):
            trial.set_user_attr(SURPLUS_KEY, True)
            objective.stopped_on_surplus = True
            trial.study.stop()  # this worker is done: the study has its trials (run_search checks)
            raise SurplusTrial(f"not run: trials before it fill the study's n_trials ({config.study.n_trials})")
        trial.set_user_attr("mlflow_parent_run_id", parent_run_id)  # for fail_lost_runs
        params = sample_params(trial, config.space)
        experiment = base_experiment(config, params)
        trial.set_user_attr("family", experiment.model.family)
        pruner = PruneCallback(trial, config.study.diagnostic_pruning_epochs)
        tags = {"study": config.study.name, "family": experiment.model.family, "trial": str(trial.number)}
        if config.robot_budget is not None:
            over = over_budget_before_training(config.robot_budget, experiment, trial, parent_run_id, tags)
            if over:
                trial.set_user_attr("prune_reason", over)
                raise optuna.TrialPruned(over)
        result = train(
            experiment,
            parent_run_id=parent_run_id,
            run_name=trial_run_name(trial.number, experiment),
            tags=tags,
            extra_callbacks=(pruner,),
            log_model=False,
            # linked before training: a worker killed mid-trial leaves a trial that names its run
            on_run_start=lambda run_id: trial.set_user_attr("mlflow_run_id", run_id),
        )
        mlflow.MlflowClient().log_param(result.run_id, "trial_number", trial.number)
        if result.status == "pruned":
            trial.set_user_attr("prune_reason", result.reason)
            raise optuna.TrialPruned(result.reason)
        if result.status == "failed":
            trial.set_user_attr("fail_reason", result.reason)
            return math.nan  # Optuna records the trial as failed
        for key in (M.TEST_POSITION_MEDIAN, M.TEST + M.ROTATION_MEDIAN, M.KNN_POSITION_MEDIAN):
            trial.set_user_attr(key, result.metrics[key])
        cost = log_robot_cost(result, experiment, config.robot_budget)
        trial.set_user_attr(COST_KEY, cost.to_dict())
        trial.set_user_attr(WITHIN_KEY, cost.over(config.robot_budget) is None)
        return result.metrics[M.VAL_POSITION_MEDIAN]

    objective.stopped_on_surplus = False
    return objective


def over_budget_before_training(
    budget: RobotBudget, experiment: ExperimentConfig, trial: optuna.Trial, parent_run_id: str, tags: dict
) -> str | None:
    """Why ``experiment``'s network is over ``budget`` before any training (its untrained pass
    alone costs too much: a lower bound), or None. Over it: the trial's run says so, and costs
    seconds instead of a training."""
    robot = load_robot(experiment.data.robot, experiment.data.base_link, experiment.data.ee_link)
    bound = cost_before_training(experiment, robot, config_region(experiment.data, robot), budget)
    trial.set_user_attr(BEFORE_TRAINING_KEY, bound.to_dict())
    reason = bound.over(budget, BEFORE_TRAINING_MARGIN)
    if reason is None:
        return None
    trial.set_user_attr(REFUSED_KEY, True)
    reason = (
        f"over the robot budget before training (the untrained network without refinement, over it by more "
        f"than {BEFORE_TRAINING_MARGIN - 1:.0%}): {reason}"
    )
    with training_run(
        trial_run_name(trial.number, experiment), f"ik-{robot.name}-search", parent_run_id=parent_run_id, tags=tags
    ) as run:
        trial.set_user_attr("mlflow_run_id", run.info.run_id)
        mlflow.log_params({**trial.params, "trial_number": trial.number})
        mlflow.log_metrics(bound.metrics("robot_before_training/"))
        mlflow.set_tags({"state": "pruned", "stop_reason": reason, "robot_budget": "over"})
    return reason


def log_robot_cost(result: TrainResult, experiment: ExperimentConfig, budget: RobotBudget | None) -> RobotCost:
    """Measure the trained network's cost (refined solves) and log it on its run beside its error."""
    solver = robot_solver(result.model, model_metadata(experiment, result.dataset))
    cost = cost_of_solver(solver, budget or RobotBudget())
    client = mlflow.MlflowClient()
    client.log_batch(
        result.run_id,
        metrics=[mlflow.entities.Metric(key, value, 0, 0) for key, value in cost.metrics().items()],
        tags=[mlflow.entities.RunTag("robot_budget", _budget_tag(cost, budget))],
    )
    return cost


def _budget_tag(cost: RobotCost, budget: RobotBudget | None) -> str:
    if budget is None:
        return "none set"
    reason = cost.over(budget)
    return f"over: {reason}" if reason else f"within ({cost.summary()})"


# A trial another worker's made surplus: asked for at the same moment as the study's last one.
SURPLUS_KEY = "surplus"


class SurplusTrial(QuietTrialEnd):
    """Ends a trial that would go past the study's n_trials (Optuna records it as failed; iklab's
    counts and summaries leave it out)."""


def surplus(trial: optuna.Trial, n_trials: int) -> bool:
    """Whether the trials numbered before ``trial`` (complete, pruned, or running in any worker)
    already fill ``n_trials``. Trial numbers are handed out atomically by the storage, so of two
    workers that ask for the last trial at the same moment exactly one runs it."""
    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    before = [t for t in trial.study.get_trials(deepcopy=False, states=states) if t.number < trial.number]
    return len(before) >= n_trials


def progress_line(started: float) -> Callable[[optuna.Study, optuna.trial.FrozenTrial], None]:
    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.user_attrs.get(SURPLUS_KEY):
            print(f"[trial {trial.number:3d}] not run: the study has its trials", flush=True)
            return
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
    states = [t.state for t in study.get_trials(deepcopy=False) if not t.user_attrs.get(SURPLUS_KEY)]
    return {
        "complete": states.count(TrialState.COMPLETE),
        "pruned": states.count(TrialState.PRUNED),
        "failed": states.count(TrialState.FAIL),
        "running": states.count(TrialState.RUNNING),
    }


def settle_lost_trials(study: optuna.Study, heartbeat_seconds: int) -> None:
    """At the end of a worker's run, trials still RUNNING get up to the heartbeat grace period
    (plus one beat) to finish or go stale; stale ones are failed, with their MLflow runs
    (`fail_lost_runs`). So a worker that ends leaves no trial of a dead worker RUNNING (the
    one killed before it started, or one killed beside it), and a live worker's last trial
    usually finishes meanwhile (else it stays RUNNING, its worker still at it)."""

    def running() -> list[int]:
        return [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]

    waiting = running()
    if not waiting:
        return
    bound = 3 * heartbeat_seconds
    print(f"trials {waiting} are still RUNNING: waiting up to {bound} s for them to finish or go stale", flush=True)
    deadline = time.monotonic() + bound
    while waiting and time.monotonic() < deadline:
        time.sleep(min(1.0, heartbeat_seconds, max(0.0, deadline - time.monotonic())))
        with warnings.catch_warnings():  # "experimental" in Optuna 5, like the heartbeats it reads
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        waiting = running()


def close_orphan_runs(study: optuna.Study) -> None:
    """A finished trial whose MLflow run is still RUNNING lost its last update (the tracking
    server was down or restarting when the run ended): end the run with the trial's outcome
    (FINISHED for complete and pruned trials, FAILED for failed ones) and say so in a tag."""
    client = mlflow.MlflowClient()
    outcome = {TrialState.COMPLETE: "FINISHED", TrialState.PRUNED: "FINISHED", TrialState.FAIL: "FAILED"}
    for trial in study.get_trials(deepcopy=False, states=tuple(outcome)):
        reason = f"ended by the study: trial {trial.number} was {trial.state.name}"
        end_if_running(client, trial.user_attrs.get("mlflow_run_id"), outcome[trial.state], "status_repaired", reason)


def claim_finalize(study: optuna.Study) -> str | None:
    """Claim the study's end (retrain, register, move the alias) for this process: None if it
    is ours, else who holds it. The claim is a companion study named ``<study>:finalize``:
    creating a study is atomic in the storage (a unique name), so of several workers that
    reach the end together exactly one wins, on SQLite or PostgreSQL alike. The winner deletes
    it once the study is finalized (`release_finalize`): Optuna's dashboard lists every study."""
    name = claim_name(study)
    me = {"host": socket.gethostname(), "pid": os.getpid(), "at": datetime.datetime.now().isoformat(timespec="seconds")}
    try:
        claim = optuna.create_study(study_name=name, storage=study._storage, load_if_exists=False)
    except optuna.exceptions.DuplicatedStudyError:
        claim = optuna.load_study(study_name=name, storage=study._storage)
        holder = claim.user_attrs
        if study.user_attrs.get(FINALIZED_KEY):
            return "another worker finalized this study"
        if holder.get("host") == me["host"] and not process_alive(holder.get("pid")):
            # its holder died here (Ctrl-C, a kill, a crash) before it finished: a rerun goes on
            for key, value in me.items():
                claim.set_user_attr(key, value)
            return None
        return (
            f"another worker (process {holder.get('pid', '?')} on {holder.get('host', '?')}, since "
            f"{holder.get('at', '?')}) is finalizing this study; if it died, delete the study {name!r} "
            "(optuna delete-study) and rerun with finalize=true"
        )
    if study.user_attrs.get(FINALIZED_KEY):  # finalized, and its claim released, before ours
        optuna.delete_study(study_name=name, storage=study._storage)
        return "another worker finalized this study"
    for key, value in me.items():
        claim.set_user_attr(key, value)
    return None


def claim_name(study: optuna.Study) -> str:
    return f"{study.study_name}:finalize"


def release_finalize(study: optuna.Study) -> None:
    """Delete the claim once the study carries its champion decision (FINALIZED_KEY, set first:
    a worker that claims after this sees it and stands down)."""
    with contextlib.suppress(KeyError):  # already gone
        optuna.delete_study(study_name=claim_name(study), storage=study._storage)


# Study attribute set once the best configuration was retrained and handed to the registry.
FINALIZED_KEY = "finalized"


def _set_best(result: StudyResult, study: optuna.Study) -> None:
    """The study's best: the most accurate trial within the robot budget (`chosen_trial`)."""
    best = chosen_trial(study)
    if best is not None:
        result.best_trial, result.best_value, result.best_params = best.number, best.value, best.params


def run_search(config: SearchConfig, study: optuna.Study | None = None) -> StudyResult:
    """Run (or resume) the study under one parent MLflow run; finalize if configured.

    ``study``: the config's study if already opened (`make_study`), else opened here.
    """
    started = time.perf_counter()
    study = study or make_study(config)
    counts = trial_counts(study)
    finished = counts["complete"] + counts["pruned"] >= config.study.n_trials
    finalized = study.user_attrs.get(FINALIZED_KEY)
    if finished and (finalized or not config.study.finalize):
        # a rerun of a finished study: no trial, no run, no second model version
        result = StudyResult(config.study.name, finalized["parent_run_id"] if finalized else "", counts)
        _set_best(result, study)
        result.note = (
            f"study {config.study.name} already has {counts['complete'] + counts['pruned']} of its "
            f"{config.study.n_trials} trials"
            + (f" and its champion decision ({finalized['summary_line']})" if finalized else "")
            + ": nothing to run"
        )
        result.wall_seconds = time.perf_counter() - started
        return result
    with parent_run(config) as parent:
        if not finished:
            for params in config.enqueue:  # the known good configurations first (once per study)
                study.enqueue_trial(params, skip_if_exists=True)
            trials_started = time.perf_counter()
            stop = MaxTrialsCallback(config.study.n_trials, states=(TrialState.COMPLETE, TrialState.PRUNED))
            objective = objective_for(config, parent.info.run_id)
            deadline = time.monotonic() + config.study.timeout_minutes * 60
            while True:
                study.optimize(
                    objective,
                    n_trials=config.study.n_trials,
                    timeout=max(0.0, deadline - time.monotonic()),
                    callbacks=[stop, progress_line(started)],
                    gc_after_trial=True,
                    catch=(Exception,),
                )  # a crashing trial is a failed trial
                failed_before = trial_counts(study)["failed"]
                settle_lost_trials(study, config.study.heartbeat_seconds)
                # stopped on a surplus trial while a dead worker's trial still held a slot, and that
                # trial was failed while settling: go on while the study is short and time lasts (a
                # live worker's running trial keeps its slot: that worker finishes the study)
                counts = trial_counts(study)
                short = counts["complete"] + counts["pruned"] < config.study.n_trials
                lost = counts["failed"] > failed_before
                if not (objective.stopped_on_surplus and short and lost and time.monotonic() < deadline):
                    break
                objective.stopped_on_surplus = False
            close_orphan_runs(study)
        result = StudyResult(config.study.name, parent.info.run_id, trial_counts(study))
        if not finished:
            result.trials_seconds = time.perf_counter() - trials_started
        _set_best(result, study)
        if result.best_trial is not None and config.study.finalize:
            holder = claim_finalize(study)
            if holder is None:
                final_started = time.perf_counter()
                result.champion = finalize(config, study, parent.info.run_id)
                result.final_seconds = time.perf_counter() - final_started
                study.set_user_attr(
                    FINALIZED_KEY,
                    {"parent_run_id": parent.info.run_id, "summary_line": result.champion["summary_line"]},
                )
                release_finalize(study)
            else:
                result.champion = {"promoted": False, "summary_line": f"not finalized here: {holder}"}
        elif result.counts["complete"] and config.study.finalize:
            result.champion = {
                "promoted": False,
                "summary_line": f"no complete trial within the robot budget ({config.robot_budget.describe()}): "
                "nothing registered (see the front in the study's run; a faster space, a wider budget or "
                "robot_budget: null in the search file)",
            }
        result.wall_seconds = time.perf_counter() - started
        log_study_artifacts(config, study, result)
        if result.counts["failed"] and not result.counts["complete"] + result.counts["pruned"]:
            mlflow.set_tag("failure_reason", f"every trial failed ({result.counts['failed']}): see the trials' runs")
            mlflow.end_run("FAILED")  # not FINISHED: nothing of the study succeeded
    return result

"""A study's lifecycle in MLflow: the parent run, the end of the study (retrain the best
configuration and hand it to the registry policy), and the study's artifacts (plots,
trials.csv, summary.md).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import mlflow
import optuna

from . import metric_names as M
from . import study_plots
from .mlflow_logging import results_table, training_run
from .registry import ComparisonRows, register_and_compare
from .search_config import SearchConfig, base_experiment
from .train import train


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


@contextlib.contextmanager
def parent_run(config: SearchConfig) -> Iterator[mlflow.ActiveRun]:
    """The study's parent run: `mlflow run`'s own run if there is one, else a new one."""
    base = base_experiment(config)
    with training_run(config.study.name, f"ik-{base.data.robot}-search") as run:
        mlflow.set_tags({"study": config.study.name, "role": "study", "robot": base.data.robot})
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


def redact(url: str) -> str:
    """No database password in MLflow params."""
    return re.sub(r"://([^:/@]+):[^@]+@", r"://\1:***@", url)


def finalize(config: SearchConfig, study: optuna.Study, parent_run_id: str) -> dict:
    """Retrain the best configuration, register it, move `champion` if it is better."""
    best = study.best_trial
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
    decision = register_and_compare(
        f"ik-{experiment.data.robot}", result.model_uri, result.run_id, result.metrics[M.TEST_POSITION_MEDIAN], rows
    )
    decision.update({"run_id": result.run_id, "metrics": result.metrics, "source_trial": best.number})
    client = mlflow.MlflowClient()
    client.log_batch(
        parent_run_id,
        metrics=[
            mlflow.entities.Metric(f"champion/{key}", float(value), 0, 0)
            for key, value in decision.items()
            if key in ("new_version", "new_test_median_mm", "previous_test_median_mm", "promoted") and value is not None
        ],
    )
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
        }
    )
    if result.best_value is not None:
        mlflow.log_metric(M.BEST_VAL_POSITION_ERROR_MM, result.best_value)
        mlflow.set_tags({f"best.{key}": str(value) for key, value in result.best_params.items()})
    mlflow.log_text(study_plots.trials_table(study).to_csv(index=False), "trials.csv")
    mlflow.log_figure(
        study_plots.optimization_history(study, title=config.study.name), "plots/optimization_history.png"
    )
    mlflow.log_figure(study_plots.param_importances(study, title=config.study.name), "plots/param_importances.png")
    mlflow.log_figure(study_plots.params_vs_objective(study, title=config.study.name), "plots/params_vs_objective.png")
    mlflow.log_text(summary_markdown(config, study, result, study_plots.edge_warnings(study)), "summary.md")


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
    if result.best_trial is None:
        return "\n".join(lines + ["No trial completed."]) + "\n"
    best = study.best_trial
    lines += [f"## Best trial: {best.number} (validation median {best.value:.2f} mm)", ""]
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
    if champion.get("summary_line"):
        lines += ["", f"**Registry:** {champion['summary_line']}"]
    return "\n".join(lines) + "\n"

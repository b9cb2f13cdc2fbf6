"""The end of a study: the parent run, retraining the best configuration, registering it,
promoting it to `champion` only if it beats the current one on the same test rows, and the
study's artifacts (plots, trials.csv, summary.md).
"""

from __future__ import annotations

import contextlib
import re

import mlflow
from mlflow.exceptions import MlflowException

from .evaluation import task_space_errors
from .mlflow_logging import results_table, training_run
from .train import train

ALIAS = "champion"


@contextlib.contextmanager
def parent_run(config):
    """The study's parent run: `mlflow run`'s own run if there is one, else a new one."""
    from .search import base_experiment

    base = base_experiment(config)
    with training_run(config.study.name, f"ik-{base.data.robot}-search") as run:
        mlflow.set_tags({"study": config.study.name, "role": "study", "robot": base.data.robot})
        mlflow.log_params({"study.name": config.study.name, "study.storage": _redact(config.study.storage),
                           "study.search_file": config.source, "study.n_trials": config.study.n_trials,
                           "study.timeout_minutes": config.study.timeout_minutes, "study.base": config.base,
                           "study.dataset_rows": base.data.rows})
        yield run


def _redact(url: str) -> str:
    """No database password in MLflow params."""
    return re.sub(r"://([^:/@]+):[^@]+@", r"://\1:***@", url)


def finalize(config, study, parent_run_id: str) -> dict:
    """Retrain the best configuration, register it, move `champion` if it is better."""
    from .search import base_experiment

    best = study.best_trial
    experiment = base_experiment(config, best.params, final=config.study.retrain)
    result = train(experiment, parent_run_id=parent_run_id, run_name=f"final t{best.number:03d} (best trial)",
                   tags={"study": config.study.name, "role": "final", "source_trial": str(best.number)},
                   log_model=True)
    if result.status != "finished":
        return {"promoted": False, "summary_line": f"retraining the best trial failed: {result.reason}"}
    decision = register_and_compare(f"ik-{experiment.data.robot}", result, experiment)
    decision.update({"run_id": result.run_id, "metrics": result.metrics, "source_trial": best.number})
    client = mlflow.MlflowClient()
    client.log_batch(parent_run_id, metrics=[
        mlflow.entities.Metric(f"champion/{key}", float(value), 0, 0) for key, value in decision.items()
        if key in ("new_version", "new_test_median_mm", "previous_test_median_mm", "promoted")
        and value is not None])
    client.set_tag(parent_run_id, "champion_decision", decision["summary_line"])
    return decision


def register_and_compare(name: str, result, experiment) -> dict:
    """Register ``result``'s model; move the alias only if its test median beats the champion's
    (on ``result.dataset``, the data it was trained and tested on)."""
    dataset = result.dataset
    client = mlflow.MlflowClient()
    version = mlflow.register_model(result.model_uri, name).version
    test_rows = len(dataset.test.head(experiment.evaluation.test_rows))
    new_error = result.metrics["test/position_error_mm_median"]
    for key, value in {"test_position_error_mm_median": new_error, "dataset_digest": dataset.digest,
                       "test_rows": test_rows, "source_run": result.run_id}.items():
        client.set_model_version_tag(name, version, key, str(value))
    previous = _current_champion(client, name)
    previous_error = None
    if previous is not None:
        same_data = (previous.tags.get("dataset_digest") == dataset.digest
                     and previous.tags.get("test_rows") == str(test_rows))
        previous_error = (float(previous.tags["test_position_error_mm_median"]) if same_data
                          else evaluate_registered(f"models:/{name}/{previous.version}", dataset, test_rows))
    promoted = previous_error is None or new_error < previous_error
    if promoted:
        client.set_registered_model_alias(name, ALIAS, version)
    comparison = {"compared_with_version": previous.version if previous else "none",
                  "compared_previous_median_mm": previous_error, "promoted": promoted}
    for key, value in comparison.items():
        client.set_model_version_tag(name, version, key, str(value))
    before = "no previous champion" if previous is None else (
        f"champion v{previous.version} {previous_error:.2f} mm on the same test rows")
    line = (f"{name} v{version}: test median position error {new_error:.2f} mm vs {before}: "
            + (f"promoted to @{ALIAS}" if promoted else f"not promoted, @{ALIAS} stays on v{previous.version}"))
    return {"new_version": int(version), "new_test_median_mm": new_error, "promoted": promoted,
            "previous_version": int(previous.version) if previous else None,
            "previous_test_median_mm": previous_error, "summary_line": line}


def _current_champion(client, name: str):
    try:
        return client.get_model_version_by_alias(name, ALIAS)
    except MlflowException:
        return None


def evaluate_registered(model_uri: str, dataset, test_rows: int) -> float:
    """Median test position error (mm) of a logged model on ``dataset``'s first test rows."""
    from .solver import IKSolver

    test = dataset.test.head(test_rows)
    report = task_space_errors(dataset.robot, IKSolver.load(model_uri).predict(test.poses()), test.q)
    return report.summary()["position_error_mm_median"]  # as the test/ metric it is compared with


def log_study_artifacts(config, study, result) -> None:
    from . import study_plots

    counts = result.counts
    mlflow.log_metrics({"trials_complete": counts["complete"], "trials_pruned": counts["pruned"],
                        "trials_failed": counts["failed"], "wall_seconds": result.wall_seconds})
    if result.best_value is not None:
        mlflow.log_metric("best_val_position_error_mm", result.best_value)
        mlflow.set_tags({f"best.{key}": str(value) for key, value in result.best_params.items()})
    mlflow.log_text(study_plots.trials_table(study).to_csv(index=False), "trials.csv")
    mlflow.log_figure(study_plots.optimization_history(study, title=config.study.name),
                      "plots/optimization_history.png")
    mlflow.log_figure(study_plots.param_importances(study, title=config.study.name), "plots/param_importances.png")
    mlflow.log_figure(study_plots.params_vs_objective(study, title=config.study.name),
                      "plots/params_vs_objective.png")
    mlflow.log_text(summary_markdown(config, study, result, study_plots.edge_warnings(study)), "summary.md")


def summary_markdown(config, study, result, edges: list[str]) -> str:
    c = result.counts
    lines = [f"# Study {config.study.name}", "",
             f"{c['complete']} complete, {c['pruned']} pruned, {c['failed']} failed trials in "
             f"{result.wall_seconds / 60:.1f} min (search file `{config.source}`, storage "
             f"`{_redact(config.study.storage)}`).", ""]
    if result.best_trial is None:
        return "\n".join(lines + ["No trial completed."]) + "\n"
    best = study.best_trial
    lines += [f"## Best trial: {best.number} (validation median {best.value:.2f} mm)", ""]
    lines += [f"- `{key}`: {value}" for key, value in best.params.items()]
    if edges:
        lines += ["", f"Best value at the edge of its range (widen it): {', '.join(edges)}."]
    champion = result.champion
    if champion.get("metrics"):
        lines += ["", "## Retrained on the full training split, test split (FK of predicted joints)", "",
                  *results_table(champion["metrics"])]
    if champion.get("summary_line"):
        lines += ["", f"**Registry:** {champion['summary_line']}"]
    return "\n".join(lines) + "\n"

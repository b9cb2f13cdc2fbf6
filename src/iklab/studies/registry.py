"""The registry policy: register a retrained model, compare it with the current champion on
the same test rows, and move the `champion` alias only if it is better.

Depends on the solver (to re-evaluate a registered model) and the evaluation, not on training
or the search.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

import mlflow
import numpy as np
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from iklab.core.kinematics import Robot
from iklab.learning import metric_names as M
from iklab.learning.task_errors import task_space_errors
from iklab.robot.solver import IKSolver

ALIAS = "champion"


@dataclass(frozen=True, eq=False)
class ComparisonRows:
    """The rows models are compared on: two models are compared on identical rows only."""

    robot: Robot
    poses: np.ndarray  # (N, 4, 4) target poses
    q: np.ndarray  # (N, 6) the dataset's joints for them, radians
    dataset_digest: str  # content hash of the dataset they come from

    def __len__(self) -> int:
        return len(self.q)


def register_and_compare(
    name: str, model_uri: str, source_run_id: str, test_median_mm: float, rows: ComparisonRows
) -> dict:
    """Register ``model_uri`` (whose test median position error on ``rows`` is ``test_median_mm``);
    move the alias only if it beats the champion's on the same rows. Returns the decision."""
    client = mlflow.MlflowClient()
    with contextlib.redirect_stderr(io.StringIO()):  # its two "Successfully registered" lines: ours says more
        version = mlflow.register_model(model_uri, name).version
    for key, value in {
        "test_position_error_mm_median": test_median_mm,
        "dataset_digest": rows.dataset_digest,
        "test_rows": len(rows),
        "source_run": source_run_id,
    }.items():
        client.set_model_version_tag(name, version, key, str(value))
    previous = current_champion(client, name)
    previous_error = None
    if previous is not None:
        same_data = previous.tags.get("dataset_digest") == rows.dataset_digest and previous.tags.get(
            "test_rows"
        ) == str(len(rows))
        previous_error = (
            float(previous.tags["test_position_error_mm_median"])
            if same_data
            else evaluate_registered(f"models:/{name}/{previous.version}", rows)
        )
    promoted = previous_error is None or test_median_mm < previous_error
    if promoted:
        client.set_registered_model_alias(name, ALIAS, version)
    comparison = {
        "compared_with_version": previous.version if previous else "none",
        "compared_previous_median_mm": previous_error,
        "promoted": promoted,
    }
    for key, value in comparison.items():
        client.set_model_version_tag(name, version, key, str(value))
    before = (
        "no previous champion"
        if previous is None
        else (f"champion v{previous.version} {previous_error:.2f} mm on the same test rows")
    )
    line = f"{name} v{version}: test median position error {test_median_mm:.2f} mm vs {before}: " + (
        f"promoted to @{ALIAS}" if promoted else f"not promoted, @{ALIAS} stays on v{previous.version}"
    )
    return {
        "new_version": int(version),
        "new_test_median_mm": test_median_mm,
        "promoted": promoted,
        "previous_version": int(previous.version) if previous else None,
        "previous_test_median_mm": previous_error,
        "summary_line": line,
    }


def current_champion(client: mlflow.MlflowClient, name: str) -> ModelVersion | None:
    """The version the alias points at, or None (no such model or alias yet)."""
    try:
        return client.get_model_version_by_alias(name, ALIAS)
    except MlflowException:
        return None


def evaluate_registered(model_uri: str, rows: ComparisonRows) -> float:
    """Median test position error (mm) of a logged model on ``rows``."""
    report = task_space_errors(rows.robot, IKSolver.load(model_uri).predict(rows.poses), rows.q)
    return report.summary()[M.POSITION_MEDIAN]  # as the test/ metric it is compared with

"""The registry policy: register a retrained model, compare it with the current champion on
the same test rows and on its robot-time cost, and move the `champion` alias only if it is within
the robot budget and better (more accurate, or the champion is over the budget).

Depends on the solver (to re-evaluate a registered model) and the evaluation, not on training
or the search.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass

import mlflow
import numpy as np
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from iklab.core.kinematics import Robot
from iklab.learning import metric_names as M
from iklab.learning.robot_cost import RobotBudget, RobotCost, cost_of_solver
from iklab.learning.task_errors import task_space_errors
from iklab.robot.solver import IKSolver

ALIAS = "champion"
COST_TAG = "robot_cost_json"  # a version's RobotCost, as measured when it was registered


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
    name: str,
    model_uri: str,
    source_run_id: str,
    test_median_mm: float,
    rows: ComparisonRows,
    *,
    cost: RobotCost | None = None,
    budget: RobotBudget | None = None,
) -> dict:
    """Register ``model_uri`` (whose test median position error on ``rows`` is ``test_median_mm``
    and whose robot-time cost is ``cost``); move the alias only if it is within ``budget`` and
    beats the champion's error on the same rows (or the champion is over the budget: measured
    here when its version carries no cost). Returns the decision."""
    client = mlflow.MlflowClient()
    with contextlib.redirect_stderr(io.StringIO()):  # its two "Successfully registered" lines: ours says more
        version = mlflow.register_model(model_uri, name).version
    tags = {
        "test_position_error_mm_median": test_median_mm,
        "dataset_digest": rows.dataset_digest,
        "test_rows": len(rows),
        "source_run": source_run_id,
    }
    if cost is not None:
        tags.update({COST_TAG: json.dumps(cost.to_dict()), "robot_cost": cost.summary()})
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, str(value))
    over = cost.over(budget) if cost is not None else None
    previous = current_champion(client, name)
    previous_error = previous_over = None
    if previous is not None:
        same_data = previous.tags.get("dataset_digest") == rows.dataset_digest and previous.tags.get(
            "test_rows"
        ) == str(len(rows))
        previous_uri = f"models:/{name}/{previous.version}"
        previous_error = (
            float(previous.tags["test_position_error_mm_median"])
            if same_data
            else evaluate_registered(previous_uri, rows)
        )
        if budget is not None:
            previous_over = registered_cost(previous_uri, previous.tags, budget).over(budget)
    if over is not None:
        promoted = False
    else:
        promoted = previous is None or previous_over is not None or test_median_mm < previous_error
    if promoted:
        client.set_registered_model_alias(name, ALIAS, version)
    comparison = {
        "compared_with_version": previous.version if previous else "none",
        "compared_previous_median_mm": previous_error,
        "within_robot_budget": "no budget" if budget is None else over is None,
        "promoted": promoted,
    }
    for key, value in comparison.items():
        client.set_model_version_tag(name, version, key, str(value))
    before = (
        "no previous champion"
        if previous is None
        else (
            f"champion v{previous.version} {previous_error:.2f} mm on the same test rows"
            + (" (over the robot budget)" if previous_over else "")
        )
    )
    cost_part = f", {cost.summary()}" if cost is not None else ""
    line = f"{name} v{version}: test median position error {test_median_mm:.2f} mm{cost_part} vs {before}: " + (
        f"promoted to @{ALIAS}"
        if promoted
        else "not promoted, "
        + (f"over the robot budget ({over}); " if over else "")
        + (f"@{ALIAS} stays on v{previous.version}" if previous is not None else f"no @{ALIAS}")
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


def registered_cost(model_uri: str, tags: dict, budget: RobotBudget) -> RobotCost:
    """A registered version's robot-time cost: from its tag, else measured now (an older version)."""
    if COST_TAG in tags:
        return RobotCost.from_dict(json.loads(tags[COST_TAG]))
    return cost_of_solver(IKSolver.load(model_uri), budget)


def evaluate_registered(model_uri: str, rows: ComparisonRows) -> float:
    """Median test position error (mm) of a logged model on ``rows``."""
    report = task_space_errors(rows.robot, IKSolver.load(model_uri).predict(rows.poses), rows.q)
    return report.summary()[M.POSITION_MEDIAN]  # as the test/ metric it is compared with

"""The logged model as an MLflow pyfunc: pose rows in, joint angles (and FK-verified errors) out.

`train` logs this wrapper (the Keras network is one of its artifacts), so the
registered model serves as it is:

    mlflow models serve -m models:/ik-jaco@champion --env-manager local --port 5001
    curl -s http://127.0.0.1:5001/invocations -H 'Content-Type: application/json' \\
      -d '{"dataframe_split": {"columns": ["x","y","z","qw","qx","qy","qz"],
           "data": [[0.3, 0.1, 0.4, 0.5, 0.5, 0.5, 0.5]]}, "params": {"refine": true}}'

Input columns: x, y, z (metres, base frame), qw, qx, qy, qz (unit quaternion,
any sign); optional seed_q0..seed_q5 (radians, e.g. the robot's current joints): a row with a
seed gets the exact solution nearest it (`IKSolver.solve(q_seed=...)`), a row whose seed
columns are all empty (null) is solved without one. Output columns: q0..q5 (radians), position_error_m and
rotation_error_rad (FK of the returned joints against the request), success
(within 0.01 mm and 0.01 deg), within_region (inside the training region),
iterations (of refinement). Params: refine (default true), max_iterations,
max_joint_step (radians; 0, the default, means none): a seeded row whose answer is farther
from its seed is not a success.
Bad rows are refused as a whole request (HTTP 400) with the row numbers.

`iklab.learning.model_logging` logs this wrapper with the network and its metadata.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel

from iklab.core.encodings import POSE_COLUMNS, poses_from_position_quat
from iklab.core.refine import row_list, shown
from iklab.robot.model_metadata import MODEL_METADATA_KEY, NETWORK_ARTIFACT, NUMPY_NETWORK_ARTIFACT
from iklab.robot.network import NumpyNetwork
from iklab.robot.solver import IKResult, IKSolver

DEFAULT_PARAMS = {"refine": True, "max_iterations": 50, "max_joint_step": 0.0}
SEED_COLUMNS = [f"seed_q{i}" for i in range(6)]
# A quaternion this far from unit norm is a mistake, not rounding: refuse it rather than guess.
_QUATERNION_NORM_TOLERANCE = 1e-3


def poses_from_rows(rows: object) -> np.ndarray:
    """``(N, 7)`` rows (x, y, z, qw, qx, qy, qz) or a DataFrame with those columns -> ``(N, 4, 4)``."""
    if isinstance(rows, pd.DataFrame):
        missing = [c for c in POSE_COLUMNS if c not in rows.columns]
        if missing:
            raise ValueError(f"pose rows need columns {POSE_COLUMNS}; missing {missing}")
        # as one block, or by column: selecting them as a frame builds indexes (~1 ms a request)
        if list(rows.columns) == POSE_COLUMNS:
            rows = rows.to_numpy()
        else:
            rows = np.column_stack([rows[c].to_numpy() for c in POSE_COLUMNS]) if len(rows) else np.zeros((0, 7))
    try:
        values = np.array(rows, dtype=np.float64)  # a copy: pandas 3's views are read-only
    except (TypeError, ValueError):
        raise ValueError("pose rows must be numbers (x, y, z, qw, qx, qy, qz)") from None
    if values.ndim != 2 or values.shape[1] != 7:
        raise ValueError(f"pose rows must have shape (N, 7) = x, y, z, qw, qx, qy, qz; got {values.shape}")
    bad = np.flatnonzero(~np.all(np.isfinite(values), axis=1))
    if bad.size:
        raise ValueError(f"pose rows {row_list(bad)} have NaN or infinite values")
    bad = np.flatnonzero(np.abs(np.linalg.norm(values[:, 3:], axis=1) - 1.0) > _QUATERNION_NORM_TOLERANCE)
    if bad.size:
        raise ValueError(
            f"pose rows {row_list(bad)} have a quaternion that is not unit length "
            f"(within {_QUATERNION_NORM_TOLERANCE:g})"
        )
    return poses_from_position_quat(values[:, :3], values[:, 3:])


def result_frame(result: IKResult) -> pd.DataFrame:
    """An IKResult as one row per pose (built in one go: a column added at a time costs ~0.2 ms each)."""
    columns = {f"q{i}": result.q[:, i] for i in range(result.q.shape[1])}
    columns.update(
        position_error_m=result.position_error_m,
        rotation_error_rad=result.rotation_error_rad,
        success=result.success,
        within_region=result.within_region,
        iterations=result.iterations,
    )
    return pd.DataFrame(columns)


def seeds_from_rows(rows: pd.DataFrame) -> np.ndarray | None:
    """The optional seed columns -> ``(N, 6)`` radians, NaN rows where no seed was given; None
    without seed columns. A row with some but not all six seeds is refused."""
    present = [c for c in SEED_COLUMNS if c in rows.columns]
    if not present:
        return None
    if len(present) < len(SEED_COLUMNS):
        raise ValueError(
            f"seed columns come as all of {SEED_COLUMNS}; missing {sorted(set(SEED_COLUMNS) - set(present))}"
        )
    try:
        seeds = rows[SEED_COLUMNS].to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):
        raise ValueError("seed columns must be numbers (radians) or null") from None
    given = ~np.isnan(seeds)
    bad = np.flatnonzero(given.any(axis=1) & ~given.all(axis=1))
    if bad.size:
        raise ValueError(f"rows {row_list(bad)} have some seed columns but not all six")
    bad = np.flatnonzero(np.isinf(seeds).any(axis=1))
    if bad.size:
        raise ValueError(f"rows {row_list(bad)} have infinite seeds")
    return seeds


def solve_rows(solver: IKSolver, poses: np.ndarray, seeds: np.ndarray | None, **options: object) -> IKResult:
    """Solve ``poses``; rows with a seed (no NaN) seeded, the others without one."""
    step = options.pop("max_joint_step", None)
    seeded = np.zeros(len(poses), dtype=bool) if seeds is None else ~np.isnan(seeds).any(axis=1)
    if not seeded.any():
        return solver.solve(poses, **options)
    if seeded.all():
        return solver.solve(poses, q_seed=seeds, max_joint_step=step, **options)
    parts = [
        (seeded, solver.solve(poses[seeded], q_seed=seeds[seeded], max_joint_step=step, **options)),
        (~seeded, solver.solve(poses[~seeded], **options)),
    ]
    fields = {}
    for name in IKResult.__dataclass_fields__:
        first = getattr(parts[0][1], name)
        merged = np.empty((len(poses),) + first.shape[1:], dtype=first.dtype)
        for rows, result in parts:
            merged[rows] = getattr(result, name)
        fields[name] = merged
    return IKResult(**fields)


class IKPyfuncModel(PythonModel):
    """Wraps IKSolver; the network's numpy export is its `numpy_network` artifact, the iklab
    metadata is read from the Keras network's MLmodel file (no TensorFlow needed for either)."""

    def load_context(self, context: object) -> None:
        from mlflow.models import Model

        # the metadata: from the model's own MLmodel (beside artifacts/), as IKSolver.load reads it;
        # the Keras copy's is the same, for a model directory copied without its top file
        top = Path(context.artifacts[NUMPY_NETWORK_ARTIFACT]).parent.parent / "MLmodel"
        source = top if top.is_file() else context.artifacts[NETWORK_ARTIFACT]
        metadata = Model.load(str(source)).metadata[MODEL_METADATA_KEY]
        self.solver = IKSolver(NumpyNetwork.load(context.artifacts[NUMPY_NETWORK_ARTIFACT]), metadata)
        self.solver.warm_up()

    # `pd.DataFrame`: what MLflow passes after enforcing the signature's columns. MLflow infers no
    # schema from this hint (the logged signature stays the one iklab.learning.model_logging writes) and wraps
    # no validation around it, so bad rows still reach poses_from_rows and its message.
    def predict(self, context: object, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        try:
            refine, max_iterations, step = checked_params(params)
            seeds = seeds_from_rows(model_input) if isinstance(model_input, pd.DataFrame) else None
            if step and seeds is None:
                raise ValueError(
                    "max_joint_step needs the seed columns seed_q0..seed_q5: without a seed there is no step to bound"
                )
            result = solve_rows(
                self.solver,
                poses_from_rows(model_input),
                seeds,
                refine=refine,
                max_iterations=max_iterations,
                max_joint_step=step or None,
            )
        except ValueError as exc:  # the caller's mistake: HTTP 400 with the message, not a 500
            raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from None
        return result_frame(result)


def checked_params(params: dict | None) -> tuple[bool, int, float]:
    """``(refine, max_iterations, max_joint_step)`` from a request's params, defaults filled in;
    ValueError naming the first bad one (null included: it never means "off")."""
    params = {**DEFAULT_PARAMS, **(params or {})}
    refine, iterations, step = params["refine"], params["max_iterations"], params["max_joint_step"]
    if not isinstance(refine, bool | np.bool_):
        raise ValueError(f"refine must be true or false, got {shown(refine)}")
    if isinstance(iterations, bool | np.bool_) or not isinstance(iterations, int | np.integer) or iterations < 0:
        raise ValueError(f"max_iterations must be an integer >= 0, got {shown(iterations)}")
    number = isinstance(step, int | float | np.integer | np.floating) and not isinstance(step, bool | np.bool_)
    if not (number and 0 <= step < np.inf):
        raise ValueError(f"max_joint_step must be a number >= 0 radians (0: none), got {shown(step)}")
    return bool(refine), int(iterations), float(step)

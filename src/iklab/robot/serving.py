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

from iklab.core.encodings import POSE_COLUMNS
from iklab.robot.model_metadata import MODEL_METADATA_KEY, NETWORK_ARTIFACT, NUMPY_NETWORK_ARTIFACT
from iklab.robot.network import NumpyNetwork
from iklab.robot.rows import (
    SEED_COLUMNS,
    checked_seeds,
    has_seed_columns,
    poses_from_array,
    require_pose_columns,
    result_columns,
    solve_request,
)
from iklab.robot.solver import IKResult, IKSolver


def poses_from_rows(rows: object) -> np.ndarray:
    """``(N, 7)`` rows (x, y, z, qw, qx, qy, qz) or a DataFrame with those columns -> ``(N, 4, 4)``."""
    if isinstance(rows, pd.DataFrame):
        require_pose_columns(rows.columns)
        # as one block, or by column: selecting them as a frame builds indexes (~1 ms a request)
        if list(rows.columns) == POSE_COLUMNS:
            rows = rows.to_numpy()
        else:
            rows = np.column_stack([rows[c].to_numpy() for c in POSE_COLUMNS]) if len(rows) else np.zeros((0, 7))
    return poses_from_array(rows)


def result_frame(result: IKResult) -> pd.DataFrame:
    """An IKResult as one row per pose (built in one go: a column added at a time costs ~0.2 ms each)."""
    return pd.DataFrame(result_columns(result))


def seeds_from_rows(rows: pd.DataFrame) -> np.ndarray | None:
    """The optional seed columns -> ``(N, 6)`` radians, NaN rows where no seed was given; None
    without seed columns. A row with some but not all six seeds is refused."""
    if not has_seed_columns(rows.columns):
        return None
    try:
        seeds = rows[SEED_COLUMNS].to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):
        raise ValueError("seed columns must be numbers (radians) or null") from None
    return checked_seeds(seeds)


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
            seeds = seeds_from_rows(model_input) if isinstance(model_input, pd.DataFrame) else None
            result = solve_request(self.solver, poses_from_rows(model_input), seeds, params)
        except ValueError as exc:  # the caller's mistake: HTTP 400 with the message, not a 500
            raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from None
        return result_frame(result)

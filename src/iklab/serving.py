"""The logged model as an MLflow pyfunc: pose rows in, joint angles (and FK-verified errors) out.

`train` logs this wrapper (the Keras network is one of its artifacts), so the
registered model serves as it is:

    mlflow models serve -m models:/ik-jaco@champion --env-manager local --port 5001
    curl -s http://127.0.0.1:5001/invocations -H 'Content-Type: application/json' \\
      -d '{"dataframe_split": {"columns": ["x","y","z","qw","qx","qy","qz"],
           "data": [[0.3, 0.1, 0.4, 0.5, 0.5, 0.5, 0.5]]}, "params": {"refine": true}}'

Input columns: x, y, z (metres, base frame), qw, qx, qy, qz (unit quaternion,
any sign). Output columns: q0..q5 (radians), position_error_m and
rotation_error_rad (FK of the returned joints against the request), success
(within 0.01 mm and 0.01 deg), within_region (inside the training region),
iterations (of refinement). Params: refine (default true), max_iterations.
Bad rows are refused as a whole request (HTTP 400) with the row numbers.

`iklab.packaging` logs this wrapper with the network and its metadata.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel

from .encodings import POSE_COLUMNS, poses_from_position_quat
from .refine import row_list
from .solver import IKResult, IKSolver

DEFAULT_PARAMS = {"refine": True, "max_iterations": 50}
NETWORK_ARTIFACT = "network"
# A quaternion this far from unit norm is a mistake, not rounding: refuse it rather than guess.
_QUATERNION_NORM_TOLERANCE = 1e-3


def poses_from_rows(rows: object) -> np.ndarray:
    """``(N, 7)`` rows (x, y, z, qw, qx, qy, qz) or a DataFrame with those columns -> ``(N, 4, 4)``."""
    if isinstance(rows, pd.DataFrame):
        missing = [c for c in POSE_COLUMNS if c not in rows.columns]
        if missing:
            raise ValueError(f"pose rows need columns {POSE_COLUMNS}; missing {missing}")
        rows = rows[POSE_COLUMNS]
    try:
        values = np.asarray(rows, dtype=np.float64)
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
    """An IKResult as one row per pose."""
    frame = pd.DataFrame(result.q, columns=[f"q{i}" for i in range(result.q.shape[1])])
    frame["position_error_m"] = result.position_error_m
    frame["rotation_error_rad"] = result.rotation_error_rad
    frame["success"] = result.success
    frame["within_region"] = result.within_region
    frame["iterations"] = result.iterations
    return frame


class IKPyfuncModel(PythonModel):
    """Wraps IKSolver; the Keras network and its iklab metadata are the `network` artifact."""

    def load_context(self, context: object) -> None:
        self.solver = IKSolver.load(context.artifacts[NETWORK_ARTIFACT])

    # `pd.DataFrame`: what MLflow passes after enforcing the signature's columns. MLflow infers no
    # schema from this hint (the logged signature stays the one iklab.packaging writes) and wraps
    # no validation around it, so bad rows still reach poses_from_rows and its message.
    def predict(self, context: object, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        params = {**DEFAULT_PARAMS, **(params or {})}
        try:
            result = self.solver.solve(
                poses_from_rows(model_input),
                refine=bool(params["refine"]),
                max_iterations=int(params["max_iterations"]),
            )
        except ValueError as exc:  # the caller's mistake: HTTP 400 with the message, not a 500
            raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from None
        return result_frame(result)

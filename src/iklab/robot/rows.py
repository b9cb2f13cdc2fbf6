"""A request's rows and params, checked, as numpy arrays: what both servers share, the MLflow
pyfunc (`iklab.robot.serving`, which adapts pandas frames to this) and iklab's own lean HTTP
server (`iklab.robot.http_server`, robot install only: no pandas).

Pose rows: x, y, z (metres, base frame), qw, qx, qy, qz (unit quaternion, any sign); optional
seed rows seed_q0..seed_q5 (radians; a row of NaN: no seed). Params: refine (default true),
max_iterations, max_joint_step (radians; 0: none). Every check raises ValueError with the words
the caller sees (HTTP 400).
"""

from __future__ import annotations

import numpy as np

from iklab.core.encodings import POSE_COLUMNS, poses_from_position_quat
from iklab.core.refine import row_list, shown
from iklab.robot.solver import IKResult, IKSolver

DEFAULT_PARAMS = {"refine": True, "max_iterations": 50, "max_joint_step": 0.0}
SEED_COLUMNS = [f"seed_q{i}" for i in range(6)]
# A quaternion this far from unit norm is a mistake, not rounding: refuse it rather than guess.
_QUATERNION_NORM_TOLERANCE = 1e-3


def require_pose_columns(columns: object) -> None:
    """ValueError naming the pose columns a request's ``columns`` lack."""
    missing = [c for c in POSE_COLUMNS if c not in columns]
    if missing:
        raise ValueError(f"pose rows need columns {POSE_COLUMNS}; missing {missing}")


def has_seed_columns(columns: object) -> bool:
    """Whether a request's ``columns`` carry seeds; ValueError if only some seed columns are there."""
    present = [c for c in SEED_COLUMNS if c in columns]
    if present and len(present) < len(SEED_COLUMNS):
        raise ValueError(
            f"seed columns come as all of {SEED_COLUMNS}; missing {sorted(set(SEED_COLUMNS) - set(present))}"
        )
    return bool(present)


def poses_from_array(rows: object) -> np.ndarray:
    """``(N, 7)`` rows (x, y, z, qw, qx, qy, qz) -> ``(N, 4, 4)``; ValueError naming the bad rows."""
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


def checked_seeds(seeds: np.ndarray) -> np.ndarray:
    """``(N, 6)`` float seeds, NaN rows where none was given; ValueError for a row with some
    seeds but not all six, or an infinite one."""
    given = ~np.isnan(seeds)
    bad = np.flatnonzero(given.any(axis=1) & ~given.all(axis=1))
    if bad.size:
        raise ValueError(f"rows {row_list(bad)} have some seed columns but not all six")
    bad = np.flatnonzero(np.isinf(seeds).any(axis=1))
    if bad.size:
        raise ValueError(f"rows {row_list(bad)} have infinite seeds")
    return seeds


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


def solve_request(solver: IKSolver, poses: np.ndarray, seeds: np.ndarray | None, params: dict | None) -> IKResult:
    """A request's answer: its params checked, then :func:`solve_rows`."""
    refine, max_iterations, step = checked_params(params)
    if step and seeds is None:
        raise ValueError(
            "max_joint_step needs the seed columns seed_q0..seed_q5: without a seed there is no step to bound"
        )
    return solve_rows(solver, poses, seeds, refine=refine, max_iterations=max_iterations, max_joint_step=step or None)


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


def result_columns(result: IKResult) -> dict[str, np.ndarray]:
    """An IKResult as columns, named as both servers answer them."""
    columns = {f"q{i}": result.q[:, i] for i in range(result.q.shape[1])}
    columns.update(
        position_error_m=result.position_error_m,
        rotation_error_rad=result.rotation_error_rad,
        success=result.success,
        within_region=result.within_region,
        iterations=result.iterations,
    )
    return columns

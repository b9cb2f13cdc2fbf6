"""Exact IK from approximate joints: batched damped least squares on the geometric Jacobian.

A network's answer is a few degrees from a solution; a handful of
Levenberg-Marquardt steps, vectorized over rows, close the gap to
micrometres. Every reported error is recomputed with :func:`fk`, never taken
from the solver's own bookkeeping.

Units: metres and radians; the Jacobian is in the base frame, rows
``[v (3); omega (3)]``, the same convention as roboticstoolbox's ``jacob0``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .kinematics import (
    Robot,
    as_joint_batch,
    fk_and_jacobian,
    fk_rotation_translation,
    rotation_angle_between,
    wrap_from,
)

# Per-row damping lambda is kept in this range. The floor keeps J J^T + lambda^2 I
# safely invertible at exact singularities (lambda^2 = 1e-12 against entries of
# order 0.1-1 m^2); above the ceiling steps are ~1e-6 of the gradient, i.e. the
# row is stuck (unreachable target or local minimum) and growing it is pointless.
_DAMPING_FLOOR = 1e-6
_DAMPING_CEILING = 1e3
# A target's rotation part must be orthonormal to this; float32-rounded poses pass.
_ROTATION_CHECK_TOLERANCE = 1e-6


@dataclass(frozen=True)
class RefineResult:
    """Output of :func:`refine`; errors are FK-verified at the returned ``q``."""

    q: np.ndarray  # (N, 6) refined joints, radians
    position_error_m: np.ndarray  # (N,) |p(q) - p_target|
    rotation_error_rad: np.ndarray  # (N,) geodesic angle between R(q) and R_target
    success: np.ndarray  # (N,) bool: both errors within tolerance
    iterations: np.ndarray  # (N,) LM iterations each row used (0: started within tolerance)


def rotation_log(rotation: np.ndarray) -> np.ndarray:
    """Log map of SO(3): ``(N, 3, 3)`` -> axis-angle vectors ``(N, 3)``, angle in [0, pi].

    The axis comes from the skew part ``R - R^T`` (2 sin(angle) axis), which
    vanishes at pi; past 90 degrees it is taken from the symmetric part
    ``(R + R^T)/2 - cos(angle) I = (1 - cos(angle)) axis axis^T`` instead.
    """
    r = np.asarray(rotation, dtype=np.float64)
    skew = np.stack([r[:, 2, 1] - r[:, 1, 2], r[:, 0, 2] - r[:, 2, 0], r[:, 1, 0] - r[:, 0, 1]], axis=1)
    sin_angle = np.linalg.norm(skew, axis=1) / 2.0
    cos_angle = (np.trace(r, axis1=1, axis2=2) - 1.0) / 2.0
    angle = np.arctan2(sin_angle, cos_angle)
    # angle / (2 sin(angle)), with its series 1/2 + angle^2/12 where sin(angle) ~ 0
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(sin_angle > 1e-8, angle / (2.0 * sin_angle), 0.5 + angle**2 / 12.0)
    vector = skew * scale[:, None]
    wide = np.flatnonzero(cos_angle < 0.0)
    if wide.size:
        symmetric = (r[wide] + np.swapaxes(r[wide], 1, 2)) / 2.0
        symmetric -= cos_angle[wide, None, None] * np.eye(3)
        # the column with the largest diagonal is the best-conditioned multiple of the axis
        column = np.argmax(np.diagonal(symmetric, axis1=1, axis2=2), axis=1)
        axis = symmetric[np.arange(wide.size), :, column]
        axis /= np.linalg.norm(axis, axis=1, keepdims=True)
        # the symmetric part fixes the axis up to sign; the skew part (sin >= 0) picks it
        axis[np.sum(axis * skew[wide], axis=1) < 0.0] *= -1.0
        vector[wide] = axis * angle[wide, None]
    return vector


def refine(
    robot: Robot,
    q0: np.ndarray,
    target_poses: np.ndarray,
    *,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
    max_iterations: int = 50,
    tolerance_m: float = 1e-5,
    tolerance_rad: float = 1e-5,
    damping: float = 1e-3,
) -> RefineResult:
    """Refine approximate IK solutions by batched damped least squares (Levenberg-Marquardt).

    ``q0`` ``(N, 6)`` radians and ``target_poses`` ``(N, 4, 4)`` -> :class:`RefineResult`.
    Each row keeps its own damping ``lambda`` (starting at ``damping``, then
    adapted by :func:`_update_damping`): a step
    ``dq = J^T (J J^T + lambda^2 I)^-1 e`` is accepted only if it lowers
    ``|e|``, with ``e = [p_target - p; log(R_target R^T)]``. Rows within both
    tolerances stop changing. ``lower``/``upper`` ``(6,)`` bound the joints
    whose box is narrower than 2*pi (q0 is first moved into the box, by 2*pi
    if that suffices, else to the nearer edge); other joints are free.
    """
    q, target_r, target_p = _check_inputs(q0, target_poses, max_iterations, tolerance_m, tolerance_rad, damping)
    low, high = _limit_bounds(lower, upper, q.shape[1])
    q = _project_into_limits(q, low, high)
    n = q.shape[0]
    rotation, position, jac = fk_and_jacobian(robot, q)
    error = _pose_error(rotation, position, target_r, target_p)
    cost = np.einsum("ni,ni->n", error, error)
    done = _within_tolerance(error, tolerance_m, tolerance_rad)
    mu, growth = np.full(n, float(damping) ** 2), np.full(n, 2.0)  # mu = lambda^2
    iterations = np.zeros(n, dtype=np.int64)
    for _ in range(max_iterations):
        rows = np.flatnonzero(~done)
        if rows.size == 0:
            break
        iterations[rows] += 1
        step = _damped_step(jac[rows], error[rows], np.sqrt(mu[rows]))
        trial_q = np.clip(q[rows] + step, low, high)
        trial_r, trial_p, trial_jac = fk_and_jacobian(robot, trial_q)
        trial_error = _pose_error(trial_r, trial_p, target_r[rows], target_p[rows])
        trial_cost = np.einsum("ni,ni->n", trial_error, trial_error)
        better = trial_cost < cost[rows]  # False for NaN: a blown-up step is just rejected
        mu[rows], growth[rows] = _update_damping(
            mu[rows], growth[rows], better, cost[rows], trial_cost, jac[rows], error[rows], trial_q - q[rows]
        )
        accepted = rows[better]
        q[accepted], jac[accepted] = trial_q[better], trial_jac[better]
        error[accepted], cost[accepted] = trial_error[better], trial_cost[better]
        done[accepted] = _within_tolerance(trial_error[better], tolerance_m, tolerance_rad)
    return verify(robot, q, target_r, target_p, tolerance_m, tolerance_rad, iterations, lower=lower, upper=upper)


def verify(
    robot: Robot,
    q: np.ndarray,
    target_r: np.ndarray,
    target_p: np.ndarray,
    tolerance_m: float,
    tolerance_rad: float,
    iterations: np.ndarray | None = None,
    *,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
) -> RefineResult:
    """Judge joints ``q`` ``(N, 6)`` against target rotations ``(N, 3, 3)`` and positions ``(N, 3)``
    by FK (independent of the Jacobian pass); ``iterations`` default to 0 (not refined).

    With joint limits ``lower``/``upper`` ``(6,)``, each angle is first moved into them by a
    multiple of 2*pi (:func:`into_limits`, FK is unchanged); a row with an angle that has no
    equivalent inside is not a success.
    """
    inside = np.ones(len(q), dtype=bool)
    if lower is not None or upper is not None:
        q, inside = into_limits(q, *_limit_arrays(lower, upper, q.shape[1]))
    rotation, position = fk_rotation_translation(robot, q)
    position_error = np.linalg.norm(position - target_p, axis=1)
    rotation_error = rotation_angle_between(rotation, target_r)
    success = (position_error <= tolerance_m) & (rotation_error <= tolerance_rad) & inside
    if iterations is None:
        iterations = np.zeros(len(q), dtype=np.int64)
    return RefineResult(
        q=q, position_error_m=position_error, rotation_error_rad=rotation_error, success=success, iterations=iterations
    )


def into_limits(q: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each angle of ``q`` ``(N, 6)`` inside ``[lower, upper]``, moved there by a multiple of 2*pi
    where it was outside and an equivalent lands inside -> (joints, ``(N,)`` bool: every angle
    of the row is inside). An angle already inside is returned bit for bit; one with no
    equivalent inside (a box narrower than 2*pi) keeps its value and its row is False."""
    q = np.asarray(q, dtype=np.float64)
    already = (q >= lower) & (q <= upper)
    wrapped = wrap_from(q, lower)
    fits = already | (wrapped <= upper)
    return np.where(already, q, np.where(fits, wrapped, q)), np.all(fits, axis=1)


def _update_damping(
    mu: np.ndarray,
    growth: np.ndarray,
    better: np.ndarray,
    cost: np.ndarray,
    trial_cost: np.ndarray,
    jac: np.ndarray,
    error: np.ndarray,
    step: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Nielsen's rule for ``mu = lambda^2`` per row, all ``(M,)`` but ``jac`` ``(M, 6, 6)``,
    ``error``/``step`` ``(M, 6)`` -> new ``mu``, ``growth``.

    Plain "/10 on success, *10 on failure" oscillates between a too-small
    lambda (step rejected) and a too-large one (tiny progress) in the curved
    valleys near singular targets (UR5 wrist: 100+ iterations). Scaling by
    the gain ratio rho = actual / predicted cost decrease settles lambda where
    the linear model holds (Madsen, Nielsen & Tingleff 2004, section 3.2).
    """
    residual = error - (jac @ step[:, :, None])[:, :, 0]
    predicted = cost - np.einsum("ni,ni->n", residual, residual)
    rho = np.clip((cost - trial_cost) / np.maximum(predicted, 1e-300), 0.0, 1.0)
    shrink = np.maximum(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3)
    mu = np.where(better, mu * shrink, mu * growth)
    growth = np.where(better, 2.0, np.minimum(growth * 2.0, 1e6))
    return np.clip(mu, _DAMPING_FLOOR**2, _DAMPING_CEILING**2), growth


def _damped_step(jac: np.ndarray, error: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """``dq = J^T (J J^T + lambda^2 I)^-1 e``: ``(M, 6, 6), (M, 6), (M,)`` -> ``(M, 6)``.

    The system is symmetric positive definite (lambda > 0), so it is solved by a
    Cholesky factorization written out over the batch: 2.8x faster here than
    ``np.linalg.solve`` on (M, 6, 6), which runs LAPACK once per row. A round-off
    negative pivot (lambda at its floor, exact singularity) gives NaN, and the
    caller rejects that step and raises lambda.
    """
    jt = np.ascontiguousarray(jac.transpose(1, 2, 0))  # (6 task rows, joints, M): contiguous rows
    system = np.einsum("ijm,kjm->ikm", jt, jt)
    diagonal = np.arange(system.shape[0])
    system[diagonal, diagonal] += lam**2
    with np.errstate(invalid="ignore", divide="ignore"):
        weights = _cholesky_solve(system, error.T)
    return np.einsum("ijm,im->mj", jt, weights)


def _cholesky_solve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Solve ``a x = b`` for SPD ``a`` ``(n, n, M)`` and ``b`` ``(n, M)``, column by column."""
    n = a.shape[0]
    low = [[None] * n for _ in range(n)]  # low[i][j], i >= j: (M,) entries of the factor
    for j in range(n):
        pivot = a[j, j] - sum((low[j][k] ** 2 for k in range(j)), start=np.zeros_like(a[j, j]))
        low[j][j] = np.sqrt(pivot)
        for i in range(j + 1, n):
            low[i][j] = (a[i, j] - sum((low[i][k] * low[j][k] for k in range(j)), start=np.zeros_like(a[i, j]))) / low[
                j
            ][j]
    y = [None] * n
    for i in range(n):  # forward: low y = b
        y[i] = (b[i] - sum((low[i][k] * y[k] for k in range(i)), start=np.zeros_like(b[i]))) / low[i][i]
    x = [None] * n
    for i in reversed(range(n)):  # back: low^T x = y
        x[i] = (y[i] - sum((low[k][i] * x[k] for k in range(i + 1, n)), start=np.zeros_like(b[i]))) / low[i][i]
    return np.stack(x)


def _pose_error(rotation: np.ndarray, position: np.ndarray, target_r: np.ndarray, target_p: np.ndarray) -> np.ndarray:
    """``[p_t - p; log(R_t R^T)]`` ``(M, 6)``: the base-frame twist that closes the gap."""
    relative = target_r @ np.swapaxes(rotation, 1, 2)
    return np.concatenate([target_p - position, rotation_log(relative)], axis=1)


def _within_tolerance(error: np.ndarray, tolerance_m: float, tolerance_rad: float) -> np.ndarray:
    """From the pose error ``(M, 6)``: |position part| and |log map| (the geodesic angle) within tolerance."""
    return (np.einsum("ni,ni->n", error[:, :3], error[:, :3]) <= tolerance_m**2) & (
        np.einsum("ni,ni->n", error[:, 3:], error[:, 3:]) <= tolerance_rad**2
    )


# --- input checks -------------------------------------------------------------


def row_list(rows: np.ndarray) -> str:
    shown = ", ".join(str(r) for r in rows[:10])
    return f"[{shown}{', ...' if rows.size > 10 else ''}] ({rows.size} row{'s' * (rows.size != 1)})"


def _joint_batch(q: np.ndarray, name: str) -> np.ndarray:
    q = as_joint_batch(q, 6, name)
    bad = np.flatnonzero(~np.all(np.isfinite(q), axis=1))
    if bad.size:
        raise ValueError(f"{name} has non-finite values in rows {row_list(bad)}")
    return q


def _check_inputs(
    q0: object, target_poses: object, max_iterations: int, tolerance_m: float, tolerance_rad: float, damping: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated copies: q ``(N, 6)``, target rotations ``(N, 3, 3)``, positions ``(N, 3)``."""
    q = _joint_batch(q0, "q0").copy()
    poses = validate_poses(target_poses)
    if poses.shape[0] != q.shape[0]:
        raise ValueError(
            f"q0 has {q.shape[0]} rows but target_poses has {poses.shape[0]}; "
            "give one target pose per starting configuration"
        )
    if not (isinstance(max_iterations, (int, np.integer)) and max_iterations >= 0):
        raise ValueError(f"max_iterations must be an integer >= 0, got {max_iterations!r}")
    for name, value in (("tolerance_m", tolerance_m), ("tolerance_rad", tolerance_rad), ("damping", damping)):
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return q, poses[:, :3, :3].copy(), poses[:, :3, 3].copy()


def validate_poses(target_poses: object) -> np.ndarray:
    """``(N, 4, 4)`` float64 poses, or ValueError naming the non-finite / non-rotation rows."""
    poses = np.asarray(target_poses, dtype=np.float64)
    if poses.ndim != 3 or poses.shape[1:] != (4, 4):
        raise ValueError(f"target_poses must have shape (N, 4, 4), got {poses.shape}")
    bad = np.flatnonzero(~np.all(np.isfinite(poses[:, :3, :]), axis=(1, 2)))
    if bad.size:
        raise ValueError(f"target_poses has non-finite values in rows {row_list(bad)}")
    bad = np.flatnonzero(np.any(poses[:, 3, :] != (0.0, 0.0, 0.0, 1.0), axis=1))
    if bad.size:
        raise ValueError(f"target_poses rows {row_list(bad)} are not homogeneous: the bottom row must be 0, 0, 0, 1")
    target_r = poses[:, :3, :3].copy()
    gram = np.swapaxes(target_r, 1, 2) @ target_r
    bad = np.flatnonzero(
        (np.max(np.abs(gram - np.eye(3)), axis=(1, 2)) > _ROTATION_CHECK_TOLERANCE) | (np.linalg.det(target_r) <= 0.0)
    )
    if bad.size:
        raise ValueError(
            f"target_poses rows {row_list(bad)} have a rotation part that is not "
            f"orthonormal with det +1 (within {_ROTATION_CHECK_TOLERANCE:g})"
        )
    return poses


def _limit_bounds(lower: object, upper: object, joints: int) -> tuple[np.ndarray, np.ndarray]:
    """``(joints,)`` bounds for clipping: +-inf for joints free to turn a full circle."""
    if lower is None and upper is None:
        return np.full(joints, -np.inf), np.full(joints, np.inf)
    low, high = _limit_arrays(lower, upper, joints)
    # a box of 2*pi or more contains every angle modulo 2*pi: clipping would only hurt
    free = high - low >= 2 * math.pi
    return np.where(free, -np.inf, low), np.where(free, np.inf, high)


def _limit_arrays(lower: object, upper: object, joints: int) -> tuple[np.ndarray, np.ndarray]:
    """Validated ``(joints,)`` float arrays of both limits."""
    if lower is None or upper is None:
        raise ValueError("give both lower and upper joint limits, or neither")
    low, high = np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64)
    if low.shape != (joints,) or high.shape != (joints,):
        raise ValueError(f"lower and upper must have shape ({joints},), got {low.shape}, {high.shape}")
    bad = np.flatnonzero(~(np.isfinite(low) & np.isfinite(high) & (low <= high)))
    if bad.size:
        raise ValueError(f"joint limits must be finite with lower <= upper; bad joints {bad.tolist()}")
    return low, high


def _project_into_limits(q: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Rows outside the box: shift by 2*pi into it if possible, else to the angularly nearer edge."""
    outside = (q < low) | (q > high)
    if not outside.any():
        return q  # untouched bit for bit, so rows already in the box stay exactly as given
    span_low = np.where(np.isfinite(low), low, 0.0)
    wrapped = wrap_from(q, span_low)
    past_high = wrapped - high
    past_low = span_low + 2 * math.pi - wrapped  # distance up to the next copy of low
    nearest_edge = np.where(past_high <= past_low, high, low)
    projected = np.where(wrapped <= high, wrapped, nearest_edge)
    return np.where(outside, projected, q)

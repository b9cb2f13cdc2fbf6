"""Exact IK from approximate joints: batched damped least squares on the geometric Jacobian.

A network's answer is a few degrees from a solution; a handful of
Levenberg-Marquardt steps close the gap to micrometres. The loops run compiled, one row at a
time (:mod:`iklab.core.refine_kernel`); this module checks inputs and limits around them. Every
reported error is recomputed by a forward pass of its own, never taken from the solver's
bookkeeping.

Units: metres and radians; the Jacobian is in the base frame, rows
``[v (3); omega (3)]``, the same convention as roboticstoolbox's ``jacob0``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from iklab.core.kinematics import (
    Robot,
    as_joint_batch,
    wrap_from,
)
from iklab.core.refine_kernel import pose_problems, refine_rows, robot_arrays, verify_rows

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
    adapted by Nielsen's rule, see :mod:`iklab.core.refine_kernel`): a step
    ``dq = J^T (J J^T + lambda^2 I)^-1 e`` is accepted only if it lowers
    ``|e|``, with ``e = [p_target - p; log(R_target R^T)]``. Rows within both
    tolerances stop changing. ``lower``/``upper`` ``(6,)`` bound the joints
    whose box is narrower than 2*pi (q0 is first moved into the box, by 2*pi
    if that suffices, else to the nearer edge); other joints are free.
    """
    q, target_r, target_p = _check_inputs(q0, target_poses, max_iterations, tolerance_m, tolerance_rad, damping)
    limits = JointLimits.of(lower, upper)
    return refine_checked(robot, q, target_r, target_p, limits, max_iterations, tolerance_m, tolerance_rad, damping)


@dataclass(frozen=True)
class JointLimits:
    """Validated joint limits, with the clipping bounds refinement uses (+-inf for a joint free
    to turn a full circle: a box of 2*pi or more contains every angle modulo 2*pi)."""

    lower: np.ndarray  # (6,)
    upper: np.ndarray  # (6,)
    clip_low: np.ndarray  # (6,)
    clip_high: np.ndarray  # (6,)

    @classmethod
    def of(cls, lower: object, upper: object, joints: int = 6) -> JointLimits | None:
        """From both limits (radians), or None for neither; ValueError for bad limits."""
        if lower is None and upper is None:
            return None
        low, high = _limit_arrays(lower, upper, joints)
        free = high - low >= 2 * math.pi
        return cls(low, high, np.where(free, -np.inf, low), np.where(free, np.inf, high))


_UNLIMITED = np.full(6, np.inf)


def refine_checked(
    robot: Robot,
    q: np.ndarray,
    target_r: np.ndarray,
    target_p: np.ndarray,
    limits: JointLimits | None,
    max_iterations: int = 50,
    tolerance_m: float = 1e-5,
    tolerance_rad: float = 1e-5,
    damping: float = 1e-3,
    exact_tolerance: float | None = None,
) -> RefineResult:
    """:func:`refine` on inputs already checked: ``q`` ``(N, 6)`` float64 (copied), target
    rotations ``(N, 3, 3)`` and positions ``(N, 3)`` contiguous float64 (the solver's fast path).
    ``q`` itself is not changed. With ``exact_tolerance`` (metres and radians) each row goes on
    to it within ``max_iterations`` (Newton: one or two steps more), while success is still
    judged at ``tolerance_m``/``tolerance_rad``: a row short of the finish is kept."""
    if limits is None:
        low, high = -_UNLIMITED, _UNLIMITED
    else:
        low, high = limits.clip_low, limits.clip_high
    q = np.array(q, dtype=np.float64, order="C")  # a copy: moved into the box and refined in place
    iterations = refine_rows(
        robot_arrays(robot),
        q,
        target_r,
        target_p,
        low,
        high,
        int(max_iterations),
        float(tolerance_m if exact_tolerance is None else min(tolerance_m, exact_tolerance)),
        float(tolerance_rad if exact_tolerance is None else min(tolerance_rad, exact_tolerance)),
        float(damping),
        _DAMPING_FLOOR,
        _DAMPING_CEILING,
    )
    return verify_checked(robot, q, target_r, target_p, limits, tolerance_m, tolerance_rad, iterations)


# solve_all's finish (refine_checked's ``exact_tolerance``): rows of one solution then agree to
# about 1e-8 rad even next to a singularity, where a 1e-5 m stop leaves up to 0.016 rad in the
# joints (docs/ssik.md)
EXACT_TOLERANCE = 1e-10  # metres and radians


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
    q = np.ascontiguousarray(_joint_batch(q, "q"))
    target_r = np.ascontiguousarray(target_r, dtype=np.float64)
    target_p = np.ascontiguousarray(target_p, dtype=np.float64)
    limits = JointLimits.of(lower, upper, q.shape[1])
    return verify_checked(robot, q, target_r, target_p, limits, tolerance_m, tolerance_rad, iterations)


def verify_checked(
    robot: Robot,
    q: np.ndarray,
    target_r: np.ndarray,
    target_p: np.ndarray,
    limits: JointLimits | None,
    tolerance_m: float,
    tolerance_rad: float,
    iterations: np.ndarray | None = None,
) -> RefineResult:
    """:func:`verify` on contiguous float64 inputs already checked (the solver's fast path)."""
    lower, upper = (None, None) if limits is None else (limits.lower, limits.upper)
    q, position_error, rotation_error, inside = verify_rows(robot_arrays(robot), q, target_r, target_p, lower, upper)
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


# --- input checks -------------------------------------------------------------


def shown(value: object, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters: an error never echoes a huge value back whole."""
    text = repr(value)
    if len(text) <= limit:
        return text
    tail = f"... ({len(text):,} characters)"
    return text[: limit - len(tail)] + tail


def row_list(rows: np.ndarray) -> str:
    listed = ", ".join(str(r) for r in rows[:10])
    return f"[{listed}{', ...' if rows.size > 10 else ''}] ({rows.size} row{'s' * (rows.size != 1)})"


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
    check_options(max_iterations, tolerance_m, tolerance_rad, damping)
    return q, poses[:, :3, :3].copy(), poses[:, :3, 3].copy()


def check_options(max_iterations: int, tolerance_m: float, tolerance_rad: float, damping: float = 1e-3) -> None:
    """ValueError naming the first bad refinement option."""
    if not (isinstance(max_iterations, (int, np.integer)) and max_iterations >= 0):
        raise ValueError(f"max_iterations must be an integer >= 0, got {max_iterations!r}")
    for name, value in (("tolerance_m", tolerance_m), ("tolerance_rad", tolerance_rad), ("damping", damping)):
        if not (isinstance(value, (int, float, np.floating, np.integer)) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def validate_poses(target_poses: object) -> np.ndarray:
    """``(N, 4, 4)`` float64 poses, or ValueError naming the non-finite / non-rotation rows."""
    poses = np.asarray(target_poses, dtype=np.float64)
    if poses.ndim != 3 or poses.shape[1:] != (4, 4):
        raise ValueError(f"target_poses must have shape (N, 4, 4), got {poses.shape}")
    problems = pose_problems(np.ascontiguousarray(poses), _ROTATION_CHECK_TOLERANCE)
    if problems.any():
        bad = np.flatnonzero(problems == problems[problems > 0].min())
        if problems[bad[0]] == 1:
            raise ValueError(f"target_poses has non-finite values in rows {row_list(bad)}")
        if problems[bad[0]] == 2:
            raise ValueError(
                f"target_poses rows {row_list(bad)} are not homogeneous: the bottom row must be 0, 0, 0, 1"
            )
        raise ValueError(
            f"target_poses rows {row_list(bad)} have a rotation part that is not "
            f"orthonormal with det +1 (within {_ROTATION_CHECK_TOLERANCE:g})"
        )
    return poses


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

"""Compiled (numba) inner loops of :mod:`iklab.core.refine`: damped least squares and the FK check,
one row at a time, so one pose costs microseconds instead of numpy's per-call overhead.

Why row by row: a 6-DOF row is a few hundred flops per iteration. numpy, vectorized over rows,
pays ~1 us per call on dozens of calls per iteration, which dominates below a few hundred
rows; here a row's whole refinement is one compiled loop. Rows are independent, so large
batches are spread over the cores (``prange``); small ones stay on one thread (starting the
pool costs more than they take). Same algorithm as before (Levenberg-Marquardt with
Nielsen's damping rule, clipping to limits narrower than a full turn); figures in
bench/bench_refine.py.

The FK check (:func:`verify_rows`) uses its own forward pass (:func:`_fk_row`), not the
Jacobian pass of the solver, so a reported error never comes from the solver's bookkeeping.
Both are tested against :func:`iklab.core.kinematics.fk` (itself tested against roboticstoolbox).

numba compiles on first use (a few seconds; cached beside this file where it is writable).
"""

from __future__ import annotations

import functools
import math
import os
import threading
import weakref

import numba
import numpy as np
from numba import njit, prange

from iklab.core.kinematics import Robot

# A batch this large runs on all cores; below it, one thread (measured: bench/bench_refine.py).
PARALLEL_ROWS = 64


def quiet_threads() -> None:
    """numba's thread pool without spinning: the default here (OpenMP) keeps its workers
    spinning after a parallel loop, fighting OpenBLAS's (the network's matrix products) for the
    cores; a 100-pose solve took 8 ms instead of 1 ms on 2 cores. The workqueue layer sleeps.
    Only where the user has not chosen a layer (NUMBA_THREADING_LAYER); takes effect before
    numba's first parallel loop in the process."""
    if "NUMBA_THREADING_LAYER" not in os.environ:
        numba.config.THREADING_LAYER = "workqueue"


quiet_threads()

# numba's workqueue layer aborts the whole process ("Concurrent access has been detected") when
# two Python threads enter a parallel loop at once, and robot code calls the solver from many
# threads. One parallel loop at a time per process: each already spreads over every core, so
# waiting costs no throughput. Serial kernels need no lock.
PARALLEL_LOCK = threading.Lock()


def run_parallel(kernel: object, *args: object) -> object:
    """Call a ``parallel=True`` kernel under :data:`PARALLEL_LOCK`."""
    with PARALLEL_LOCK:
        return kernel(*args)


_TWO_PI = 2.0 * math.pi


_ROBOT_ARRAYS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def robot_arrays(robot: Robot) -> tuple[np.ndarray, ...]:
    """The DH table as the kernels take it: d, a, cos(alpha), sin(alpha), offset, sign, base, tool
    (built once per robot: a robot is immutable)."""
    arrays = _ROBOT_ARRAYS.get(robot)
    if arrays is None:
        arrays = _ROBOT_ARRAYS[robot] = _robot_arrays(robot)
    return arrays


def _robot_arrays(robot: Robot) -> tuple[np.ndarray, ...]:
    return tuple(
        np.ascontiguousarray(v, dtype=np.float64)
        for v in (robot.d, robot.a, np.cos(robot.alpha), np.sin(robot.alpha), robot.offset, robot.sign)
    ) + (np.ascontiguousarray(robot.base, dtype=np.float64), np.ascontiguousarray(robot.tool, dtype=np.float64))


@njit(cache=True, fastmath=False)
def _fk_row(d, a, ca, sa, offset, sign, base, tool, q, rotation, position):
    """FK of one row ``q`` (6,) into ``rotation`` (3, 3) and ``position`` (3,) (columns x, y, z)."""
    x0, x1, x2 = base[0, 0], base[1, 0], base[2, 0]
    y0, y1, y2 = base[0, 1], base[1, 1], base[2, 1]
    z0, z1, z2 = base[0, 2], base[1, 2], base[2, 2]
    p0, p1, p2 = base[0, 3], base[1, 3], base[2, 3]
    for i in range(6):
        theta = sign[i] * q[i] + offset[i]
        ct, st = math.cos(theta), math.sin(theta)
        u0, u1, u2 = x0 * ct + y0 * st, x1 * ct + y1 * st, x2 * ct + y2 * st
        v0, v1, v2 = y0 * ct - x0 * st, y1 * ct - x1 * st, y2 * ct - x2 * st
        p0, p1, p2 = p0 + d[i] * z0 + a[i] * u0, p1 + d[i] * z1 + a[i] * u1, p2 + d[i] * z2 + a[i] * u2
        x0, x1, x2 = u0, u1, u2
        y0, y1, y2 = v0 * ca[i] + z0 * sa[i], v1 * ca[i] + z1 * sa[i], v2 * ca[i] + z2 * sa[i]
        z0, z1, z2 = z0 * ca[i] - v0 * sa[i], z1 * ca[i] - v1 * sa[i], z2 * ca[i] - v2 * sa[i]
    tx, ty, tz = tool[0, 3], tool[1, 3], tool[2, 3]
    position[0] = p0 + x0 * tx + y0 * ty + z0 * tz
    position[1] = p1 + x1 * tx + y1 * ty + z1 * tz
    position[2] = p2 + x2 * tx + y2 * ty + z2 * tz
    for j in range(3):
        rotation[0, j] = x0 * tool[0, j] + y0 * tool[1, j] + z0 * tool[2, j]
        rotation[1, j] = x1 * tool[0, j] + y1 * tool[1, j] + z1 * tool[2, j]
        rotation[2, j] = x2 * tool[0, j] + y2 * tool[1, j] + z2 * tool[2, j]


@njit(cache=True)
def _fk_jacobian_row(d, a, ca, sa, offset, sign, base, tool, q, rotation, position, jac):
    """FK and geometric Jacobian (base frame, rows [v; omega]) of one row, as in
    :func:`iklab.core.kinematics.fk_and_jacobian`. No allocation: frames are scalars, and each
    joint's origin waits in the linear rows of its column until the lever arm is known."""
    x0, x1, x2 = base[0, 0], base[1, 0], base[2, 0]
    y0, y1, y2 = base[0, 1], base[1, 1], base[2, 1]
    z0, z1, z2 = base[0, 2], base[1, 2], base[2, 2]
    p0, p1, p2 = base[0, 3], base[1, 3], base[2, 3]
    for i in range(6):
        jac[0, i], jac[1, i], jac[2, i] = p0, p1, p2
        jac[3, i], jac[4, i], jac[5, i] = z0, z1, z2
        theta = sign[i] * q[i] + offset[i]
        ct, st = math.cos(theta), math.sin(theta)
        u0, u1, u2 = x0 * ct + y0 * st, x1 * ct + y1 * st, x2 * ct + y2 * st
        v0, v1, v2 = y0 * ct - x0 * st, y1 * ct - x1 * st, y2 * ct - x2 * st
        p0, p1, p2 = p0 + d[i] * z0 + a[i] * u0, p1 + d[i] * z1 + a[i] * u1, p2 + d[i] * z2 + a[i] * u2
        x0, x1, x2 = u0, u1, u2
        y0, y1, y2 = v0 * ca[i] + z0 * sa[i], v1 * ca[i] + z1 * sa[i], v2 * ca[i] + z2 * sa[i]
        z0, z1, z2 = z0 * ca[i] - v0 * sa[i], z1 * ca[i] - v1 * sa[i], z2 * ca[i] - v2 * sa[i]
    tx, ty, tz = tool[0, 3], tool[1, 3], tool[2, 3]
    position[0] = p0 + x0 * tx + y0 * ty + z0 * tz
    position[1] = p1 + x1 * tx + y1 * ty + z1 * tz
    position[2] = p2 + x2 * tx + y2 * ty + z2 * tz
    for j in range(3):
        rotation[0, j] = x0 * tool[0, j] + y0 * tool[1, j] + z0 * tool[2, j]
        rotation[1, j] = x1 * tool[0, j] + y1 * tool[1, j] + z1 * tool[2, j]
        rotation[2, j] = x2 * tool[0, j] + y2 * tool[1, j] + z2 * tool[2, j]
    for i in range(6):
        l0, l1, l2 = position[0] - jac[0, i], position[1] - jac[1, i], position[2] - jac[2, i]
        w0, w1, w2 = jac[3, i], jac[4, i], jac[5, i]
        s = sign[i]
        jac[0, i] = s * (w1 * l2 - w2 * l1)
        jac[1, i] = s * (w2 * l0 - w0 * l2)
        jac[2, i] = s * (w0 * l1 - w1 * l0)
        jac[3, i], jac[4, i], jac[5, i] = s * w0, s * w1, s * w2


@njit(cache=True)
def _pose_error_row(rotation, position, target_r, target_p, error):
    """``error`` (6,) = [p_t - p; log(R_t R^T)], as :func:`iklab.core.refine.rotation_log` computes it."""
    for k in range(3):
        error[k] = target_p[k] - position[k]

    def entry(i, j):  # (R_t R^T)[i, j]
        return target_r[i, 0] * rotation[j, 0] + target_r[i, 1] * rotation[j, 1] + target_r[i, 2] * rotation[j, 2]

    r00, r01, r02 = entry(0, 0), entry(0, 1), entry(0, 2)
    r10, r11, r12 = entry(1, 0), entry(1, 1), entry(1, 2)
    r20, r21, r22 = entry(2, 0), entry(2, 1), entry(2, 2)
    s0, s1, s2 = r21 - r12, r02 - r20, r10 - r01
    sin_angle = math.sqrt(s0 * s0 + s1 * s1 + s2 * s2) / 2.0
    cos_angle = (r00 + r11 + r22 - 1.0) / 2.0
    angle = math.atan2(sin_angle, cos_angle)
    if cos_angle >= 0.0:
        scale = angle / (2.0 * sin_angle) if sin_angle > 1e-8 else 0.5 + angle * angle / 12.0
        error[3], error[4], error[5] = s0 * scale, s1 * scale, s2 * scale
        return
    # past 90 degrees: the axis from the symmetric part (R + R^T)/2 - cos I = (1 - cos) axis axis^T,
    # its column with the largest diagonal (the best-conditioned multiple of the axis)
    if r00 >= r11 and r00 >= r22:
        a0, a1, a2 = r00 - cos_angle, (r10 + r01) / 2.0, (r20 + r02) / 2.0
    elif r11 >= r22:
        a0, a1, a2 = (r01 + r10) / 2.0, r11 - cos_angle, (r21 + r12) / 2.0
    else:
        a0, a1, a2 = (r02 + r20) / 2.0, (r12 + r21) / 2.0, r22 - cos_angle
    norm = math.sqrt(a0 * a0 + a1 * a1 + a2 * a2)
    a0, a1, a2 = a0 / norm, a1 / norm, a2 / norm
    if a0 * s0 + a1 * s1 + a2 * s2 < 0.0:  # the skew part (sin >= 0) picks the sign
        a0, a1, a2 = -a0, -a1, -a2
    error[3], error[4], error[5] = a0 * angle, a1 * angle, a2 * angle


@njit(cache=True)
def _damped_step_row(jac, error, mu, step, low):
    """``step = J^T (J J^T + mu I)^-1 e`` by Cholesky into ``low`` (6, 6) scratch; a round-off
    negative pivot gives NaN (the caller rejects the step)."""
    for j in range(6):
        for i in range(j, 6):
            total = mu if i == j else 0.0  # (J J^T + mu I)[i, j]
            for k in range(6):
                total += jac[i, k] * jac[j, k]
            for k in range(j):
                total -= low[i, k] * low[j, k]
            if i == j:
                low[j, j] = math.sqrt(total) if total >= 0.0 else math.nan
            else:
                low[i, j] = total / low[j, j]
    w0 = error[0] / low[0, 0]  # forward: low w = e, into step as scratch
    step[0] = w0
    for i in range(1, 6):
        total = error[i]
        for k in range(i):
            total -= low[i, k] * step[k]
        step[i] = total / low[i, i]
    for i in range(5, -1, -1):  # back: low^T w = y
        total = step[i]
        for k in range(i + 1, 6):
            total -= low[k, i] * step[k]
        step[i] = total / low[i, i]
    w = (step[0], step[1], step[2], step[3], step[4], step[5])
    for j in range(6):  # step = J^T w
        step[j] = (
            jac[0, j] * w[0]
            + jac[1, j] * w[1]
            + jac[2, j] * w[2]
            + jac[3, j] * w[3]
            + jac[4, j] * w[4]
            + jac[5, j] * w[5]
        )


@njit(cache=True)
def _within(error, tolerance_m, tolerance_rad):
    position = error[0] * error[0] + error[1] * error[1] + error[2] * error[2]
    rotation = error[3] * error[3] + error[4] * error[4] + error[5] * error[5]
    return position <= tolerance_m * tolerance_m and rotation <= tolerance_rad * tolerance_rad


@njit(cache=True)
def _scratch():
    """One row's work arrays: allocated once per block of rows (allocation under prange
    serializes the threads on the allocator)."""
    return (
        np.empty((3, 3)),  # rotation
        np.empty(3),  # position
        np.empty((6, 6)),  # Jacobian
        np.empty((3, 3)),  # trial rotation
        np.empty(3),  # trial position
        np.empty((6, 6)),  # trial Jacobian
        np.empty(6),  # error
        np.empty(6),  # trial error
        np.empty(6),  # step
        np.empty(6),  # trial q
        np.empty((6, 6)),  # the Cholesky factor
    )


_TWO_PI = 2.0 * math.pi


@njit(cache=True)
def _project_row(q, low, high):
    """An angle outside ``[low, high]``: moved by 2*pi into it if an equivalent fits, else to the
    angularly nearer edge; one inside is untouched, bit for bit (NaN too: it compares False)."""
    for k in range(q.shape[0]):
        if q[k] < low[k] or q[k] > high[k]:
            span_low = low[k] if math.isfinite(low[k]) else 0.0
            wrapped = span_low + (q[k] - span_low) % _TWO_PI  # Python's modulo, as np.mod
            if wrapped <= high[k]:
                q[k] = wrapped
            else:
                past_high = wrapped - high[k]
                past_low = span_low + _TWO_PI - wrapped  # distance up to the next copy of low
                q[k] = high[k] if past_high <= past_low else low[k]


@njit(cache=True)
def _refine_row(robot, q, target_r, target_p, low, high, max_iterations, tol_m, tol_rad, mu0, floor, ceiling, work):
    """Refine one row ``q`` (6,) in place with ``work`` from :func:`_scratch`, first moved into
    the box (:func:`_project_row`); returns the iterations used."""
    d, a, ca, sa, offset, sign, base, tool = robot
    _project_row(q, low, high)
    rotation, position, jac, trial_r, trial_p, trial_jac, error, trial_error, step, trial_q, factor = work
    _fk_jacobian_row(d, a, ca, sa, offset, sign, base, tool, q, rotation, position, jac)
    _pose_error_row(rotation, position, target_r, target_p, error)
    cost = 0.0
    for k in range(6):
        cost += error[k] * error[k]
    mu, growth = mu0, 2.0
    iterations = 0
    while iterations < max_iterations and not _within(error, tol_m, tol_rad):
        iterations += 1
        _damped_step_row(jac, error, mu, step, factor)
        for k in range(6):
            trial_q[k] = min(max(q[k] + step[k], low[k]), high[k])
        _fk_jacobian_row(d, a, ca, sa, offset, sign, base, tool, trial_q, trial_r, trial_p, trial_jac)
        _pose_error_row(trial_r, trial_p, target_r, target_p, trial_error)
        trial_cost = 0.0
        for k in range(6):
            trial_cost += trial_error[k] * trial_error[k]
        better = trial_cost < cost  # False for NaN: a blown-up step is just rejected
        # Nielsen's rule for mu = lambda^2, on the step actually taken. Plain "/10 on success,
        # *10 on failure" oscillates between a too-small lambda (step rejected) and a too-large
        # one (tiny progress) in the curved valleys near singular targets (UR5 wrist: 100+
        # iterations). Scaling by the gain ratio rho = actual / predicted cost decrease settles
        # lambda where the linear model holds (Madsen, Nielsen & Tingleff 2004, section 3.2).
        predicted = cost
        for i in range(6):
            residual = error[i]
            for j in range(6):
                residual -= jac[i, j] * (trial_q[j] - q[j])
            predicted -= residual * residual
        if better:
            rho = min(max((cost - trial_cost) / max(predicted, 1e-300), 0.0), 1.0)
            mu *= max(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3)
            growth = 2.0
            q[:] = trial_q
            jac[:, :] = trial_jac
            error[:] = trial_error
            cost = trial_cost
        else:
            mu *= growth
            growth = min(growth * 2.0, 1e6)
        mu = min(max(mu, floor * floor), ceiling * ceiling)
    return iterations


@njit(cache=True)
def _refine_block(
    robot,
    q,
    target_r,
    target_p,
    low,
    high,
    max_iterations,
    tol_m,
    tol_rad,
    mu0,
    floor,
    ceiling,
    iterations,
    start,
    stop,
):
    work = _scratch()
    for row in range(start, stop):
        iterations[row] = _refine_row(
            robot,
            q[row],
            target_r[row],
            target_p[row],
            low,
            high,
            max_iterations,
            tol_m,
            tol_rad,
            mu0,
            floor,
            ceiling,
            work,
        )


# Two kernels, not one function compiled twice: numba's cache keys a function by its name and
# line, not by `parallel`, so one compiled twice would load the other's machine code.
@njit(cache=True)
def _refine_rows_serial(
    robot, q, target_r, target_p, low, high, max_iterations, tol_m, tol_rad, mu0, floor, ceiling, iterations, blocks
):
    _refine_block(
        robot,
        q,
        target_r,
        target_p,
        low,
        high,
        max_iterations,
        tol_m,
        tol_rad,
        mu0,
        floor,
        ceiling,
        iterations,
        0,
        q.shape[0],
    )


@njit(cache=True, parallel=True)
def _refine_rows_parallel(
    robot, q, target_r, target_p, low, high, max_iterations, tol_m, tol_rad, mu0, floor, ceiling, iterations, blocks
):
    n = q.shape[0]
    for block in prange(blocks):
        _refine_block(
            robot,
            q,
            target_r,
            target_p,
            low,
            high,
            max_iterations,
            tol_m,
            tol_rad,
            mu0,
            floor,
            ceiling,
            iterations,
            block * n // blocks,
            (block + 1) * n // blocks,
        )


def refine_rows(
    robot: tuple[np.ndarray, ...],
    q: np.ndarray,
    target_r: np.ndarray,
    target_p: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    max_iterations: int,
    tolerance_m: float,
    tolerance_rad: float,
    damping: float,
    floor: float,
    ceiling: float,
) -> np.ndarray:
    """Refine every row of ``q`` ``(N, 6)`` (contiguous float64, changed in place) toward the
    targets ``(N, 3, 3)``, ``(N, 3)``; ``robot`` from :func:`robot_arrays`. Returns ``(N,)``
    iterations. ``low``/``high`` ``(6,)`` clip every step (+-inf: free)."""
    kernel, blocks = _kernel_and_blocks(_refine_rows_serial, _refine_rows_parallel, q.shape[0])
    iterations = np.zeros(q.shape[0], dtype=np.int64)
    kernel(
        robot,
        q,
        target_r,
        target_p,
        low,
        high,
        max_iterations,
        tolerance_m,
        tolerance_rad,
        damping**2,
        floor,
        ceiling,
        iterations,
        blocks,
    )
    return iterations


def _kernel_and_blocks(serial: object, parallel: object, rows: int) -> tuple[object, int]:
    """One block on one thread for small batches; else blocks enough to balance the threads."""
    if rows < PARALLEL_ROWS:
        return serial, 1
    return functools.partial(run_parallel, parallel), min(rows, 16 * numba.get_num_threads())


@njit(cache=True)
def _verify_block(
    robot, q, target_r, target_p, lower, upper, limited, out_q, position_error, rotation_error, inside, start, stop
):
    d, a, ca, sa, offset, sign, base, tool = robot
    rotation, position = np.empty((3, 3)), np.empty(3)
    for row in range(start, stop):
        row_inside = True
        for k in range(6):
            value = q[row, k]
            if limited and not (lower[k] <= value <= upper[k]):
                wrapped = lower[k] + (value - lower[k]) % _TWO_PI  # smallest equivalent >= lower
                if wrapped <= upper[k]:
                    value = wrapped
                else:
                    row_inside = False
            out_q[row, k] = value
        _fk_row(d, a, ca, sa, offset, sign, base, tool, out_q[row], rotation, position)
        e0, e1, e2 = position[0] - target_p[row, 0], position[1] - target_p[row, 1], position[2] - target_p[row, 2]
        position_error[row] = math.sqrt(e0 * e0 + e1 * e1 + e2 * e2)
        rotation_error[row] = _angle_between(rotation, target_r[row])
        inside[row] = row_inside


@njit(cache=True)
def _angle_between(r, t):
    """Geodesic angle between rotations ``r`` and ``t`` (3, 3): of R^T R_t, as
    kinematics.rotation_angle_between computes it (atan2 of |sin| and cos)."""

    def rel(i, j):  # (R^T R_t)[i, j]
        return r[0, i] * t[0, j] + r[1, i] * t[1, j] + r[2, i] * t[2, j]

    s0, s1, s2 = rel(2, 1) - rel(1, 2), rel(0, 2) - rel(2, 0), rel(1, 0) - rel(0, 1)
    cos_angle = (rel(0, 0) + rel(1, 1) + rel(2, 2) - 1.0) / 2.0
    return math.atan2(math.sqrt(s0 * s0 + s1 * s1 + s2 * s2) / 2.0, cos_angle)


@njit(cache=True)
def _verify_rows_serial(
    robot, q, target_r, target_p, lower, upper, limited, out_q, position_error, rotation_error, inside, blocks
):
    _verify_block(
        robot,
        q,
        target_r,
        target_p,
        lower,
        upper,
        limited,
        out_q,
        position_error,
        rotation_error,
        inside,
        0,
        q.shape[0],
    )


@njit(cache=True, parallel=True)
def _verify_rows_parallel(
    robot, q, target_r, target_p, lower, upper, limited, out_q, position_error, rotation_error, inside, blocks
):
    n = q.shape[0]
    for block in prange(blocks):
        _verify_block(
            robot,
            q,
            target_r,
            target_p,
            lower,
            upper,
            limited,
            out_q,
            position_error,
            rotation_error,
            inside,
            block * n // blocks,
            (block + 1) * n // blocks,
        )


def verify_rows(
    robot: tuple[np.ndarray, ...],
    q: np.ndarray,
    target_r: np.ndarray,
    target_p: np.ndarray,
    lower: np.ndarray | None,
    upper: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """FK check of ``q`` ``(N, 6)`` against the targets -> (joints moved into the limits by 2*pi
    where an equivalent fits, position error m, rotation error rad, every angle inside)."""
    n = q.shape[0]
    out_q, position_error, rotation_error = np.empty((n, 6)), np.empty(n), np.empty(n)
    inside = np.empty(n, dtype=np.bool_)
    limited = lower is not None
    if not limited:
        lower = upper = np.zeros(6)
    kernel, blocks = _kernel_and_blocks(_verify_rows_serial, _verify_rows_parallel, n)
    kernel(robot, q, target_r, target_p, lower, upper, limited, out_q, position_error, rotation_error, inside, blocks)
    return out_q, position_error, rotation_error, inside


@njit(cache=True)
def pose_problems(poses, rotation_tolerance):
    """Per row of ``poses`` ``(N, 4, 4)``: 0 fine, 1 a non-finite entry in the top three rows,
    2 a bottom row other than 0, 0, 0, 1, 3 a rotation part that is not orthonormal with
    det +1 (within ``rotation_tolerance``)."""
    problems = np.zeros(poses.shape[0], dtype=np.int8)
    for n in range(poses.shape[0]):
        r = poses[n]
        finite = True
        for i in range(3):
            for j in range(4):
                finite = finite and math.isfinite(r[i, j])
        if not finite:
            problems[n] = 1
            continue
        if r[3, 0] != 0.0 or r[3, 1] != 0.0 or r[3, 2] != 0.0 or r[3, 3] != 1.0:
            problems[n] = 2
            continue
        worst = 0.0
        for i in range(3):
            for j in range(3):
                gram = r[0, i] * r[0, j] + r[1, i] * r[1, j] + r[2, i] * r[2, j]
                worst = max(worst, abs(gram - (1.0 if i == j else 0.0)))
        det = (
            r[0, 0] * (r[1, 1] * r[2, 2] - r[1, 2] * r[2, 1])
            - r[0, 1] * (r[1, 0] * r[2, 2] - r[1, 2] * r[2, 0])
            + r[0, 2] * (r[1, 0] * r[2, 1] - r[1, 1] * r[2, 0])
        )
        if worst > rotation_tolerance or not det > 0.0:
            problems[n] = 3
    return problems

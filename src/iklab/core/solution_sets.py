"""Every IK solution of a pose: distinct solution sets, multi-start references, coverage.

A 6R arm reaches most poses of its full joint range in several ways (up to 8 for the usual
wrist-partitioned arms: shoulder left/right x elbow up/down x wrist flip). A solution set is
the distinct exact solutions found for one pose: two solutions are the same when every joint
agrees within ``DISTINCT_RAD`` modulo 2*pi.

The reference for a learned solver is multi-start numerical IK: refinement from many
uniformly drawn joint vectors, its exact answers deduplicated (:func:`multi_start`). Coverage
(:func:`compare_sets`) is the share of the reference's solutions a solver also found.

Numpy and numba only (robot side).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
from numba import njit

from iklab.core.kinematics import Robot, wrap_angle
from iklab.core.refine import JointLimits, refine_checked

_TWO_PI = 2.0 * math.pi
DISTINCT_RAD = math.radians(1.0)  # solutions closer than this in every joint are one solution
# ... once finished to 1e-10 m and rad (solve_all; refine_checked's exact_tolerance): two branches about to
# meet at a singularity can be a fraction of a degree apart, and rows of one branch agree to ~1e-8
EXACT_DISTINCT_RAD = 1e-3
MULTI_START_ITERATIONS = 100  # random starts are far from any solution: more steps than a network's answer needs
# Iteration caps a speed comparison tries multi-start at: fewer steps per start and more starts
# can be cheaper for the same coverage (Puma560, 500 poses, ~97% coverage: 64 starts of at most
# 20 steps took 1,086 steps per pose, 48 of at most 100 took 2,845).
MATCH_ITERATIONS = (20, 30, 100)


def distinct(q: np.ndarray, tolerance_rad: float = DISTINCT_RAD) -> np.ndarray:
    """Indices of the rows of ``q`` ``(M, 6)`` kept as distinct, in order: a row is dropped when it
    is within ``tolerance_rad`` (largest wrapped joint difference) of a row kept before it."""
    q = np.asarray(q, dtype=np.float64)
    return np.flatnonzero(distinct_mask(q[None], np.ones((1, len(q)), dtype=bool), tolerance_rad)[0])


def distinct_mask(q: np.ndarray, success: np.ndarray, tolerance_rad: float | np.ndarray = DISTINCT_RAD) -> np.ndarray:
    """Candidates ``(N, K, J)`` with their ``success`` ``(N, K)`` -> ``(N, K)`` bool: the exact
    candidates kept, per pose, in order: one is dropped when it is within ``tolerance_rad`` of an
    exact one kept before it. ``tolerance_rad`` is one radius or one per candidate ``(N, K)``
    (two candidates are compared with the larger of theirs: a precise pair with a small one, a
    pair with an imprecise row with its wide one). Compiled: numpy's (N, K, K, J) comparison
    took 15-30 ms of a 500-pose, 12-component solve_all (about a sixth of it)."""
    q = np.ascontiguousarray(q, dtype=np.float64)
    success = np.ascontiguousarray(success, dtype=np.bool_)
    if q.ndim != 3 or success.shape != q.shape[:2]:
        raise ValueError(f"expected candidates (N, K, J) and success (N, K), got {q.shape} and {success.shape}")
    radius = np.ascontiguousarray(np.broadcast_to(np.asarray(tolerance_rad, dtype=np.float64), success.shape))
    return _distinct_rows(q, success, radius)


@njit(cache=True)
def _distinct_rows(q: np.ndarray, success: np.ndarray, radius: np.ndarray) -> np.ndarray:
    n, k, joints = q.shape
    keep = np.zeros((n, k), dtype=np.bool_)
    for pose in range(n):
        for j in range(k):
            if not success[pose, j]:
                continue
            unique = True
            for i in range(j):
                if not keep[pose, i]:
                    continue
                tolerance = max(radius[pose, j], radius[pose, i])
                far = False
                for m in range(joints):
                    gap = abs(q[pose, j, m] - q[pose, i, m]) % _TWO_PI  # the wrapped difference's size
                    if min(gap, _TWO_PI - gap) > tolerance:
                        far = True
                        break
                if not far:
                    unique = False
                    break
            keep[pose, j] = unique
    return keep


def per_pose(q: np.ndarray, success: np.ndarray, n_poses: int, tolerance_rad: float = DISTINCT_RAD) -> list[np.ndarray]:
    """Candidates laid out pose-major (``n_poses * K`` rows: pose 0's K, then pose 1's ...) ->
    each pose's distinct exact solutions ``(m_i, 6)``, in candidate order."""
    q = np.asarray(q).reshape(n_poses, -1, q.shape[-1])
    keep = distinct_mask(q, np.asarray(success).reshape(n_poses, -1), tolerance_rad)
    return [q[pose][keep[pose]] for pose in range(n_poses)]


def uniform_joints(limits: JointLimits, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` joint vectors drawn uniformly inside ``limits`` (a joint free to turn: [-pi, pi))."""
    low = np.where(np.isfinite(limits.clip_low), limits.lower, -math.pi)
    high = np.where(np.isfinite(limits.clip_high), limits.upper, math.pi)
    return rng.uniform(low, high, size=(n, len(low)))


def multi_start(
    robot: Robot,
    poses: np.ndarray,
    starts: int,
    *,
    seed: int = 0,
    limits: JointLimits | None = None,
    max_iterations: int = MULTI_START_ITERATIONS,
    tolerance_m: float = 1e-5,
    tolerance_rad: float = math.radians(0.01),
) -> list[np.ndarray]:
    """Each pose's distinct exact solutions from ``starts`` random starts inside ``limits``
    (the robot's joint limits by default) refined by damped least squares."""
    if starts < 1:
        raise ValueError(f"multi-start IK needs starts >= 1, got {starts}")
    limits = limits or JointLimits.of(robot.qlim[0], robot.qlim[1])
    poses = np.asarray(poses, dtype=np.float64)
    q0 = uniform_joints(limits, len(poses) * starts, np.random.default_rng(seed))
    target_r = np.ascontiguousarray(np.repeat(poses[:, :3, :3], starts, axis=0))
    target_p = np.ascontiguousarray(np.repeat(poses[:, :3, 3], starts, axis=0))
    out = refine_checked(robot, q0, target_r, target_p, limits, max_iterations, tolerance_m, tolerance_rad)
    return per_pose(out.q, out.success, len(poses))


@dataclass(frozen=True)
class SetComparison:
    """Solution sets found against reference sets, pose by pose."""

    reference: int  # solutions in the reference sets, all poses
    matched: int  # reference solutions a found solution is within the tolerance of
    found: int  # solutions found, all poses
    extra: int  # found solutions no reference solution is within the tolerance of
    poses_fully_covered: int  # poses whose every reference solution was matched

    @property
    def coverage(self) -> float:
        return self.matched / self.reference if self.reference else float("nan")


def compare_sets(
    found: list[np.ndarray], reference: list[np.ndarray], tolerance_rad: float = DISTINCT_RAD
) -> SetComparison:
    """How well ``found`` solution sets cover ``reference`` ones (both one ``(m, 6)`` array per pose)."""
    if len(found) != len(reference):
        raise ValueError(f"{len(found)} found sets against {len(reference)} reference sets")
    matched = extra = full = 0
    for mine, theirs in zip(found, reference, strict=True):
        if len(mine) and len(theirs):
            close = np.abs(wrap_angle(theirs[:, None, :] - mine[None, :, :])).max(axis=2) <= tolerance_rad
        else:
            close = np.zeros((len(theirs), len(mine)), dtype=bool)
        hits = int(close.any(axis=1).sum())
        matched += hits
        extra += int((~close.any(axis=0)).sum())
        full += hits == len(theirs)
    return SetComparison(
        reference=sum(len(r) for r in reference),
        matched=matched,
        found=sum(len(f) for f in found),
        extra=extra,
        poses_fully_covered=full,
    )


def starts_to_match(
    robot: Robot,
    poses: np.ndarray,
    reference: list[np.ndarray],
    coverage: float,
    max_starts: int,
    *,
    seed: int = 0,
    max_iterations: int = MULTI_START_ITERATIONS,
) -> list[tuple[int, float, float]]:
    """Multi-start IK budgets tried until the smallest that covers ``coverage`` of ``reference``:
    1, 2, 4, ... starts per pose (each refined for at most ``max_iterations`` steps), then
    bisection between the last short and the first enough. -> ``(starts, coverage, seconds)``
    per budget tried, in increasing starts; the last matched unless ``max_starts`` never did."""
    tried: dict[int, tuple[float, float]] = {}

    def run(starts: int) -> bool:
        started = time.perf_counter()
        sets = multi_start(robot, poses, starts, seed=seed, max_iterations=max_iterations)
        tried[starts] = (compare_sets(sets, reference).coverage, time.perf_counter() - started)
        return tried[starts][0] >= coverage

    low, high = 0, 1
    while not run(high):
        if high >= max_starts:
            return [(s, *tried[s]) for s in sorted(tried)]
        low, high = high, min(2 * high, max_starts)
    while high - low > 1:  # low falls short (0: nothing), high is enough
        middle = (low + high) // 2
        low, high = (low, middle) if run(middle) else (middle, high)
    return [(s, *tried[s]) for s in sorted(tried) if s <= high]


@dataclass(frozen=True)
class MultiStartMatch:
    """The cheapest multi-start IK found to reach a coverage: its iteration cap and budgets tried."""

    max_iterations: int
    ladder: list[tuple[int, float, float]]  # (starts per pose, coverage, seconds), as starts_to_match
    matched: bool  # the ladder's last budget reached the coverage

    @property
    def starts(self) -> int:
        return self.ladder[-1][0]

    @property
    def seconds(self) -> float:
        return self.ladder[-1][2]


def match_at_caps(
    robot: Robot,
    poses: np.ndarray,
    reference: list[np.ndarray],
    coverage: float,
    max_starts: int,
    *,
    seed: int = 0,
    caps: tuple[int, ...] = MATCH_ITERATIONS,
) -> list[MultiStartMatch]:
    """:func:`starts_to_match` at each iteration cap in ``caps``, in order."""
    return [
        MultiStartMatch(cap, ladder, ladder[-1][1] >= coverage)
        for cap in caps
        for ladder in [starts_to_match(robot, poses, reference, coverage, max_starts, seed=seed, max_iterations=cap)]
    ]


def cheapest_match(
    robot: Robot,
    poses: np.ndarray,
    reference: list[np.ndarray],
    coverage: float,
    max_starts: int,
    *,
    seed: int = 0,
    caps: tuple[int, ...] = MATCH_ITERATIONS,
) -> MultiStartMatch:
    """Of :func:`match_at_caps`, the cap whose matching budget took the least time (a cap that
    never matched only when none did: then the most covering)."""
    tries = match_at_caps(robot, poses, reference, coverage, max_starts, seed=seed, caps=caps)
    matched = [t for t in tries if t.matched]
    if matched:
        return min(matched, key=lambda t: t.seconds)
    return max(tries, key=lambda t: t.ladder[-1][1])

"""How multi-valued is IK on a region? Multi-start numerical IK, judged by FK.

For each of ``n_poses`` configurations q* sampled in the region, the pose
fk(q*) is solved from ``n_starts`` random starts inside the region with
roboticstoolbox's C++ Levenberg-Marquardt (``ets().ik_LM``, tight tolerance).
A pose is *ambiguous* when some solution that reaches it (checked with our own
FK) lies inside the region and differs from q* by more than ``threshold_deg``
on some joint (angles compared modulo 2*pi). No regressor can fit an
ambiguous pose: its targets average over the branches.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
from tqdm import tqdm

from iklab.core.kinematics import Robot, fk, rotation_angle_between, to_rtb, wrap_angle
from iklab.core.regions import Region

# A start "reaches" the pose when FK of its answer is this close: far tighter
# than any learned model, loose enough for LM at tol=1e-10 (<= 0.009 mm).
_REACH_POSITION_M = 1e-5
_REACH_ROTATION_RAD = 1e-4
# Defaults: about a minute on 2 cores for `full` (~0.15 ms per IK start) and a
# standard error of ~0.15 percentage points on a fraction near 1%.
DEFAULT_POSES = 4000
DEFAULT_STARTS = 64


@dataclass(frozen=True)
class AmbiguityResult:
    region: str
    n_poses: int
    n_starts: int
    threshold_deg: float
    ambiguous_fraction: float  # poses with a second in-region solution
    mean_distinct_solutions: float  # in-region solutions per pose, the sampled one included
    solve_success_rate: float  # starts whose answer reached the pose (anywhere)
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def measure_ambiguity(
    robot: Robot,
    region: Region,
    *,
    n_poses: int = DEFAULT_POSES,
    n_starts: int = DEFAULT_STARTS,
    threshold_deg: float = 5.0,
    seed: int = 0,
    tol: float = 1e-10,
    progress: bool = False,
) -> AmbiguityResult:
    """Fraction of the region's poses with a second IK solution inside the region."""
    if n_poses < 1 or n_starts < 1:
        raise ValueError("n_poses and n_starts must be at least 1")
    if not 0 < threshold_deg < 180:  # wrapped joint differences lie in [0, 180] degrees
        raise ValueError(f"threshold_deg must be in (0, 180) degrees, got {threshold_deg}")
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    ets = to_rtb(robot).ets()
    q_true = rng.uniform(region.lower, region.upper, size=(n_poses, robot.n_joints))
    targets = fk(robot, q_true)
    threshold = math.radians(threshold_deg)
    ambiguous, distinct_counts, reached = 0, [], 0
    for i in tqdm(range(n_poses), desc="ambiguity", unit="pose", disable=not progress):
        starts = rng.uniform(region.lower, region.upper, size=(n_starts, robot.n_joints))
        answers = np.array(
            [ets.ik_LM(targets[i], q0=s, tol=tol, slimit=1, ilimit=60, joint_limits=False).q for s in starts]
        )
        ok = _reaches(robot, answers, targets[i])
        reached += int(ok.sum())
        inside = answers[ok][region.contains(answers[ok])]
        far = np.max(np.abs(wrap_angle(inside - q_true[i])), axis=1) > threshold
        ambiguous += bool(far.any())
        distinct_counts.append(_count_distinct(np.vstack([q_true[i : i + 1], inside]), threshold))
    return AmbiguityResult(
        region=region.name,
        n_poses=n_poses,
        n_starts=n_starts,
        threshold_deg=threshold_deg,
        ambiguous_fraction=ambiguous / n_poses,
        mean_distinct_solutions=float(np.mean(distinct_counts)),
        solve_success_rate=reached / (n_poses * n_starts),
        seconds=time.perf_counter() - started,
    )


def _reaches(robot: Robot, q: np.ndarray, target: np.ndarray) -> np.ndarray:
    poses = fk(robot, q)
    position_error = np.linalg.norm(poses[:, :3, 3] - target[:3, 3], axis=1)
    rotation_error = rotation_angle_between(poses[:, :3, :3], np.broadcast_to(target[:3, :3], (len(q), 3, 3)))
    return (position_error < _REACH_POSITION_M) & (rotation_error < _REACH_ROTATION_RAD)


def _count_distinct(solutions: np.ndarray, threshold: float) -> int:
    """Greedy clustering: solutions within ``threshold`` (max joint, mod 2*pi) are one."""
    representatives: list[np.ndarray] = []
    for q in solutions:
        if not any(np.max(np.abs(wrap_angle(q - r))) <= threshold for r in representatives):
            representatives.append(q)
    return len(representatives)

"""ssik (analytic IK, every branch at machine precision) as the reference for iklab's DH arms.

Shared by tests/test_ssik_reference.py and bench/bench_ssik.py (which imports this file by
path: ssik is a test and bench dependency, in pyproject's test extra, never robot code's).

iklab's joint i turns the DH angle ``theta_i = sign_i * q_i + offset_i`` and wraps the DH chain
in ``base`` and ``tool``; ssik's ``Manipulator.from_dh(alpha, a, d)`` takes ``theta`` directly
and has neither. So a pose goes to ssik as ``inv(base) @ T @ inv(tool)`` and an answer comes
back as ``q_i = sign_i * (theta_i - offset_i)``.
"""

from __future__ import annotations

import numpy as np
import ssik

from iklab.core.kinematics import Robot, rotation_angle_between, wrap_angle
from iklab.core.refine import into_limits

MATCH_RAD = 1e-3  # two solutions are one when every joint agrees within this, modulo 2*pi


def manipulator(robot: Robot) -> ssik.Manipulator:
    """ssik's arm for ``robot``'s DH table, prepared (a general 6R arm such as Jaco derives its
    solver symbolically on first use: about 90 s once per machine, then read from ssik's cache
    in ~/.cache/ssik)."""
    arm = ssik.Manipulator.from_dh(robot.alpha, robot.a, robot.d)
    arm.prepare()
    return arm


def dh_targets(robot: Robot, poses: np.ndarray) -> np.ndarray:
    """iklab poses ``(N, 4, 4)`` -> the DH chain's poses ssik solves: base and tool stripped."""
    return np.linalg.inv(robot.base) @ np.asarray(poses, dtype=np.float64) @ np.linalg.inv(robot.tool)


def ssik_fk(robot: Robot, arm: ssik.Manipulator, q: np.ndarray) -> np.ndarray:
    """ssik's FK of iklab joints ``(N, 6)`` radians -> ``(N, 4, 4)``, in iklab's frames."""
    theta = np.asarray(q, dtype=np.float64) * robot.sign + robot.offset
    return np.array([robot.base @ arm.fk(row) @ robot.tool for row in theta])


def to_iklab_joints(robot: Robot, theta: np.ndarray) -> np.ndarray:
    """ssik's DH angles ``(M, 6)`` -> iklab joints, wrapped to [-pi, pi)."""
    return wrap_angle(robot.sign * (np.asarray(theta, dtype=np.float64).reshape(-1, 6) - robot.offset))


def solve_one(robot: Robot, arm: ssik.Manipulator, dh_target: np.ndarray) -> np.ndarray:
    """Every branch ssik finds for one DH-chain pose (:func:`dh_targets`), in iklab joints ``(M, 6)``."""
    return to_iklab_joints(robot, [s.q for s in arm.solve(dh_target, respect_limits=False)])


def inside_limits(robot: Robot, q: np.ndarray) -> np.ndarray:
    """The rows of ``q`` ``(M, 6)`` a turn of 2*pi per joint brings inside ``robot``'s joint
    limits, moved there as IKSolver moves its own answers (``iklab.core.refine.into_limits``)."""
    moved, inside = into_limits(np.asarray(q, dtype=np.float64).reshape(-1, 6), robot.qlim[0], robot.qlim[1])
    return moved[inside]


def joint_gaps(found: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``(M, K, 6)``: each reference row's absolute joint difference to each found row, modulo 2*pi."""
    return np.abs(wrap_angle(np.asarray(reference)[:, None, :] - np.asarray(found)[None, :, :]))


def matched(found: np.ndarray, reference: np.ndarray, tolerance_rad: float = MATCH_RAD) -> np.ndarray:
    """``(M,)`` bool: each row of ``reference`` ``(M, 6)`` has a row of ``found`` ``(K, 6)`` that
    agrees with it in every joint within ``tolerance_rad``, modulo 2*pi."""
    if not len(found) or not len(reference):
        return np.zeros(len(reference), dtype=bool)
    return (joint_gaps(found, reference).max(axis=2) <= tolerance_rad).any(axis=1)


def pose_errors(reached: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Position (m) and rotation (rad) error between poses ``(N, 4, 4)`` and their targets."""
    position = np.linalg.norm(reached[:, :3, 3] - targets[:, :3, 3], axis=1)
    return position, rotation_angle_between(reached[:, :3, :3], targets[:, :3, :3])

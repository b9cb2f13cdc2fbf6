"""Pose features in, joint targets out: the column names and encodings every layer shares.

Numpy only: the dataset generator, training and the robot-side solver all use it.

Input encodings (pose -> features), raw units, normalized inside the model:
  xyz_rpy   x, y, z, roll, pitch, yaw      (the original question's; yaw wraps at +-pi)
  xyz_quat  x, y, z, qw, qx, qy, qz        (continuous; qw >= 0)
  xyz_rot6d x, y, z, first two rotation columns (continuous, Zhou et al. 2019)
  xyz_rotmat_wrist  x, y, z, the whole rotation matrix (row by row), and the wrist point: the
            origin of the last joint's frame, p - R v for the robot's constant v (see
            :func:`wrist_vector`). It moves with the first joints only, so the network need not
            untangle position from orientation (the ablations measure what it buys).
Output encodings (joints -> targets):
  angles    q0..q5 radians (trained with a wrap-aware loss)
  sincos    sin q0..q5, cos q0..q5 (decoded with atan2)
  mixture   targets q0..q5 radians; the network outputs a von Mises mixture over them
            (:mod:`iklab.core.mixture`: K weighted answers per pose, K read from the output's width);
            decoded to the heaviest component's mean, :func:`decode_candidates` gives them all
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from iklab.core.kinematics import matrix_to_rot6d, matrix_to_rpy, quaternion_to_matrix
from iklab.core.mixture import mixture_components_of, ranked_components

if TYPE_CHECKING:
    from iklab.core.kinematics import Robot

JOINT_COLUMNS = [f"q{i}" for i in range(6)]
# A pose as one row: position (metres, base frame) and unit quaternion (scalar first).
POSE_COLUMNS = ["x", "y", "z", "qw", "qx", "qy", "qz"]

INPUT_ENCODINGS = {
    "xyz_rpy": ["x", "y", "z", "roll", "pitch", "yaw"],
    "xyz_quat": POSE_COLUMNS,
    "xyz_rot6d": ["x", "y", "z", "r00", "r10", "r20", "r01", "r11", "r21"],
    "xyz_rotmat_wrist": ["x", "y", "z"] + [f"r{i}{j}" for i in range(3) for j in range(3)] + ["wx", "wy", "wz"],
}
# Encodings whose features depend on the robot's geometry (callers pass ``robot=``).
ROBOT_ENCODINGS = ("xyz_rotmat_wrist",)
OUTPUT_ENCODINGS = {
    "angles": JOINT_COLUMNS,
    "sincos": [f"sin_{c}" for c in JOINT_COLUMNS] + [f"cos_{c}" for c in JOINT_COLUMNS],
    "mixture": JOINT_COLUMNS,  # the targets; the network's outputs are the mixture's parameters
}


def wrist_vector(robot: Robot) -> np.ndarray:
    """``v`` ``(3,)`` with wrist point ``w = p - R v`` for an end-effector pose ``(R, p)``: the origin
    of the frame before the last joint. From the last DH link (Rz(theta) Tz(d) Tx(a) Rx(alpha))
    and the tool: ``R6 = R tool_R^T``, ``o6 = p - R6 tool_p``, ``w = o6 - a R6 e_x - d R6 (0, sin
    alpha, cos alpha)``, none of which depends on the last joint's angle."""
    d, a, alpha = robot.d[-1], robot.a[-1], robot.alpha[-1]
    link = np.array([a, d * np.sin(alpha), d * np.cos(alpha)])
    return robot.tool[:3, :3].T @ (robot.tool[:3, 3] + link)


def _check_kind(kind: str, robot: Robot | None) -> None:
    if kind not in INPUT_ENCODINGS:
        raise ValueError(f"unknown input encoding {kind!r}; choose from {', '.join(INPUT_ENCODINGS)}")
    if kind in ROBOT_ENCODINGS and robot is None:
        raise ValueError(f"input encoding {kind!r} needs the robot (robot=...)")


def _rotmat_wrist(position: np.ndarray, rotation: np.ndarray, robot: Robot) -> np.ndarray:
    wrist = position - rotation @ wrist_vector(robot)
    return np.concatenate([position, rotation.reshape(-1, 9), wrist], axis=1)


def encode_inputs(position: np.ndarray, quat: np.ndarray, kind: str, robot: Robot | None = None) -> np.ndarray:
    """Pose features ``(N, F)`` float32 for the model, in raw units, from positions ``(N, 3)``
    and quaternions ``(N, 4)`` (a Split's columns, or a solver's target poses). ``robot``: needed
    by the encodings in ``ROBOT_ENCODINGS``."""
    _check_kind(kind, robot)
    if kind == "xyz_quat":
        features = np.column_stack([position, quat])
    elif kind == "xyz_rotmat_wrist":
        features = _rotmat_wrist(position, quaternion_to_matrix(quat), robot)
    else:
        rotation = quaternion_to_matrix(quat)
        encoded = matrix_to_rpy(rotation) if kind == "xyz_rpy" else matrix_to_rot6d(rotation)
        features = np.column_stack([position, encoded])
    return features.astype(np.float32)


def encode_pose_matrices(poses: np.ndarray, kind: str, robot: Robot | None = None) -> np.ndarray:
    """Features ``(N, F)`` float32 from homogeneous poses ``(N, 4, 4)`` (what a solver is asked):
    the same values as :func:`encode_inputs`, without a detour through quaternions, and with
    compiled conversions (:mod:`iklab.core.pose_kernel`): one row costs microseconds, not scipy's
    set-up."""
    _check_kind(kind, robot)
    if kind == "xyz_rotmat_wrist":
        return _rotmat_wrist(poses[:, :3, 3], poses[:, :3, :3], robot).astype(np.float32)
    from iklab.core.pose_kernel import matrix_to_quaternion_rows, matrix_to_rpy_rows  # numba: loaded on first use

    rotation = np.ascontiguousarray(poses[:, :3, :3], dtype=np.float64)
    if kind == "xyz_quat":
        encoded = matrix_to_quaternion_rows(rotation)  # = matrix_to_quaternion, compiled per row
    elif kind == "xyz_rpy":
        encoded = matrix_to_rpy_rows(rotation)  # = matrix_to_rpy, compiled per row
    else:
        encoded = matrix_to_rot6d(rotation)
    return np.concatenate([poses[:, :3, 3], encoded], axis=1).astype(np.float32)


def encode_targets(q: np.ndarray, kind: str) -> np.ndarray:
    """Joint angles ``(N, 6)`` -> training targets ``(N, 6 or 12)`` float32."""
    if kind in ("angles", "mixture"):
        return q.astype(np.float32)
    if kind == "sincos":
        return np.concatenate([np.sin(q), np.cos(q)], axis=1).astype(np.float32)
    raise ValueError(f"unknown output encoding {kind!r}; choose from {', '.join(OUTPUT_ENCODINGS)}")


def decode_outputs(y: np.ndarray, kind: str) -> np.ndarray:
    """Model outputs -> joint angles ``(N, 6)`` float64 radians."""
    y = np.asarray(y, dtype=np.float64)
    if kind == "angles":
        return y
    if kind == "sincos":
        return np.arctan2(y[:, :6], y[:, 6:])
    if kind == "mixture":
        return decode_candidates(y, kind)[1][:, 0]
    raise ValueError(f"unknown output encoding {kind!r}; choose from {', '.join(OUTPUT_ENCODINGS)}")


def decode_candidates(y: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Model outputs -> every answer the model gives: weights ``(N, K)`` and joint angles
    ``(N, K, 6)`` radians, heaviest first. One answer of weight 1 unless ``kind`` is mixture."""
    if kind != "mixture":
        q = decode_outputs(y, kind)
        return np.ones((len(q), 1)), q[:, None, :]
    y = np.asarray(y, dtype=np.float64)
    k = mixture_components_of(y.shape[-1], len(JOINT_COLUMNS))
    weights, means, _ = ranked_components(y, k, len(JOINT_COLUMNS))
    return weights, means


def poses_from_position_quat(position: np.ndarray, quat: np.ndarray) -> np.ndarray:
    """``(N, 3)`` positions and ``(N, 4)`` quaternions -> ``(N, 4, 4)`` homogeneous poses."""
    out = np.zeros((len(position), 4, 4))
    out[:, :3, :3] = quaternion_to_matrix(quat)
    out[:, :3, 3] = position
    out[:, 3, 3] = 1.0
    return out

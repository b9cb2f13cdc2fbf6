"""The solver's compiled pose encodings (iklab.core.pose_kernel) against the vectorized ones."""

import math

import numpy as np
import pytest

from iklab.core import encodings as E
from iklab.core.kinematics import (
    fk,
    load_robot,
    matrix_to_quaternion,
    matrix_to_rpy,
    quaternion_to_matrix,
    rpy_to_matrix,
    to_rtb,
)
from iklab.core.pose_kernel import matrix_to_quaternion_rows, matrix_to_rpy_rows


def _rotations(rng):
    """Random rotations plus the awkward ones: identity, half turns (trace -1, qw = 0),
    gimbal lock (pitch +-90 deg), and near-lock."""
    quat = rng.normal(size=(2000, 4))
    random = quaternion_to_matrix(quat)
    half_turns = quaternion_to_matrix(np.array([[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 1, 1, 0], [0, 1, 1, 1]]))
    lock = rpy_to_matrix(
        np.array([[0.3, math.pi / 2, -1.0], [-2.0, -math.pi / 2, 0.5], [0.1, math.pi / 2 - 1e-7, 0.2], [0, 0, 0]])
    )
    return np.concatenate([random, half_turns, lock])


def test_quaternion_rows_match_scipy_convention(rng):
    rotations = _rotations(rng)
    np.testing.assert_allclose(matrix_to_quaternion_rows(rotations), matrix_to_quaternion(rotations), atol=1e-15)


def test_rpy_rows_match_matrix_to_rpy_including_gimbal_lock(rng):
    rotations = _rotations(rng)
    np.testing.assert_allclose(matrix_to_rpy_rows(rotations), matrix_to_rpy(rotations), atol=1e-14)


@pytest.mark.parametrize("kind", sorted(E.INPUT_ENCODINGS))
def test_encode_pose_matrices_equals_encode_inputs(kind, rng, jaco):
    rotations = _rotations(rng)
    poses = np.zeros((len(rotations), 4, 4))
    poses[:, :3, :3], poses[:, :3, 3], poses[:, 3, 3] = rotations, rng.normal(size=(len(rotations), 3)), 1.0
    expected = E.encode_inputs(poses[:, :3, 3], matrix_to_quaternion(rotations), kind, jaco)
    got = E.encode_pose_matrices(poses, kind, jaco)
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-6)
    np.testing.assert_allclose(E.encode_pose_matrices(poses[:1], kind, jaco), expected[:1], atol=1e-6)


@pytest.mark.parametrize("name", ["jaco", "ur5", "puma560"])
def test_wrist_point_is_the_last_joints_origin_and_ignores_its_angle(name, rng):
    robot = load_robot(name)
    q = rng.uniform(-math.pi, math.pi, size=(50, 6))
    poses = fk(robot, q)
    wrist = E.encode_pose_matrices(poses, "xyz_rotmat_wrist", robot)[:, -3:].astype(np.float64)
    frames = [to_rtb(robot).fkine_all(row) for row in q]  # base, then each link's frame
    origin = np.array([f[5].t for f in frames])  # the frame joint 6 turns about
    np.testing.assert_allclose(wrist, origin, atol=2e-6)  # float32 features
    q_turned = q.copy()
    q_turned[:, 5] += rng.uniform(-1, 1, size=50)
    turned = E.encode_pose_matrices(fk(robot, q_turned), "xyz_rotmat_wrist", robot)[:, -3:]
    np.testing.assert_allclose(turned, wrist, atol=2e-6)

import math
import subprocess
import sys

import numpy as np
import pytest
import roboticstoolbox as rtb
from spatialmath.base import q2r, r2q, rpy2r, tr2rpy

from iklab.core import kinematics as K

RTB_CLASSES = {"jaco": "Jaco", "puma560": "Puma560", "ur5": "UR5", "mico": "Mico", "irb140": "IRB140"}


@pytest.mark.parametrize("name", sorted(RTB_CLASSES))
def test_fk_matches_roboticstoolbox(name, rng):
    robot = K.load_robot(name)
    reference = getattr(rtb.models.DH, RTB_CLASSES[name])()
    q = rng.uniform(robot.qlim[0], robot.qlim[1], size=(300, 6))
    ours = K.fk(robot, q)
    theirs = np.array(reference.fkine(q).A)
    assert ours.shape == (300, 4, 4) and ours.dtype == np.float64
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)


def test_fk_against_hard_coded_jaco_pose(jaco):
    # roboticstoolbox-python 1.5.0, Jaco().fkine([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]).A
    expected = np.array(
        [
            [-0.9687921230315846, 0.021489974280167783, -0.24694129536671838, 0.0924089676665889],
            [-0.08172009989735465, -0.9682273851221136, 0.23634203175136034, 0.09442400940445916],
            [-0.23401634050792572, 0.24914636602814885, 0.9397672268547388, 0.3612661876313388],
            [0.0, 0.0, 0.0, 1.0],
        ]
    )
    pose = K.fk(jaco, np.array([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]]))[0]
    np.testing.assert_allclose(pose, expected, rtol=0, atol=1e-14)


def test_fk_is_blocked_consistently_for_large_batches(jaco, rng):
    # more rows than one internal block: block boundaries must not change results
    q = rng.uniform(-math.pi, math.pi, size=(K._FK_BLOCK_ROWS * 2 + 17, 6))
    full = K.fk(jaco, q)
    np.testing.assert_array_equal(full[-5:], K.fk(jaco, q[-5:]))
    np.testing.assert_array_equal(full[:3], K.fk(jaco, q[:3]))


def test_fk_rejects_wrong_shapes(jaco):
    with pytest.raises(ValueError, match=r"shape \(N, 6\)"):
        K.fk(jaco, np.zeros((4, 5)))
    with pytest.raises(ValueError, match=r"shape \(N, 6\)"):
        K.fk(jaco, np.zeros(6))


def test_robot_dict_round_trip_and_rtb_conversion(jaco, rng):
    q = rng.uniform(-math.pi, math.pi, size=(50, 6))
    rebuilt = K.Robot.from_dict(jaco.to_dict())
    np.testing.assert_array_equal(K.fk(rebuilt, q), K.fk(jaco, q))
    np.testing.assert_allclose(np.array(K.to_rtb(jaco).fkine(q).A), K.fk(jaco, q), atol=1e-12)
    with pytest.raises(K.RobotError, match="qlim"):
        K.Robot.from_dict({**jaco.to_dict(), "qlim": [[0.0] * 6]})
    with pytest.raises(K.RobotError, match="missing or bad field"):
        K.Robot.from_dict({"name": "x"})


def test_unknown_and_unsupported_robots():
    with pytest.raises(K.RobotError, match="known robots: .*jaco.*puma560.*ur5"):
        K.load_robot("nao")
    with pytest.raises(K.RobotError, match="7-DOF"):
        K.load_robot("panda")
    with pytest.raises(K.RobotError, match="RRPRRR"):
        K.load_robot("stanford")


def test_sincos_accuracy():
    theta = np.random.default_rng(0).uniform(-40, 40, 200_000)
    sin, cos = K.sincos(theta)
    assert np.max(np.abs(sin - np.sin(theta))) < 5e-15
    assert np.max(np.abs(cos - np.cos(theta))) < 5e-15


@pytest.fixture
def rotations(jaco, rng):
    q = rng.uniform(-math.pi, math.pi, size=(2000, 6))
    special = np.stack(
        [np.eye(3), np.diag([1.0, -1.0, -1.0]), np.diag([-1.0, 1.0, -1.0]), np.diag([-1.0, -1.0, 1.0])]
    )  # rotations by pi: every Shepperd branch
    return np.concatenate([K.fk(jaco, q)[:, :3, :3], special])


def test_quaternion_round_trip_and_convention(rotations):
    quat = K.matrix_to_quaternion(rotations)
    np.testing.assert_allclose(np.linalg.norm(quat, axis=1), 1.0, atol=1e-15)
    assert np.all(quat[:, 0] >= 0)
    np.testing.assert_allclose(K.quaternion_to_matrix(quat), rotations, atol=1e-14)
    reference = np.array([r2q(r) for r in rotations[:200]])  # spatialmath: (s, v) order
    reference[reference[:, 0] < 0] *= -1
    np.testing.assert_allclose(quat[:200], reference, atol=1e-14)


def test_rpy_matches_tr2rpy_and_round_trips(rotations):
    rpy = K.matrix_to_rpy(rotations)
    reference = np.array([tr2rpy(r) for r in rotations])
    np.testing.assert_allclose(rpy, reference, atol=1e-13)
    np.testing.assert_allclose(K.rpy_to_matrix(rpy), rotations, atol=1e-13)


def test_rpy_gimbal_lock_matches_tr2rpy():
    locked = K.rpy_to_matrix(np.array([[0.3, math.pi / 2, 0.2], [-0.4, -math.pi / 2, 1.0]]))
    reference = np.array([tr2rpy(r) for r in locked])
    np.testing.assert_allclose(K.matrix_to_rpy(locked), reference, atol=1e-12)
    np.testing.assert_allclose(K.rpy_to_matrix(K.matrix_to_rpy(locked)), locked, atol=1e-12)


def _rotations_by_pi(axes):
    axes = np.asarray(axes, dtype=np.float64)
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    return 2 * axes[:, :, None] * axes[:, None, :] - np.eye(3)  # R = 2 n n^T - I, qw = 0


def test_quaternion_sign_at_qw_zero_matches_r2q():
    # qw == 0: the vector part's sign is a convention; ours keeps the pivot (largest) component
    # positive, as r2q does (scipy's as_quat(canonical=True) would not on the last two axes).
    rotations = _rotations_by_pi(
        [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, -1, 0], [-0.3, 0.95, 0], [0.2, -0.5, 0.84], [-0.6, -0.3, 0.74]]
    )
    reference = np.array([r2q(r, shortest=True) for r in rotations])
    np.testing.assert_allclose(K.matrix_to_quaternion(rotations), reference, atol=1e-15)


def test_quaternion_of_a_near_rotation_is_unit(rotations, rng):
    # float32-rounded or slightly drifted matrices: still a unit quaternion, close to the exact one
    noisy = rotations + 1e-7 * rng.normal(size=rotations.shape)
    quat = K.matrix_to_quaternion(noisy)
    np.testing.assert_allclose(np.linalg.norm(quat, axis=1), 1.0, atol=1e-15)
    np.testing.assert_allclose(K.quaternion_to_matrix(quat), rotations, atol=1e-6)


def test_quaternion_to_matrix_matches_q2r_for_any_norm(rng):
    quat = rng.normal(size=(300, 4)) * rng.uniform(0.1, 10.0, size=(300, 1))
    reference = np.array([q2r(q / np.linalg.norm(q)) for q in quat])  # spatialmath: (s, v), unit only
    np.testing.assert_allclose(K.quaternion_to_matrix(quat), reference, atol=1e-15)
    with pytest.raises(ValueError, match="zero norm"):
        K.quaternion_to_matrix(np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]))


# Pitch offsets from +-pi/2: exact lock, inside tr2rpy's lock test (|R20| within 20 eps of 1, which is
# pitch within ~9.4e-8 rad), and outside it, including 9.7e-8 rad where scipy's as_euler still locks.
@pytest.mark.parametrize("offset", [0.0, 1e-12, 1e-9, 9e-8, 9.7e-8, 1e-6])
def test_rpy_near_gimbal_lock_matches_tr2rpy(offset, rng):
    n = 200
    pitch = rng.choice([-1.0, 1.0], n) * (math.pi / 2 - offset)
    angles = np.column_stack([rng.uniform(-math.pi, math.pi, n), pitch, rng.uniform(-math.pi, math.pi, n)])
    rotations = np.array([rpy2r(*row, order="zyx") for row in angles])
    reference = np.array([tr2rpy(r, order="zyx") for r in rotations])
    rpy = K.matrix_to_rpy(rotations)
    np.testing.assert_allclose(K.wrap_angle(rpy - reference), 0.0, atol=1e-13)
    assert np.array_equal(rpy[:, 0] == 0, reference[:, 0] == 0)  # same rows locked (roll set to 0)
    # A locked row drops the rotation's residual away from the lock, as tr2rpy does: about the offset.
    assert np.max(K.rotation_angle_between(rotations, K.rpy_to_matrix(rpy))) <= 2 * offset + 1e-12


def test_rpy_to_matrix_matches_rpy2r(rng):
    angles = rng.uniform(-math.pi, math.pi, size=(300, 3))
    reference = np.array([rpy2r(*row, order="zyx") for row in angles])
    np.testing.assert_allclose(K.rpy_to_matrix(angles), reference, atol=1e-15)


def test_importing_kinematics_stays_light():
    # scipy.spatial costs ~0.5 s to import: the rotation conversions import it on first use only.
    code = (
        "import sys, iklab.core.kinematics; print(sorted(m for m in ('scipy.spatial', 'roboticstoolbox', "
        "'sklearn', 'matplotlib', 'pyarrow', 'optuna') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_rot6d_round_trip(rotations):
    six = K.matrix_to_rot6d(rotations)
    assert six.shape == (len(rotations), 6)
    np.testing.assert_array_equal(six[:, :3], rotations[:, :, 0])
    np.testing.assert_allclose(K.rot6d_to_matrix(six), rotations, atol=1e-14)


def test_rotation_angle_between(rng):
    axis_angles = rng.uniform(0, math.pi, 100)
    rotations = K.rpy_to_matrix(np.column_stack([axis_angles, np.zeros(100), np.zeros(100)]))
    identity = np.broadcast_to(np.eye(3), rotations.shape)
    np.testing.assert_allclose(K.rotation_angle_between(identity, rotations), axis_angles, atol=1e-12)

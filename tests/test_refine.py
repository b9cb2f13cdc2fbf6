import math

import numpy as np
import pytest

from iklab.core import kinematics as K
from iklab.core.kinematics import jacobian
from iklab.core.refine import into_limits, refine, refine_checked, rotation_log

DEG = math.pi / 180.0
# Jaco's `working` region (iklab.core.regions), degrees: one IK branch, away from singularities.
WORKING_LOWER = np.array([-90.0, 90.0, -165.0, -175.0, -165.0, -175.0]) * DEG
WORKING_UPPER = np.array([90.0, 180.0, -30.0, 175.0, -15.0, 175.0]) * DEG
TOLERANCE_M = 1e-5  # 0.01 mm
TOLERANCE_RAD = 1.7e-4  # 0.01 degree


def rodrigues(vectors):
    """Axis-angle ``(N, 3)`` -> ``(N, 3, 3)``, written independently of rotation_log."""
    angle = np.linalg.norm(vectors, axis=1)
    axis = vectors / np.where(angle > 0, angle, 1.0)[:, None]
    kx, ky, kz = axis.T
    zero = np.zeros_like(kx)
    k = np.stack([np.stack([zero, -kz, ky], 1), np.stack([kz, zero, -kx], 1), np.stack([-ky, kx, zero], 1)], 1)
    s, c = np.sin(angle)[:, None, None], np.cos(angle)[:, None, None]
    return np.eye(3) + s * k + (1 - c) * (k @ k)


def working_batch(robot, rng, rows, perturbation_deg):
    q_true = rng.uniform(WORKING_LOWER, WORKING_UPPER, size=(rows, 6))
    q0 = q_true + rng.uniform(-perturbation_deg, perturbation_deg, size=(rows, 6)) * DEG
    return q_true, q0, K.fk(robot, q_true)


def angular_distance(q_a, q_b):
    return np.abs(K.wrap_angle(q_a - q_b))


@pytest.mark.parametrize("name", ["jaco", "puma560", "ur5"])
def test_jacobian_matches_roboticstoolbox_jacob0(name, rng):
    robot = K.load_robot(name)
    reference = K.to_rtb(robot)
    q = rng.uniform(robot.qlim[0], robot.qlim[1], size=(50, 6))
    ours = jacobian(robot, q)
    theirs = np.array([reference.jacob0(row) for row in q])
    assert ours.shape == (50, 6, 6) and ours.dtype == np.float64
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)


def test_jacobian_with_base_and_tool_matches_roboticstoolbox(jaco, rng):
    # the shipped models have identity base and tool; exercise both transforms
    base, tool = np.eye(4), np.eye(4)
    base[:3, :3], base[:3, 3] = K.rpy_to_matrix(np.array([[0.3, -0.2, 1.0]]))[0], [0.1, -0.2, 0.3]
    tool[:3, :3], tool[:3, 3] = K.rpy_to_matrix(np.array([[-0.5, 0.4, 0.2]]))[0], [0.01, 0.02, 0.15]
    robot = K.Robot.from_dict({**jaco.to_dict(), "base": base.tolist(), "tool": tool.tolist()})
    q = rng.uniform(-math.pi, math.pi, size=(50, 6))
    theirs = np.array([K.to_rtb(robot).jacob0(row) for row in q])
    np.testing.assert_allclose(jacobian(robot, q), theirs, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["jaco", "puma560"])
def test_jacobian_matches_finite_differences_of_fk(name, rng):
    robot = K.load_robot(name)
    q = rng.uniform(-math.pi, math.pi, size=(20, 6))
    rotation, _ = K.fk_rotation_translation(robot, q)
    step = 1e-6
    for joint in range(6):
        delta = np.zeros(6)
        delta[joint] = step
        r_plus, p_plus = K.fk_rotation_translation(robot, q + delta)
        r_minus, p_minus = K.fk_rotation_translation(robot, q - delta)
        linear = (p_plus - p_minus) / (2 * step)
        transpose = np.swapaxes(rotation, 1, 2)
        angular = (rotation_log(r_plus @ transpose) - rotation_log(r_minus @ transpose)) / (2 * step)
        column = jacobian(robot, q)[:, :, joint]
        np.testing.assert_allclose(column[:, :3], linear, rtol=0, atol=1e-8)
        np.testing.assert_allclose(column[:, 3:], angular, rtol=0, atol=1e-8)


def test_rotation_log_inverts_rodrigues_including_near_pi(rng):
    axes = rng.normal(size=(9, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    angles = np.array([0.0, 1e-12, 1e-5, 0.5, 1.5, 2.5, math.pi - 1e-6, math.pi - 1e-10, math.pi])
    rotations = rodrigues(axes * angles[:, None])
    logs = rotation_log(rotations)
    np.testing.assert_allclose(np.linalg.norm(logs, axis=1), angles, rtol=0, atol=1e-12)
    np.testing.assert_allclose(rodrigues(logs), rotations, rtol=0, atol=1e-12)
    # below pi the axis sign is determined, so the vector itself must match
    np.testing.assert_allclose(logs[:-1], (axes * angles[:, None])[:-1], rtol=0, atol=1e-9)


def test_refine_converges_from_perturbed_working_configurations(jaco, rng):
    q_true, q0, targets = working_batch(jaco, rng, 1000, perturbation_deg=3.0)
    result = refine(jaco, q0, targets, tolerance_m=TOLERANCE_M, tolerance_rad=TOLERANCE_RAD)  # speed: bench_refine
    assert result.success.mean() >= 0.999
    assert result.position_error_m[result.success].max() <= TOLERANCE_M
    assert result.rotation_error_rad[result.success].max() <= TOLERANCE_RAD
    same_branch = np.all(angular_distance(result.q, q_true) <= 1.0 * DEG, axis=1)
    assert same_branch.mean() >= 0.99
    # the reported errors are FK's, not the solver's bookkeeping
    rotation, position = K.fk_rotation_translation(jaco, result.q)
    np.testing.assert_allclose(
        result.position_error_m, np.linalg.norm(position - targets[:, :3, 3], axis=1), atol=1e-15
    )
    np.testing.assert_allclose(
        result.rotation_error_rad, K.rotation_angle_between(rotation, targets[:, :3, :3]), atol=1e-15
    )
    assert result.iterations.min() >= 1 and result.iterations.max() <= 50


def test_refine_converges_from_a_singular_start(rng):
    # UR5 at q = 0 is singular (wrist and shoulder aligned); damping must not blow up
    robot = K.load_robot("ur5")
    q_true = rng.uniform(-10, 10, size=(50, 6)) * DEG
    result = refine(robot, np.zeros((50, 6)), K.fk(robot, q_true), tolerance_rad=TOLERANCE_RAD)
    assert result.success.all()


def test_converged_rows_do_not_move(jaco, rng):
    q_true, q0, targets = working_batch(jaco, rng, 200, perturbation_deg=3.0)
    exact = np.arange(200) % 2 == 0
    q0[exact] = q_true[exact]
    result = refine(jaco, q0, targets)
    np.testing.assert_array_equal(result.q[exact], q_true[exact])
    assert np.all(result.iterations[exact] == 0) and np.all(result.iterations[~exact] > 0)
    assert result.success.all()
    only_exact = refine(jaco, q_true, targets)
    np.testing.assert_array_equal(only_exact.q, q_true)
    assert np.all(only_exact.iterations == 0) and only_exact.success.all()


def test_unreachable_target_fails_and_reports_its_error(jaco, rng):
    _, q0, targets = working_batch(jaco, rng, 20, perturbation_deg=3.0)
    targets[7, 0, 3] += 5.0  # 5 m away: far beyond Jaco's ~1 m reach
    result = refine(jaco, q0, targets, max_iterations=30)
    assert not result.success[7] and result.iterations[7] == 30
    assert result.position_error_m[7] > 3.0
    _, position = K.fk_rotation_translation(jaco, result.q[7:8])
    assert result.position_error_m[7] == pytest.approx(np.linalg.norm(position[0] - targets[7, :3, 3]))
    assert np.all(np.isfinite(result.q))
    assert result.success[np.arange(20) != 7].all()


def test_joint_limits_are_respected(rng):
    robot = K.load_robot("puma560")  # several joints narrower than 2*pi
    lower, upper = robot.qlim
    q_true = rng.uniform(lower, upper, size=(300, 6))
    q_true[:100, 1] = upper[1]  # solutions on the edge: unconstrained steps would overshoot it
    q0 = q_true + rng.normal(scale=5 * DEG, size=q_true.shape)
    q0[:5, 2] = upper[2] + 0.5  # starts outside the box are moved in first
    result = refine(robot, q0, K.fk(robot, q_true), lower=lower, upper=upper)
    limited = upper - lower < 2 * math.pi  # joint 6 spans +-266 degrees: free, not clipped
    assert limited.tolist() == [True] * 5 + [False]
    assert np.all(result.q[:, limited] >= lower[limited]) and np.all(result.q[:, limited] <= upper[limited])
    assert result.success.mean() > 0.95
    # a target whose only nearby solution is outside the box: clipped, and honestly failing
    outside = q_true[150:151].copy()
    outside[0, 0] = upper[0] + 10 * DEG
    edge = refine(robot, outside - 2 * DEG, K.fk(robot, outside), lower=lower, upper=upper)
    assert edge.q[0, 0] <= upper[0] and not edge.success[0] and edge.position_error_m[0] > 1e-3


def test_limits_wider_than_a_full_turn_do_not_clip(jaco):
    q0 = np.array([[3.1, 2.0, -1.0, 0.5, -1.0, 0.3]])
    targets = K.fk(jaco, q0 + 0.1)  # joint 0 has to cross +pi
    result = refine(jaco, q0, targets, lower=jaco.qlim[0], upper=jaco.qlim[1])
    # it crossed +pi (a clip would have stopped it at pi, short of the target), and the answer
    # is given inside the limits: 3.2 rad is -3.083 rad
    assert result.success[0] and result.q[0, 0] == pytest.approx(3.2 - 2 * math.pi, abs=1e-6)
    np.testing.assert_allclose(result.q[0, 1:], q0[0, 1:] + 0.1, atol=1e-6)


def test_bad_inputs_raise_value_errors_naming_rows(jaco, rng):
    _, q0, targets = working_batch(jaco, rng, 8, perturbation_deg=1.0)
    with pytest.raises(ValueError, match=r"q0 has 8 rows but target_poses has 7"):
        refine(jaco, q0, targets[:7])
    with pytest.raises(ValueError, match=r"shape \(N, 6\)"):
        refine(jaco, q0[:, :5], targets)
    with pytest.raises(ValueError, match=r"shape \(N, 4, 4\)"):
        refine(jaco, q0, targets[:, :3])
    bad_q = q0.copy()
    bad_q[2, 1], bad_q[5, 0] = np.nan, np.inf
    with pytest.raises(ValueError, match=r"q0 has non-finite values in rows \[2, 5\]"):
        refine(jaco, bad_q, targets)
    bad_targets = targets.copy()
    bad_targets[3, 0, 3] = np.nan
    with pytest.raises(ValueError, match=r"target_poses has non-finite values in rows \[3\]"):
        refine(jaco, q0, bad_targets)
    bad_targets = targets.copy()
    bad_targets[6, :3, :3] *= 1.01
    with pytest.raises(ValueError, match=r"target_poses rows \[6\] .*not orthonormal"):
        refine(jaco, q0, bad_targets)
    with pytest.raises(ValueError, match="both lower and upper"):
        refine(jaco, q0, targets, lower=WORKING_LOWER)
    with pytest.raises(ValueError, match=r"bad joints \[1\]"):
        refine(jaco, q0, targets, lower=WORKING_LOWER, upper=np.where(np.arange(6) == 1, 0.0, 3.0))
    with pytest.raises(ValueError, match="tolerance_m"):
        refine(jaco, q0, targets, tolerance_m=0.0)
    with pytest.raises(ValueError, match=r"shape \(N, 6\)"):
        jacobian(jaco, np.zeros(6))


def test_into_limits_wraps_by_two_pi_where_an_equivalent_fits():
    low, high = np.array([-np.pi] * 6), np.array([np.pi] * 6)
    q = np.array([[0.5, 3 * np.pi, -7.0, 283.7, np.pi, -np.pi]])
    wrapped, inside = into_limits(q, low, high)
    assert inside.all() and np.all((wrapped >= low) & (wrapped <= high))
    np.testing.assert_allclose(np.cos(wrapped), np.cos(q), atol=1e-12)  # the same angles
    np.testing.assert_allclose(np.sin(wrapped), np.sin(q), atol=1e-12)
    assert wrapped[0, 0] == 0.5 and wrapped[0, 4] == np.pi and wrapped[0, 5] == -np.pi  # inside: untouched
    # a box narrower than 2*pi: 2.5 rad has no equivalent in [-1, 1]; the row is not inside
    narrow_low, narrow_high = np.full(6, -1.0), np.full(6, 1.0)
    q = np.array([[0.0] * 6, [2.5, 0, 0, 0, 0, 0], [2 * np.pi + 0.5, 0, 0, 0, 0, 0]])
    wrapped, inside = into_limits(q, narrow_low, narrow_high)
    assert inside.tolist() == [True, False, True]
    assert wrapped[1, 0] == 2.5 and wrapped[2, 0] == pytest.approx(0.5)


def test_refine_answers_inside_limits_exactly_2pi_wide(jaco, rng):
    """Jaco's joints span exactly [-pi, pi]: refinement moves them freely, the answer comes back
    inside (the solver's 283.7 rad answers came from there)."""
    low, high = jaco.qlim
    q_true = rng.uniform(low, high, size=(500, 6))
    start = q_true + rng.normal(scale=1.5, size=q_true.shape) + 2 * np.pi * rng.integers(-40, 40, size=q_true.shape)
    result = refine(jaco, start, K.fk(jaco, q_true), lower=low, upper=high, max_iterations=100)
    assert np.all((result.q >= low) & (result.q <= high))
    check = K.fk(jaco, result.q)
    np.testing.assert_allclose(
        np.linalg.norm(check[:, :3, 3] - K.fk(jaco, q_true)[:, :3, 3], axis=1), result.position_error_m, atol=1e-12
    )


# --- the compiled kernels against the numpy reference ---------------------------------


@pytest.mark.parametrize("name", ["jaco", "puma560", "ur5"])
def test_kernels_fk_jacobian_and_pose_error_match_numpy(name, rng):
    """refine_kernel's one-row FK, Jacobian and pose error against iklab.core.kinematics (itself
    tested against roboticstoolbox) and rotation_log, with a base and tool, angles past pi."""
    from iklab.core import refine_kernel as RK

    robot = K.load_robot(name)
    base, tool = np.eye(4), np.eye(4)
    base[:3, :3], base[:3, 3] = K.rpy_to_matrix(np.array([[0.3, -0.2, 1.0]]))[0], [0.1, -0.2, 0.3]
    tool[:3, :3], tool[:3, 3] = K.rpy_to_matrix(np.array([[-0.5, 0.4, 0.2]]))[0], [0.01, 0.02, 0.15]
    robot = K.Robot.from_dict({**robot.to_dict(), "base": base.tolist(), "tool": tool.tolist()})
    arrays = RK.robot_arrays(robot)
    q = rng.uniform(-2 * math.pi, 2 * math.pi, size=(200, 6))
    rotation, position, jac = K.fk_and_jacobian(robot, q)
    targets = K.fk(robot, rng.uniform(-math.pi, math.pi, size=(200, 6)))
    # targets within 1e-9 rad of a half turn away exercise the log map's wide-angle branch
    axes = rng.normal(size=(20, 3))
    flips = rodrigues((math.pi - 1e-9) * axes / np.linalg.norm(axes, axis=1, keepdims=True))
    targets[:20, :3, :3] = flips @ rotation[:20]
    r, p, j, error = np.empty((3, 3)), np.empty(3), np.empty((6, 6)), np.empty(6)
    for n in range(len(q)):
        RK._fk_jacobian_row(*arrays, q[n], r, p, j)
        np.testing.assert_allclose(r, rotation[n], atol=1e-12)
        np.testing.assert_allclose(p, position[n], atol=1e-12)
        np.testing.assert_allclose(j, jac[n], atol=1e-12)
        RK._fk_row(*arrays, q[n], r, p)
        np.testing.assert_allclose(r, rotation[n], atol=1e-12)
        np.testing.assert_allclose(p, position[n], atol=1e-12)
        RK._pose_error_row(rotation[n], position[n], targets[n, :3, :3], targets[n, :3, 3], error)
        expected = rotation_log(targets[n : n + 1, :3, :3] @ rotation[n].T)[0]
        np.testing.assert_allclose(error[3:], expected, atol=1e-9)
        np.testing.assert_allclose(error[:3], targets[n, :3, 3] - position[n], atol=1e-15)


def test_the_damped_step_solves_the_normal_equations(rng):
    from iklab.core.refine_kernel import _damped_step_row

    for mu in (1e-12, 1e-6, 1.0):
        jac, error = rng.normal(size=(6, 6)), rng.normal(size=6)
        step, scratch = np.empty(6), np.empty((6, 6))
        _damped_step_row(jac, error, mu, step, scratch)
        expected = jac.T @ np.linalg.solve(jac @ jac.T + mu * np.eye(6), error)
        np.testing.assert_allclose(step, expected, rtol=1e-8, atol=1e-10)


def test_an_exact_finish_goes_on_to_1e_10_and_keeps_rows_short_of_it(jaco, rng):
    """refine_checked's exact_tolerance (solve_all's finish): converged rows end within 1e-10 m
    and rad; success is still the asked tolerance's, so a row the step budget stops short of
    the finish stays a success."""
    q_true, q0, targets = working_batch(jaco, rng, 300, perturbation_deg=3.0)
    target_r, target_p = np.ascontiguousarray(targets[:, :3, :3]), np.ascontiguousarray(targets[:, :3, 3])
    plain = refine_checked(jaco, q0, target_r, target_p, None, 25, TOLERANCE_M, TOLERANCE_RAD)
    exact = refine_checked(jaco, q0, target_r, target_p, None, 25, TOLERANCE_M, TOLERANCE_RAD, exact_tolerance=1e-10)
    assert plain.success.all() and exact.success.all()
    assert plain.position_error_m.max() > 1e-8  # the plain stop is at 1e-5 m: most rows end well above 1e-10
    assert exact.position_error_m.max() <= 1e-10 and exact.rotation_error_rad.max() <= 1e-10
    assert np.all(exact.iterations >= plain.iterations) and exact.iterations.mean() <= plain.iterations.mean() + 3
    # one step from 0.05 deg away: within 1e-5 m for most rows, 1e-10 for none; success judged at 1e-5
    q_near = q_true + rng.uniform(-0.05, 0.05, size=q_true.shape) * DEG
    one = refine_checked(jaco, q_near, target_r, target_p, None, 1, TOLERANCE_M, TOLERANCE_RAD, exact_tolerance=1e-10)
    one_plain = refine_checked(jaco, q_near, target_r, target_p, None, 1, TOLERANCE_M, TOLERANCE_RAD)
    np.testing.assert_array_equal(one.success, one_plain.success)
    assert one.success.any() and one.position_error_m[one.success].min() > 1e-10

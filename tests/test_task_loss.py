"""The differentiable FK and the task-space loss (iklab.learning.task_loss) against iklab.core.kinematics."""

import dataclasses
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from iklab.core.encodings import encode_targets
from iklab.core.kinematics import fk, load_robot, rpy_to_matrix
from iklab.learning.config import TrainingConfig
from iklab.learning.models import build_loss
from iklab.learning.task_loss import TaskSpaceLoss, fk_ops, pose_targets


def _with_tool(robot):
    """The robot with a tool offset and turn: the tool branch of FK is exercised too."""
    tool = np.eye(4)
    tool[:3, :3] = rpy_to_matrix(np.array([[0.3, -0.2, 1.1]]))[0]
    tool[:3, 3] = [0.01, -0.02, 0.12]
    return dataclasses.replace(robot, name=f"{robot.name}+tool", tool=tool)


ROBOTS = {name: load_robot(name) for name in ("jaco", "ur5", "puma560")}
ROBOTS["jaco+tool"] = _with_tool(ROBOTS["jaco"])


@pytest.mark.parametrize("name", sorted(ROBOTS))
def test_fk_ops_agrees_with_fk_in_float32(name, rng):
    robot = ROBOTS[name]
    q = rng.uniform(robot.qlim[0], robot.qlim[1], size=(5000, 6))
    rotation, position = fk_ops(robot, tf.constant(q, tf.float32))
    assert rotation.dtype == tf.float32 and rotation.shape == (5000, 3, 3)
    expected = fk(robot, q)
    assert np.abs(position.numpy() - expected[:, :3, 3]).max() < 1e-6  # metres
    assert np.abs(rotation.numpy() - expected[:, :3, :3]).max() < 1e-6


def test_fk_ops_gradient_matches_finite_differences(rng):
    robot = ROBOTS["jaco+tool"]
    q = rng.uniform(-math.pi, math.pi, size=(20, 6))
    weights = rng.normal(size=(3, 3 + 9))  # three scalar functions of the pose

    def outputs(joints):
        rotation, position = fk_ops(robot, joints)
        flat = tf.concat([position, tf.reshape(rotation, (-1, 9))], axis=1)
        return tf.reduce_sum(flat[:, None, :] * weights[None], axis=-1)  # (N, 3)

    q64 = tf.constant(q, tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(q64)
        y = outputs(q64)
    jacobian = tape.batch_jacobian(y, q64).numpy()  # (N, 3, 6)
    step = 1e-6
    numeric = np.empty_like(jacobian)
    for j in range(6):
        delta = np.zeros(6)
        delta[j] = step
        numeric[:, :, j] = (outputs(tf.constant(q + delta)) - outputs(tf.constant(q - delta))).numpy() / (2 * step)
    np.testing.assert_allclose(jacobian, numeric, atol=1e-8)


@pytest.mark.parametrize("encoding", ["sincos", "angles"])
def test_task_space_loss_is_zero_at_the_true_joints_and_measures_the_pose_error(encoding, rng, jaco):
    q = rng.uniform(jaco.qlim[0], jaco.qlim[1], size=(256, 6))
    y_true = np.concatenate([encode_targets(q, encoding), pose_targets(jaco, q)], axis=1)
    loss = TaskSpaceLoss(jaco, encoding, length=0.2)
    at_truth = loss(tf.constant(y_true), tf.constant(encode_targets(q, encoding))).numpy()
    assert at_truth.shape == (256,) and np.abs(at_truth).max() < 1e-10
    q_off = q + rng.normal(scale=0.01, size=q.shape)
    got = loss(tf.constant(y_true), tf.constant(encode_targets(q_off, encoding))).numpy()
    truth, off = fk(jaco, q), fk(jaco, q_off)
    expected = np.sum((off[:, :3, 3] - truth[:, :3, 3]) ** 2, axis=1) / 0.2**2
    expected += 0.5 * np.sum((off[:, :3, :3] - truth[:, :3, :3]) ** 2, axis=(1, 2))
    assert expected.min() > 1e-6  # the perturbation is visible
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-9)


def test_mixed_loss_adds_the_weighted_joint_loss(rng, jaco):
    q = rng.uniform(jaco.qlim[0], jaco.qlim[1], size=(64, 6))
    q_off = q + rng.normal(scale=0.05, size=q.shape)
    y_true = tf.constant(np.concatenate([encode_targets(q, "sincos"), pose_targets(jaco, q)], axis=1))
    y_pred = tf.constant(encode_targets(q_off, "sincos"))
    task = build_loss(TrainingConfig(loss="task"), "sincos", jaco)(y_true, y_pred).numpy()
    mixed = build_loss(TrainingConfig(loss="mixed", joint_weight=2.5), "sincos", jaco)(y_true, y_pred).numpy()
    joint = keras.losses.mean_squared_error(y_true[:, :12], y_pred).numpy()
    np.testing.assert_allclose(mixed, task + 2.5 * joint, rtol=1e-5)
    with pytest.raises(ValueError, match="needs the robot"):
        build_loss(TrainingConfig(loss="task"), "sincos")


def test_a_task_space_run_is_judged_on_the_pose_not_the_joints(mlflow_store):
    from helpers import HEALTHY

    from iklab.learning.config import experiment_from_dict
    from iklab.learning.training import train

    training = {**HEALTHY["training"], "loss": "task", "epochs": 8, "batch_size": 128}  # ~15 s
    raw = {**HEALTHY, "training": training, "mlflow": {"log_model": False}}
    result = train(experiment_from_dict(raw))
    assert result.status == "finished"
    last = result.history[-1]
    assert {f"r2/j{i}" for i in range(12)} <= set(last)  # x, y, z and the rotation matrix, row by row
    assert last["r2_mean"] > 0.95 and "collapsed_to_mean" not in result.flags
    # learned: 3x closer than predicting the mean pose (~130 mm on this box)
    assert result.metrics["test/position_error_mm_median"] < 50
    assert (
        result.metrics["baseline/mean/position_error_mm_median"] > 3 * result.metrics["test/position_error_mm_median"]
    )
    # joint_first (0.3 by default): the joint loss alone for the first epochs kept the network
    # in the data's IK branch, and the task-space loss took over for the rest
    assert result.metrics["test/joint_error_deg_mean"] < 5
    assert float(result.model.loss.task_share.numpy()) == 1.0

"""A task-space loss: the error of the predicted joints measured where it matters, at the end
effector, through a differentiable forward kinematics written with ``keras.ops`` (TensorFlow
here, on the CPU or a GPU; Keras compiles the step with XLA only when a GPU is present).

The joint loss treats every joint alike and every radian alike; a radian of the shoulder moves
the hand much further than one of the wrist. The task-space loss is

    |p - p*|^2 / length^2 + |R - R*|_F^2 / 2

per row: the squared position error in units of ``length`` (metres) plus the squared chordal
rotation distance, which is 2 (1 - cos angle) ~ angle^2 for small angles. With ``length`` =
0.2 m, 1 mm of position costs as much as 0.29 deg of rotation. It is zero exactly when the
predicted joints reach the target pose, whichever joints those are (another IK branch included).

Its targets are the encoded joints followed by the target pose (position, then the rotation
matrix row by row), so FK runs once per step, on the prediction: ``pose_targets`` builds them.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from iklab.core.kinematics import Robot, fk_rotation_translation

POSE_TARGET_COLUMNS = 12  # x, y, z, r00 .. r22
DEFAULT_LENGTH_M = 0.2


def fk_ops(robot: Robot, q: keras.KerasTensor) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """Batched FK of ``q`` ``(N, 6)`` radians: rotations ``(N, 3, 3)`` and positions ``(N, 3)``,
    in ``q``'s dtype, differentiable. The same recursion as ``iklab.core.kinematics`` (frame columns
    updated link by link: no 4x4 products)."""
    ops = keras.ops
    dtype = q.dtype
    theta = q * ops.convert_to_tensor(robot.sign, dtype) + ops.convert_to_tensor(robot.offset, dtype)
    cos_t, sin_t = ops.cos(theta), ops.sin(theta)
    ones = ops.ones_like(theta[:, :1])

    def constant_rows(vector: np.ndarray) -> keras.KerasTensor:  # (N, 3) copies of a fixed column
        return ones * ops.convert_to_tensor(vector.reshape(1, 3), dtype)

    x, y, z = (constant_rows(robot.base[:3, j]) for j in range(3))
    p = constant_rows(robot.base[:3, 3])
    for i in range(robot.n_joints):
        ct, st = cos_t[:, i : i + 1], sin_t[:, i : i + 1]
        u, v = x * ct + y * st, y * ct - x * st
        if robot.d[i]:
            p = p + float(robot.d[i]) * z
        if robot.a[i]:
            p = p + float(robot.a[i]) * u
        ca, sa = math.cos(robot.alpha[i]), math.sin(robot.alpha[i])
        x, y, z = u, v * ca + z * sa, z * ca - v * sa
    if not np.array_equal(robot.tool, np.eye(4)):
        tool_r, tool_p = robot.tool[:3, :3], robot.tool[:3, 3]
        p = p + x * float(tool_p[0]) + y * float(tool_p[1]) + z * float(tool_p[2])
        x, y, z = (x * float(tool_r[0, j]) + y * float(tool_r[1, j]) + z * float(tool_r[2, j]) for j in range(3))
    return ops.stack([x, y, z], axis=-1), p


def decode_ops(y: keras.KerasTensor, output_encoding: str) -> keras.KerasTensor:
    """Model outputs -> joint angles ``(N, 6)``, differentiable (``encodings.decode_outputs``)."""
    if output_encoding == "angles":
        return y
    if output_encoding == "sincos":
        return keras.ops.arctan2(y[:, :6], y[:, 6:12])
    raise ValueError(f"unknown output encoding {output_encoding!r}; choose from angles, sincos")


def pose_targets(robot: Robot, q: np.ndarray) -> np.ndarray:
    """``(N, 12)`` float32 target poses of joints ``q``: position, then rotation row by row."""
    rotation, position = fk_rotation_translation(robot, q)
    return np.concatenate([position, rotation.reshape(-1, 9)], axis=1).astype(np.float32)


class TaskSpaceLoss:
    """Keras loss on targets ``[encoded joints | pose_targets]`` and the model's encoded joints.

    ``joint_loss`` (optional) is added with weight ``joint_weight`` on the joint columns: the
    mixed loss. Its position term is in units of ``length`` metres (see the module docstring).
    """

    def __init__(
        self,
        robot: Robot,
        output_encoding: str,
        *,
        joint_loss: object | None = None,
        joint_weight: float = 0.0,
        length: float = DEFAULT_LENGTH_M,
    ) -> None:
        if length <= 0:
            raise ValueError(f"training.task_length_m must be > 0, got {length}")
        self.robot, self.output_encoding, self.length = robot, output_encoding, float(length)
        self.joint_loss, self.joint_weight = joint_loss, float(joint_weight)
        # 1: the task-space loss (mixed: with its joint term); 0: the joint loss alone, which
        # JointFirst sets for the first part of a run (it anchors the training data's IK branch)
        self.task_share = keras.Variable(1.0, trainable=False, name="task_share")
        self.__name__ = "task_space_loss"  # Keras names the loss after its function

    def __call__(self, y_true: keras.KerasTensor, y_pred: keras.KerasTensor) -> keras.KerasTensor:
        ops = keras.ops
        y_pred = ops.cast(y_pred, "float32")
        y_true = ops.cast(y_true, "float32")
        joints = y_true.shape[-1] - POSE_TARGET_COLUMNS
        rotation, position = fk_ops(self.robot, decode_ops(y_pred, self.output_encoding))
        target_p = y_true[:, joints : joints + 3]
        target_r = ops.reshape(y_true[:, joints + 3 :], (-1, 3, 3))
        position_term = ops.sum(ops.square(position - target_p), axis=-1) / self.length**2
        rotation_term = 0.5 * ops.sum(ops.square(rotation - target_r), axis=(-2, -1))
        loss = position_term + rotation_term
        if self.joint_loss is None:
            return loss
        joint = self.joint_loss(y_true[:, :joints], y_pred)
        if self.joint_weight:
            loss = loss + self.joint_weight * joint
        share = ops.cast(self.task_share, "float32")
        return share * loss + (1.0 - share) * joint


class JointFirst(keras.callbacks.Callback):
    """The joint loss alone for the first ``fraction`` of a run, then the task-space loss.

    The task-space loss accepts any joints that reach the pose; trained from the start it
    settles in whichever IK branch it meets first (on Jaco's working region: another branch,
    every joint tens of degrees from the data's, within the joint limits). Begun in the data's
    branch, it refines the fit there. ``progress()`` says how far the run is (a time budget's
    share spent); by default the share of epochs begun."""

    def __init__(self, loss: TaskSpaceLoss, fraction: float, epochs: int, progress: object = None) -> None:
        super().__init__()
        self.loss, self.fraction, self.epochs, self._progress = loss, fraction, epochs, progress
        self._epoch = 0

    def _update(self) -> None:
        progress = self._progress() if self._progress is not None else self._epoch / self.epochs
        share = 1.0 if progress >= self.fraction else 0.0
        if float(self.loss.task_share.numpy()) != share:
            self.loss.task_share.assign(share)

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._update()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch
        self._update()

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        if self._progress is not None and batch % 50 == 0:  # a time budget moves within an epoch
            self._update()

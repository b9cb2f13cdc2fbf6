"""Robot-side API: load a logged IK model, solve batches of poses, refine to exact IK.

    from iklab.solver import IKSolver
    solver = IKSolver.load("models:/ik-jaco@champion")   # or models:/ik-jaco/3, runs:/..., a path
    result = solver.solve(poses, refine=True)            # (N, 4, 4), (4, 4) or spatialmath SE3
    result.q, result.position_error_m, result.rotation_error_rad, result.success

Everything needed comes from the metadata logged with the model (robot DH
table, region, encodings): no dataset or experiment file. Errors are always
FK-verified.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_gen.regions import Region

from .data import encode_inputs
from .kinematics import Robot, RobotError, matrix_to_quaternion
from .models import MODEL_METADATA_KEY, predict_joints
from .refine import refine as refine_joints
from .refine import validate_poses, verify


@dataclass(frozen=True)
class IKResult:
    q: np.ndarray  # (N, 6) radians
    position_error_m: np.ndarray  # (N,) FK-verified
    rotation_error_rad: np.ndarray  # (N,) FK-verified
    success: np.ndarray  # (N,) bool, within tolerance
    within_region: np.ndarray  # (N,) bool, q inside the region the model was trained on
    iterations: np.ndarray  # (N,) refinement iterations (0 without refinement)


class IKSolver:
    """A trained IK network plus the robot it was trained for."""

    def __init__(self, model, metadata: dict):
        try:
            self.robot = Robot.from_dict(metadata["robot"])
            self.region = Region.from_dict(metadata["region"])
            self.input_encoding = metadata["input_encoding"]
            self.output_encoding = metadata["output_encoding"]
        except (KeyError, TypeError, RobotError) as exc:
            raise ValueError(f"the model's iklab metadata is incomplete ({exc}); it was not logged by "
                             "iklab.train, so its robot and encodings are unknown") from None
        self.model = model

    @classmethod
    def load(cls, uri: str, *, robot: str | None = None) -> "IKSolver":
        """Load from an MLflow URI or a local model directory; ``robot`` checks the model's robot."""
        import mlflow

        source = str(Path(uri).resolve()) if Path(uri).exists() else uri
        try:
            info = mlflow.models.get_model_info(source)
        except Exception as exc:  # MLflow raises several types for a bad URI
            raise ValueError(f"cannot load an MLflow model from {uri!r}: {exc}") from None
        metadata = (info.metadata or {}).get(MODEL_METADATA_KEY)
        if metadata is None:
            raise ValueError(f"{uri!r} has no iklab metadata: it was not logged by iklab.train")
        if robot is not None and metadata.get("robot", {}).get("name") != robot:
            raise ValueError(f"{uri!r} was trained for robot {metadata.get('robot', {}).get('name')!r}, "
                             f"not {robot!r}")
        if "tensorflow" in info.flavors:  # the bare network (what iklab logged before the wrapper)
            # compile=False: inference needs no loss, and a custom one (wrapped_angle_loss) would
            # otherwise have to be importable by name
            return cls(mlflow.tensorflow.load_model(source, keras_model_kwargs={"compile": False}), metadata)
        wrapper = mlflow.pyfunc.load_model(source).unwrap_python_model()  # iklab.serving.IKPyfuncModel
        if not isinstance(getattr(wrapper, "solver", None), cls):
            raise ValueError(f"{uri!r} is neither an iklab network nor iklab's pyfunc wrapper of one")
        return wrapper.solver

    def solve(self, poses, *, refine: bool = True, max_iterations: int = 50, tolerance_m: float = 1e-5,
              tolerance_rad: float = math.radians(0.01)) -> IKResult:
        """Joint angles reaching ``poses``; errors FK-verified; ``success`` within both tolerances."""
        poses = validate_poses(as_pose_batch(poses))
        q = self.predict(poses)
        if refine:
            out = refine_joints(self.robot, q, poses, lower=self.robot.qlim[0], upper=self.robot.qlim[1],
                                max_iterations=max_iterations, tolerance_m=tolerance_m,
                                tolerance_rad=tolerance_rad)
        else:
            out = verify(self.robot, q, poses[:, :3, :3], poses[:, :3, 3], tolerance_m, tolerance_rad)
        return IKResult(out.q, out.position_error_m, out.rotation_error_rad, out.success,
                        self.region.contains(out.q), out.iterations)

    def predict(self, poses: np.ndarray) -> np.ndarray:
        """The network's joints for ``(N, 4, 4)`` poses (radians, not refined)."""
        features = encode_inputs(poses[:, :3, 3], matrix_to_quaternion(poses[:, :3, :3]), self.input_encoding)
        return predict_joints(self.model, features, self.output_encoding)


def as_pose_batch(poses) -> np.ndarray:
    """``(N, 4, 4)``, ``(4, 4)`` or spatialmath ``SE3`` (one or many) -> ``(N, 4, 4)`` float64."""
    if hasattr(poses, "A") and type(poses).__name__ == "SE3":
        matrices = poses.A
        poses = np.asarray(matrices if isinstance(matrices, np.ndarray) else list(matrices))
    poses = np.asarray(poses, dtype=np.float64)
    if poses.shape == (4, 4):
        poses = poses[None]
    if poses.ndim != 3 or poses.shape[1:] != (4, 4):
        raise ValueError(f"poses must be (N, 4, 4), (4, 4) or SE3, got shape {poses.shape}")
    return poses

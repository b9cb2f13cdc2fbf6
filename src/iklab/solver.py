"""Robot-side API: load a logged IK model, solve batches of poses, refine to exact IK.

    from iklab.solver import IKSolver
    solver = IKSolver.load("models:/ik-jaco@champion")   # or models:/ik-jaco/3, runs:/..., a path
    result = solver.solve(poses, refine=True)            # (N, 4, 4), (4, 4) or spatialmath SE3
    result.q, result.position_error_m, result.rotation_error_rad, result.success

Everything needed comes from the metadata logged with the model (robot DH
table, region, encodings): no dataset or experiment file. Errors are always
FK-verified.

Robot side: imports numpy and iklab's core (kinematics, regions, encodings, refine) at
module level; MLflow when a model is loaded, and TensorFlow only through the loaded network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .encodings import decode_outputs, encode_inputs
from .kinematics import matrix_to_quaternion
from .metadata import MODEL_METADATA_KEY, ModelMetadata
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

    def __init__(self, model: object, metadata: ModelMetadata | dict) -> None:
        """``model``: a Keras network taking raw pose features; ``metadata``: what it was trained on."""
        if not isinstance(metadata, ModelMetadata):
            metadata = ModelMetadata.from_dict(metadata)
        self.metadata = metadata
        self.robot, self.region = metadata.robot, metadata.region
        self.input_encoding, self.output_encoding = metadata.input_encoding, metadata.output_encoding
        self.model = model

    @classmethod
    def load(cls, uri: str, *, robot: str | None = None) -> IKSolver:
        """Load from an MLflow URI or a local model directory; ``robot`` checks the model's robot."""
        import mlflow

        source = str(Path(uri).resolve()) if Path(uri).exists() else uri
        try:
            info = mlflow.models.get_model_info(source)
        except Exception as exc:  # MLflow raises several types for a bad URI
            raise ValueError(f"cannot load an MLflow model from {uri!r}: {exc}") from None
        raw = (info.metadata or {}).get(MODEL_METADATA_KEY)
        if raw is None:
            raise ValueError(f"{uri!r} has no iklab metadata: it was not logged by iklab.train")
        metadata = ModelMetadata.from_dict(raw)
        if robot is not None and metadata.robot.name != robot:
            raise ValueError(f"{uri!r} was trained for robot {metadata.robot.name!r}, not {robot!r}")
        if "tensorflow" in info.flavors:  # the bare network (what iklab logged before the wrapper)
            # compile=False: inference needs no loss, and a custom one (wrapped_angle_loss) would
            # otherwise have to be importable by name
            return cls(mlflow.tensorflow.load_model(source, keras_model_kwargs={"compile": False}), metadata)
        wrapper = mlflow.pyfunc.load_model(source).unwrap_python_model()  # iklab.serving.IKPyfuncModel
        if not isinstance(getattr(wrapper, "solver", None), cls):
            raise ValueError(f"{uri!r} is neither an iklab network nor iklab's pyfunc wrapper of one")
        return wrapper.solver

    def solve(
        self,
        poses: object,
        *,
        refine: bool = True,
        max_iterations: int = 50,
        tolerance_m: float = 1e-5,
        tolerance_rad: float = math.radians(0.01),
    ) -> IKResult:
        """Joint angles reaching ``poses``, inside the robot's joint limits (an angle is moved
        there by 2*pi; a row where none fits is not a success); errors FK-verified at the
        returned joints; ``success`` within both tolerances."""
        poses = validate_poses(as_pose_batch(poses))
        q = self.predict(poses)
        if refine:
            out = refine_joints(
                self.robot,
                q,
                poses,
                lower=self.robot.qlim[0],
                upper=self.robot.qlim[1],
                max_iterations=max_iterations,
                tolerance_m=tolerance_m,
                tolerance_rad=tolerance_rad,
            )
        else:
            out = verify(
                self.robot,
                q,
                poses[:, :3, :3],
                poses[:, :3, 3],
                tolerance_m,
                tolerance_rad,
                lower=self.robot.qlim[0],
                upper=self.robot.qlim[1],
            )
        return IKResult(
            out.q,
            out.position_error_m,
            out.rotation_error_rad,
            out.success,
            self.region.contains(out.q),
            out.iterations,
        )

    def predict(self, poses: np.ndarray) -> np.ndarray:
        """The network's joints for ``(N, 4, 4)`` poses (radians, not refined)."""
        features = encode_inputs(poses[:, :3, 3], matrix_to_quaternion(poses[:, :3, :3]), self.input_encoding)
        return predict_joints(self.model, features, self.output_encoding)


_PREDICT_CHUNK = 65536


def predict_joints(model: object, features: np.ndarray, output_encoding: str) -> np.ndarray:
    """Raw pose features ``(N, F)`` through a Keras ``model`` -> decoded joint angles ``(N, 6)`` radians."""
    # predict_on_batch over large chunks: model.predict's per-call data pipeline costs
    # 3x the forward pass of a 4x256 MLP on 10k rows here; chunks bound the memory.
    chunks = [
        model.predict_on_batch(features[start : start + _PREDICT_CHUNK])
        for start in range(0, len(features), _PREDICT_CHUNK)
    ]
    raw = np.concatenate([np.asarray(c) for c in chunks]) if chunks else np.zeros((0,) + model.output_shape[1:])
    return decode_outputs(raw, output_encoding)


def as_pose_batch(poses: object) -> np.ndarray:
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

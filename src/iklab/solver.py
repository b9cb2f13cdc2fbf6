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
from .kinematics import matrix_to_quaternion, wrap_angle
from .metadata import MODEL_METADATA_KEY, ModelMetadata
from .refine import RefineResult, row_list, validate_poses, verify
from .refine import refine as refine_joints


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
        q_seed: object = None,
        max_joint_step: float | None = None,
        refine: bool = True,
        max_iterations: int = 50,
        tolerance_m: float = 1e-5,
        tolerance_rad: float = math.radians(0.01),
    ) -> IKResult:
        """Joint angles reaching ``poses``, inside the robot's joint limits (an angle is moved
        there by 2*pi; a row where none fits is not a success); errors FK-verified at the
        returned joints; ``success`` within both tolerances.

        ``q_seed`` ``(N, 6)`` or ``(6,)`` radians (e.g. the robot's current joints): refine from
        the network's answer and from the seed, and return the exact solution nearer the seed
        (largest joint difference, wrapped). ``max_joint_step`` (radians, needs a seed): a row
        whose answer is farther than this from its seed is not a success (a continuity break
        is reported, never hidden).
        """
        poses = validate_poses(as_pose_batch(poses))
        seed = _seed_batch(q_seed, len(poses))
        if max_joint_step is not None and (seed is None or not max_joint_step > 0):
            raise ValueError("max_joint_step needs q_seed and a value > 0 (radians)")
        starts = [self.predict(poses)] + ([] if seed is None else [seed])
        options = {"tolerance_m": tolerance_m, "tolerance_rad": tolerance_rad}
        limits = {"lower": self.robot.qlim[0], "upper": self.robot.qlim[1]}
        if refine:
            candidates = [
                refine_joints(self.robot, q, poses, max_iterations=max_iterations, **limits, **options) for q in starts
            ]
        else:
            candidates = [verify(self.robot, q, poses[:, :3, :3], poses[:, :3, 3], **options, **limits) for q in starts]
        out = candidates[0] if seed is None else _nearest_exact(candidates, seed)
        success = out.success
        if max_joint_step is not None:
            success = success & (joint_distance(out.q, seed) <= max_joint_step)
        return IKResult(
            out.q,
            out.position_error_m,
            out.rotation_error_rad,
            success,
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


def joint_distance(q: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Largest joint difference of each row, wrapped to [0, pi]: ``(N, 6), (N, 6)`` -> ``(N,)`` radians."""
    return np.max(np.abs(wrap_angle(q - reference)), axis=1)


def _seed_batch(q_seed: object, n: int) -> np.ndarray | None:
    """``(6,)`` or ``(N, 6)`` finite radians -> ``(N, 6)``; None stays None."""
    if q_seed is None:
        return None
    seed = np.asarray(q_seed, dtype=np.float64)
    if seed.shape == (6,):
        seed = np.broadcast_to(seed, (n, 6))
    if seed.shape != (n, 6):
        raise ValueError(f"q_seed must have shape (6,) or ({n}, 6) for {n} poses, got {seed.shape}")
    bad = np.flatnonzero(~np.all(np.isfinite(seed), axis=1))
    if bad.size:
        raise ValueError(f"q_seed has NaN or infinite values in rows {row_list(bad)}")
    return seed


def _nearest_exact(candidates: list[RefineResult], seed: np.ndarray) -> RefineResult:
    """Per row, the candidate nearest ``seed`` among the exact ones (the first if none is)."""
    distance = np.stack([joint_distance(c.q, seed) for c in candidates])  # (K, N)
    exact = np.stack([c.success for c in candidates])
    choice = np.argmin(np.where(exact, distance, np.inf), axis=0)
    choice[~exact.any(axis=0)] = 0
    rows = np.arange(len(seed))

    def pick(field: str) -> np.ndarray:
        return np.stack([getattr(c, field) for c in candidates])[choice, rows]

    fields = ("q", "position_error_m", "rotation_error_rad", "success", "iterations")
    return RefineResult(**{field: pick(field) for field in fields})

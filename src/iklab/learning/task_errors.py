"""Task-space evaluation of predicted joints, and two baselines that need no training.

An IK answer is judged where it matters, at the end effector: predicted joints
go through FK and are compared with the target pose (position in mm, rotation
as a geodesic angle in degrees). Joint-space error is reported too, wrap-aware,
but a correct IK answer can differ from the dataset's joints (another branch),
so it is a diagnostic, not the score.

Baselines give the numbers a scale: "predict the circular mean" is what a
network that learned nothing scores; k-nearest-neighbour lookup in the
training set is what memorising the data scores.

Units: radians in, millimetres and degrees out. A non-finite prediction is
never dropped: its errors are NaN, summaries count it and treat it as +inf.

Numpy only (scikit-learn is imported by the k-NN baseline when it runs); the plots of these
reports are in `iklab.learning.plots`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from iklab.core.kinematics import Robot, as_joint_batch, fk, rotation_angle_between, wrap_angle
from iklab.learning.metric_names import POSITION_MEDIAN, POSITION_P95, ROTATION_MEDIAN

_PERCENTILES = (50.0, 95.0, 100.0)


@dataclass(frozen=True, eq=False)  # eq=False: numpy arrays have no single truth value
class ErrorReport:
    """Per-row errors of one set of predictions against the same targets."""

    position_error_mm: np.ndarray  # (N,) |p_fk(q_pred) - p_target|
    rotation_error_deg: np.ndarray  # (N,) geodesic angle between R_fk(q_pred) and R_target
    joint_error_deg: np.ndarray  # (N, 6) |wrap(q_pred - q_true)|

    @property
    def nonfinite_rows(self) -> int:
        """Rows with any non-finite error (a NaN/inf prediction)."""
        finite = (
            np.isfinite(self.position_error_mm)
            & np.isfinite(self.rotation_error_deg)
            & np.all(np.isfinite(self.joint_error_deg), axis=1)
        )
        return int(np.count_nonzero(~finite))

    def summary(self, prefix: str = "") -> dict[str, float]:
        """Flat ``{prefix + metric: float}`` for logging.

        Non-finite errors count as +inf, so one failed row makes the mean and
        max infinite and enough of them move the median: failure stays visible.
        """
        position_median, position_p95, position_max = percentiles_inf(self.position_error_mm)
        rotation_median, rotation_p95, _ = percentiles_inf(self.rotation_error_deg)
        joint = _nonfinite_as_inf(self.joint_error_deg)
        metrics = {
            POSITION_MEDIAN: position_median,
            "position_error_mm_mean": float(np.mean(_nonfinite_as_inf(self.position_error_mm))),
            POSITION_P95: position_p95,
            "position_error_mm_max": position_max,
            ROTATION_MEDIAN: rotation_median,
            "rotation_error_deg_mean": float(np.mean(_nonfinite_as_inf(self.rotation_error_deg))),
            "rotation_error_deg_p95": rotation_p95,
            "joint_error_deg_mean": float(np.mean(joint)),
            **{f"joint_error_deg_j{j}": float(value) for j, value in enumerate(np.mean(joint, axis=0))},
            "nonfinite_rows": float(self.nonfinite_rows),
        }
        return {prefix + key: value for key, value in metrics.items()}


def _nonfinite_as_inf(values: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(values), values, np.inf)


def percentiles_inf(values: np.ndarray, percents: tuple[float, ...] = _PERCENTILES) -> list[float]:
    """numpy's linear percentiles of ``(N,)`` values, with non-finite values as +inf.

    np.percentile returns NaN as soon as an interpolation touches inf
    (inf - inf, inf * 0); here a percentile is inf when it interpolates
    towards an inf and exactly the sorted value when it lands on one.
    """
    ordered = np.sort(_nonfinite_as_inf(values))
    with np.errstate(invalid="ignore"):
        result = np.percentile(ordered, percents)
    position = (len(ordered) - 1) * np.asarray(percents) / 100.0
    lower = np.floor(position).astype(int)
    upper = np.minimum(lower + 1, len(ordered) - 1)
    on_sample = position == lower
    result = np.where(on_sample, ordered[lower], result)
    result = np.where(~on_sample & np.isinf(ordered[upper]), np.inf, result)
    return [float(value) for value in result]


def _check_joints(name: str, q: np.ndarray, n_joints: int, finite: bool) -> np.ndarray:
    q = as_joint_batch(q, n_joints, name)
    if finite and not np.all(np.isfinite(q)):
        raise ValueError(f"{name} contains NaN or inf; ground truth and training data must be finite")
    return q


def task_space_errors(
    robot: Robot, q_pred: np.ndarray, q_true: np.ndarray, target_poses: np.ndarray | None = None
) -> ErrorReport:
    """Errors of predicted joints ``(N, 6)`` rad against true joints ``(N, 6)`` rad.

    ``target_poses`` ``(N, 4, 4)`` defaults to ``fk(robot, q_true)``; pass it
    when the targets are known (saves an FK pass, or tests a noisy target).
    NaN/inf predictions are allowed and give NaN errors in their rows.
    """
    n_joints = robot.n_joints
    q_pred = _check_joints("q_pred", q_pred, n_joints, finite=False)
    q_true = _check_joints("q_true", q_true, n_joints, finite=True)
    if q_pred.shape != q_true.shape:
        raise ValueError(
            f"q_pred has shape {q_pred.shape} but q_true has shape {q_true.shape}; they must describe the same rows"
        )
    if q_pred.shape[0] == 0:
        raise ValueError("no rows to evaluate: q_pred and q_true are empty")
    if target_poses is None:
        target_poses = fk(robot, q_true)
    target_poses = np.asarray(target_poses, dtype=np.float64)
    if target_poses.shape != (q_true.shape[0], 4, 4):
        raise ValueError(
            f"target_poses must have shape ({q_true.shape[0]}, 4, 4) to match "
            f"q_true {q_true.shape}, got {target_poses.shape}"
        )
    if not np.all(np.isfinite(target_poses)):
        raise ValueError("target_poses contains NaN or inf; targets must be finite")
    with np.errstate(invalid="ignore"):  # NaN predictions are expected to give NaN rows
        predicted = fk(robot, q_pred)
        position = np.linalg.norm(predicted[:, :3, 3] - target_poses[:, :3, 3], axis=1)
        rotation = rotation_angle_between(predicted[:, :3, :3], target_poses[:, :3, :3])
        joint = np.abs(wrap_angle(q_pred - q_true))
    return ErrorReport(
        position_error_mm=position * 1000.0, rotation_error_deg=np.degrees(rotation), joint_error_deg=np.degrees(joint)
    )


def best_candidate_errors(robot: Robot, candidates: np.ndarray, q_true: np.ndarray) -> ErrorReport:
    """Errors of the best of several answers per row: candidates ``(N, K, 6)`` radians against
    true joints ``(N, 6)``; per row the candidate nearest the target position (its rotation
    and joint errors with it). A mixture's answer to "is any component right?"."""
    candidates = np.asarray(candidates, dtype=np.float64)
    n, k = candidates.shape[:2]
    q_true = _check_joints("q_true", q_true, robot.n_joints, finite=True)
    targets = np.repeat(fk(robot, q_true), k, axis=0)
    every = task_space_errors(robot, candidates.reshape(n * k, -1), np.repeat(q_true, k, axis=0), targets)
    position = _nonfinite_as_inf(every.position_error_mm).reshape(n, k)
    best = np.argmin(position, axis=1)
    rows = np.arange(n)
    return ErrorReport(
        position_error_mm=every.position_error_mm.reshape(n, k)[rows, best],
        rotation_error_deg=every.rotation_error_deg.reshape(n, k)[rows, best],
        joint_error_deg=every.joint_error_deg.reshape(n, k, -1)[rows, best],
    )


def circular_mean(q: np.ndarray) -> np.ndarray:
    """Per-column mean direction ``(N, D)`` rad -> ``(D,)`` rad in [-pi, pi].

    The arithmetic mean of 3.1 and -3.1 is 0, the opposite side of the
    circle; the mean of the unit vectors points at pi. Undefined (arbitrary)
    when the angles are spread evenly around the circle.
    """
    q = np.asarray(q, dtype=np.float64)
    if q.ndim != 2 or q.shape[0] == 0:
        raise ValueError(f"circular_mean needs a non-empty (N, D) array of radians, got shape {q.shape}")
    return np.arctan2(np.mean(np.sin(q), axis=0), np.mean(np.cos(q), axis=0))


def mean_baseline(q_train: np.ndarray, n: int) -> np.ndarray:
    """Predict the circular mean of the training joints ``(N, 6)`` for every one of ``n`` rows."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer number of rows, got {n!r}")
    return np.tile(circular_mean(q_train), (int(n), 1))


def knn_baseline(
    features_train: np.ndarray,
    q_train: np.ndarray,
    features_query: np.ndarray,
    *,
    k: int = 1,
    max_train_rows: int = 200_000,
    seed: int = 0,
) -> np.ndarray:
    """k-nearest-neighbour joints: features ``(N, F)``, joints ``(N, D)`` rad, queries ``(M, F)`` -> ``(M, D)``.

    Neighbours are found in standardized feature space (so metres and
    quaternion components weigh alike) among at most ``max_train_rows``
    training rows drawn with ``seed``. Averaging sin and cos and decoding with
    atan2 keeps the average of k neighbours on the right side of +-pi.
    Output angles are in (-pi, pi]: equal to the neighbours' modulo 2*pi.
    """
    from sklearn.neighbors import KNeighborsRegressor  # ~0.5 s import, only when used
    from sklearn.preprocessing import StandardScaler

    features_train, features_query = (np.asarray(a, dtype=np.float64) for a in (features_train, features_query))
    q_train = np.asarray(q_train, dtype=np.float64)
    if features_train.ndim != 2 or q_train.ndim != 2 or features_train.shape[0] != q_train.shape[0]:
        raise ValueError(
            f"features_train (N, F) and q_train (N, D) must be 2-D with the same N, "
            f"got {features_train.shape} and {q_train.shape}"
        )
    if features_query.ndim != 2 or features_query.shape[1] != features_train.shape[1]:
        raise ValueError(
            f"features_query must have shape (M, {features_train.shape[1]}) like "
            f"features_train, got {features_query.shape}"
        )
    for name, array in (("features_train", features_train), ("q_train", q_train), ("features_query", features_query)):
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{name} contains NaN or inf; k-NN needs finite inputs")
    if max_train_rows < 1:
        raise ValueError(f"max_train_rows must be at least 1, got {max_train_rows}")
    n_used = min(features_train.shape[0], max_train_rows)
    if not 1 <= k <= n_used:
        raise ValueError(f"k must be between 1 and the {n_used} training rows used, got {k}")
    if n_used < features_train.shape[0]:
        rows = np.random.default_rng(seed).choice(features_train.shape[0], n_used, replace=False)
        features_train, q_train = features_train[rows], q_train[rows]
    scaler = StandardScaler().fit(features_train)
    model = KNeighborsRegressor(n_neighbors=k, n_jobs=-1)
    model.fit(scaler.transform(features_train), np.concatenate([np.sin(q_train), np.cos(q_train)], axis=1))
    if features_query.shape[0] == 0:
        return np.empty((0, q_train.shape[1]))
    sin_cos = model.predict(scaler.transform(features_query))
    n_joints = q_train.shape[1]
    return np.arctan2(sin_cos[:, :n_joints], sin_cos[:, n_joints:])


def evaluate_with_baselines(
    robot: Robot,
    q_pred: np.ndarray,
    q_test: np.ndarray,
    features_train: np.ndarray,
    q_train: np.ndarray,
    features_test: np.ndarray,
    *,
    knn_k: int = 1,
    knn_rows: int = 200_000,
    seed: int = 0,
    target_poses: np.ndarray | None = None,
) -> dict[str, ErrorReport]:
    """Errors of the model and both baselines on the same test rows.

    ``q_pred``/``q_test`` ``(N, 6)`` rad, ``features_test`` ``(N, F)``,
    ``features_train`` ``(T, F)`` with ``q_train`` ``(T, 6)`` rad.
    Returns ``{"model": ..., "mean": ..., "knn": ...}``.
    """
    q_test = _check_joints("q_test", q_test, robot.n_joints, finite=True)
    features_test = np.asarray(features_test)
    if features_test.ndim != 2 or features_test.shape[0] != q_test.shape[0]:
        raise ValueError(
            f"features_test must have one row per test row, shape ({q_test.shape[0]}, F), got {features_test.shape}"
        )
    if target_poses is None:
        target_poses = fk(robot, q_test)  # once, shared by all three reports
    knn_pred = knn_baseline(features_train, q_train, features_test, k=knn_k, max_train_rows=knn_rows, seed=seed)
    predictions = {"model": q_pred, "mean": mean_baseline(q_train, q_test.shape[0]), "knn": knn_pred}
    return {name: task_space_errors(robot, q, q_test, target_poses) for name, q in predictions.items()}

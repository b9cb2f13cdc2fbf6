"""The three non-IK problems of the diagnosis cases: seeded data, the models, and what "learned" means.

Each problem is data (``make_data(seed, **data)`` -> :class:`ToyArrays`), a model
(``build_model(arrays, **model)``, layers named as in `iklab.learning.models` so the
diagnostics find them: hidden activations ``act_<i>``, last layer ``output``),
and ``evaluate(model, arrays)`` -> the metrics that say whether it learned.

  box_center            images with one bright square -> its centre (x, y) in [-1, 1] (questions/001)
  linear_extrapolation  4 uniform inputs -> x3 - x2 (questions/002)
  identity_autoencoder  84 values ~ N(1.109, 0.00124) -> the same 84 values (questions/003)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np

from iklab.learning.diagnostics import fit_metrics
from iklab.learning.metric_names import R2_MEAN


@dataclass(frozen=True)
class ToyArrays:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray


def _split(x: np.ndarray, y: np.ndarray, val_fraction: float) -> ToyArrays:
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"data.val_fraction must be in (0, 1), got {val_fraction}")
    n_val = max(1, int(round(len(x) * val_fraction)))
    return ToyArrays(x[n_val:], y[n_val:], x[:n_val], y[:n_val])


def _r2(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean over output columns of R^2 (0: as good as predicting each column's mean), as the diagnostics."""
    return fit_metrics(pred.reshape(len(pred), -1), target.reshape(len(target), -1).astype(np.float64))[R2_MEAN]


def _predict(model: keras.Model, x: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict(x, batch_size=4096, verbose=0), dtype=np.float64)


# --- box_center (questions/001) ---------------------------------------------------------


def box_images(
    seed: int,
    rows: int = 10000,
    image_size: int = 32,
    square_size: int = 4,
    pixel_max: float = 255.0,
    channels: int = 1,
    val_fraction: float = 0.2,
) -> ToyArrays:
    """Black ``image_size``^2 images (``channels`` of them), one white ``square_size``^2 square
    (value ``pixel_max``);
    targets: the square's centre (x, y), scaled so the image spans [-1, 1] (0 is the centre)."""
    if not 1 <= square_size < image_size:
        raise ValueError(f"data.square_size must be in [1, image_size), got {square_size}")
    if rows < 2:
        raise ValueError(f"data.rows must be >= 2, got {rows}")
    rng = np.random.default_rng(seed)
    corner = rng.integers(0, image_size - square_size + 1, size=(rows, 2))  # (column, row) of top-left
    images = np.zeros((rows, image_size, image_size, channels), dtype=np.float32)
    offsets = np.arange(square_size)
    r = corner[:, 1, None, None] + offsets[None, :, None]
    c = corner[:, 0, None, None] + offsets[None, None, :]
    images[np.arange(rows)[:, None, None], r, c, :] = pixel_max
    centre = corner + (square_size - 1) / 2.0
    targets = (2.0 * centre / (image_size - 1) - 1.0).astype(np.float32)
    return _split(images, targets, val_fraction)


def box_model(
    arrays: ToyArrays,
    kind: str = "conv",
    filters: tuple = (32, 64, 128),
    kernel_size: int = 5,
    strides: int = 2,
    dense: int = 100,
) -> keras.Model:
    """``conv``: the question's stack (5x5 convs, stride 2, ReLU; dense 100 ReLU; linear 2);
    ``linear``: one Dense(2) on the pixels (the centre is a linear function of them)."""
    inputs = keras.Input(arrays.x_train.shape[1:], name="image")
    x = inputs
    if kind == "conv":
        for i, n in enumerate(filters, start=1):
            x = keras.layers.Conv2D(n, kernel_size, strides=strides, padding="same", name=f"conv_{i}")(x)
            x = keras.layers.Activation("relu", name=f"act_{i}")(x)
        x = keras.layers.Flatten()(x)
        x = keras.layers.Dense(dense, name="dense_1")(x)
        x = keras.layers.Activation("relu", name=f"act_{len(filters) + 1}")(x)
    elif kind == "linear":
        x = keras.layers.Flatten()(x)
    else:
        raise ValueError(f"model.kind must be conv or linear, got {kind!r}")
    outputs = keras.layers.Dense(arrays.y_train.shape[1], name="output")(x)
    return keras.Model(inputs, outputs, name=f"box_{kind}")


def box_metrics(model: keras.Model, arrays: ToyArrays) -> dict[str, float]:
    """Centre error in pixels (validation) of the model and of predicting the training mean."""
    size = arrays.x_val.shape[1]
    to_pixels = (size - 1) / 2.0
    pred = _predict(model, arrays.x_val)
    error = np.linalg.norm(pred - arrays.y_val, axis=1) * to_pixels
    mean_error = np.linalg.norm(arrays.y_train.mean(axis=0) - arrays.y_val, axis=1) * to_pixels
    return {
        "centre_error_px_median": float(np.median(error)),
        "centre_error_px_p95": float(np.percentile(error, 95)),
        "baseline_mean_centre_error_px_median": float(np.median(mean_error)),
        "prediction_std_px": float(pred.std(axis=0).mean() * to_pixels),
        "r2": _r2(pred, arrays.y_val),
    }


# --- linear_extrapolation (questions/002) -------------------------------------------------

SOLUTION_WEIGHTS = np.array([0.0, 0.0, -1.0, 1.0])


def extrapolation_data(seed: int, rows: int = 240000, val_fraction: float = 0.1) -> ToyArrays:
    """x ~ U[0, 1)^4, y = x3 - x2 (the question's "gradient" of the last two values)."""
    rng = np.random.default_rng(seed)
    x = rng.random((rows, 4)).astype(np.float32)
    return _split(x, (x[:, 3] - x[:, 2])[:, None], val_fraction)


def dense_model(arrays: ToyArrays) -> keras.Model:
    """One Dense(1): y = w . x + b; the exact solution is w = (0, 0, -1, 1), b = 0."""
    inputs = keras.Input(arrays.x_train.shape[1:], name="x")
    return keras.Model(inputs, keras.layers.Dense(1, name="output")(inputs), name="dense_1")


def extrapolation_metrics(model: keras.Model, arrays: ToyArrays) -> dict[str, float]:
    kernel, bias = (np.asarray(w, dtype=np.float64) for w in model.get_layer("output").get_weights())
    pred = _predict(model, arrays.x_val)
    metrics = {f"weight_{i}": float(w) for i, w in enumerate(kernel[:, 0])}
    metrics.update(
        {
            "bias": float(bias[0]),
            "max_weight_error": float(np.max(np.abs(kernel[:, 0] - SOLUTION_WEIGHTS))),
            "val_rmse": float(np.sqrt(np.mean((pred - arrays.y_val) ** 2))),
            "r2": _r2(pred, arrays.y_val),
        }
    )
    return metrics


# --- identity_autoencoder (questions/003) -------------------------------------------------


def tiny_variance_data(
    seed: int,
    rows: int = 20000,
    features: int = 84,
    mean: float = 1.1090579,
    std: float = 0.0012380764,
    val_fraction: float = 0.3,
) -> ToyArrays:
    """x ~ N(mean, std) of shape (rows, features); the target is x itself."""
    x = np.random.default_rng(seed).normal(mean, std, (rows, features)).astype(np.float32)
    return _split(x, x, val_fraction)


def autoencoder_model(arrays: ToyArrays, per_sample_normalization: bool = False) -> keras.Model:
    """Dense(features), linear. With per-sample normalization the layer sees each row minus its
    mean over its std, and its output is mapped back with the same mean and std (in the model)."""
    inputs = keras.Input(arrays.x_train.shape[1:], name="x")
    dense = keras.layers.Dense(arrays.y_train.shape[1], name="output")
    if not per_sample_normalization:
        return keras.Model(inputs, dense(inputs), name="autoencoder")
    mean = keras.ops.mean(inputs, axis=-1, keepdims=True)
    std = keras.ops.std(inputs, axis=-1, keepdims=True) + 1e-12
    outputs = dense((inputs - mean) / std) * std + mean
    return keras.Model(inputs, outputs, name="autoencoder_per_sample_norm")


def reconstruction_metrics(model: keras.Model, arrays: ToyArrays) -> dict[str, float]:
    pred = _predict(model, arrays.x_val)
    target = arrays.y_val.astype(np.float64)
    return {
        "r2": _r2(pred, target),
        "val_mse": float(np.mean((pred - target) ** 2)),
        "baseline_mean_mse": float(np.mean((arrays.y_train.mean(axis=0) - target) ** 2)),
    }


@dataclass(frozen=True)
class Problem:
    make_data: Callable[..., ToyArrays]
    build_model: Callable[..., keras.Model]
    evaluate: Callable[[keras.Model, ToyArrays], dict[str, float]]


PROBLEMS = {
    "box_center": Problem(box_images, box_model, box_metrics),
    "linear_extrapolation": Problem(extrapolation_data, dense_model, extrapolation_metrics),
    "identity_autoencoder": Problem(tiny_variance_data, autoencoder_model, reconstruction_metrics),
}

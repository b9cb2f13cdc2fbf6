"""The mixture head's Keras half: its likelihood in the TF graph, the loss, a small model.

Layout and constants: :mod:`iklab.core.mixture` (numpy, shared with the robot side).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from iklab.core.mixture import DIRECTION_EPS, KAPPA_MAX, KAPPA_MIN, LOG_2PI, LOG_KAPPA_MAX, mixture_output_size


def _blocks(raw: keras.KerasTensor, k: int, d: int) -> tuple:
    """Raw ``(N, k (1 + 3d))`` -> logits ``(N, K)``, cos, sin, kappa_raw ``(N, K, D)`` (keras.ops)."""
    ops = keras.ops
    kd = k * d
    logits = raw[:, :k]
    cos, sin, kappa_raw = (ops.reshape(raw[:, k + i * kd : k + (i + 1) * kd], (-1, k, d)) for i in range(3))
    return logits, cos, sin, kappa_raw


def _kappa(kappa_raw: keras.KerasTensor) -> keras.KerasTensor:
    # minimum, not a smooth cap: above KAPPA_MAX the loss would only want a larger kappa anyway
    ops = keras.ops
    return ops.minimum(KAPPA_MIN + ops.exp(ops.minimum(kappa_raw, LOG_KAPPA_MAX)), KAPPA_MAX)


def split_params(raw: keras.KerasTensor, k: int, d: int) -> tuple:
    """Raw ``(N, k (1 + 3d))`` -> log weights ``(N, K)``, means ``(N, K, D)`` radians, kappa ``(N, K, D)``."""
    logits, cos, sin, kappa_raw = _blocks(raw, k, d)
    return keras.ops.log_softmax(logits, axis=-1), keras.ops.arctan2(sin, cos), _kappa(kappa_raw)


def mixture_log_likelihood(raw: keras.KerasTensor, y_true: keras.KerasTensor, k: int, d: int) -> keras.KerasTensor:
    """log p(y_true) ``(N,)`` of joint angles ``(N, D)`` radians under the mixture ``raw`` (keras.ops).

    cos(y - mu) is taken from the unit (cos, sin) pair rather than from atan2, so y enters only
    through cos y and sin y: exactly periodic. log I0(kappa) = log i0e(kappa) + kappa keeps the
    normaliser finite where I0 itself overflows float32 (kappa > ~88).
    """
    ops = keras.ops
    logits, cos, sin, kappa_raw = _blocks(raw, k, d)
    kappa = _kappa(kappa_raw)
    y = ops.expand_dims(ops.cast(y_true, raw.dtype), 1)  # (N, 1, D)
    norm = ops.sqrt(cos * cos + sin * sin + DIRECTION_EPS)
    cos_error = (cos * ops.cos(y) + sin * ops.sin(y)) / norm
    # kappa (cos - 1) - log i0e(kappa) = kappa cos - log I0(kappa), without the large terms
    per_joint = kappa * (cos_error - 1.0) - ops.log(tf.math.special.bessel_i0e(kappa)) - LOG_2PI
    components = ops.sum(per_joint, axis=-1)  # (N, K): independent joints
    return ops.logsumexp(ops.log_softmax(logits, axis=-1) + components, axis=-1)


@keras.saving.register_keras_serializable(package="iklab")
class MixtureNLL(keras.losses.Loss):
    """Mean negative log-likelihood of the true joint angles ``(N, D)`` radians under the
    predicted mixture ``(N, mixture_output_size(k, d))``."""

    def __init__(self, k: int, d: int, name: str = "mixture_nll", **kwargs: object) -> None:
        super().__init__(name=name, **kwargs)
        mixture_output_size(k, d)  # validates k and d
        self.k, self.d = int(k), int(d)

    def call(self, y_true: keras.KerasTensor, y_pred: keras.KerasTensor) -> keras.KerasTensor:
        return -mixture_log_likelihood(y_pred, y_true, self.k, self.d)

    def get_config(self) -> dict:
        return {**super().get_config(), "k": self.k, "d": self.d}


def build_mixture_model(
    n_inputs: int, d: int, k: int, width: int = 128, depth: int = 3, activation: str = "relu", name: str = "mixture"
) -> keras.Model:
    """A functional MLP ``(N, n_inputs) -> (N, mixture_output_size(k, d))``, layers named as in
    `iklab.learning.models` (``dense_<i>``, ``act_<i>``, ``output``) so the diagnostics find them."""
    outputs_size = mixture_output_size(k, d)
    if width < 1 or depth < 1:
        raise ValueError(f"a mixture model needs width >= 1 and depth >= 1, got width={width}, depth={depth}")
    inputs = keras.Input(shape=(n_inputs,), name="pose")
    x = inputs
    for index in range(1, depth + 1):
        x = keras.layers.Dense(width, name=f"dense_{index}")(x)
        x = keras.layers.Activation(activation, name=f"act_{index}")(x)
    outputs = keras.layers.Dense(outputs_size, name="output")(x)
    return keras.Model(inputs, outputs, name=name)

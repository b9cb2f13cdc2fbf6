"""A mixture density head over joint angles (Bishop 1994), wrap-aware: several IK answers per pose.

A plain regressor trained on a pose with two solutions learns their average, which solves
neither (FACTS: "A 3x512 MLP collapses to the mean"). A mixture head predicts K weighted
components instead; each is a product of independent von Mises distributions, one per joint,
so every component is 2*pi periodic and a mean at +pi covers a target at -pi.

Raw output layout, ``mixture_output_size(k, d) = k * (1 + 3 d)`` columns, blocks in order:
  logits   (K)      mixture weights after a softmax
  cos      (K, D)   unnormalized direction of each mean; the mean is atan2(sin, cos)
  sin      (K, D)
  kappa    (K, D)   concentration: KAPPA_MIN + softplus, capped at KAPPA_MAX (1/sqrt(kappa) ~ std, rad)

The loss (:class:`MixtureNLL`) runs in the TF graph (keras.ops); the inference helpers are numpy.
:func:`planar_two_link_data` is the smallest IK problem with two answers per pose, for tests.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf
from scipy.special import i0e

# Concentration bounds: 1e-2 is almost uniform on the circle; 1e4 is a std of 0.01 rad (0.6 deg),
# finer than the models here reach: float32 cos(x) - 1 is 0 below x ~ 3e-4, so more buys nothing.
KAPPA_MIN = 1e-2
KAPPA_MAX = 1e4
# sqrt(c^2 + s^2 + eps): a (cos, sin) pair at the origin has no direction; eps keeps its gradient finite.
_DIRECTION_EPS = 1e-8
_LOG_2PI = math.log(2.0 * math.pi)
# Defaults of collapsed_mixture: one component in use while the data has several answers per pose.
COLLAPSED_EFFECTIVE_COMPONENTS = 1.3
MULTI_SOLUTION_MEAN = 1.5

PLANAR_LINK_LENGTHS = (1.0, 0.8)  # unequal, so the workspace is a ring (radius 0.2 to 1.8)
PLANAR_SINGULAR_MARGIN = 0.1  # radians: |q2| near 0 or pi merges the two elbow solutions


def mixture_output_size(k: int, d: int) -> int:
    """Columns of the raw output for ``k`` components over ``d`` joints."""
    if k < 1 or d < 1:
        raise ValueError(f"a mixture needs k >= 1 components and d >= 1 joints, got k={k}, d={d}")
    return k * (1 + 3 * d)


def _blocks(raw: keras.KerasTensor, k: int, d: int) -> tuple:
    """Raw ``(N, k (1 + 3d))`` -> logits ``(N, K)``, cos, sin, kappa_raw ``(N, K, D)`` (keras.ops)."""
    ops = keras.ops
    kd = k * d
    logits = raw[:, :k]
    cos, sin, kappa_raw = (ops.reshape(raw[:, k + i * kd : k + (i + 1) * kd], (-1, k, d)) for i in range(3))
    return logits, cos, sin, kappa_raw


def _kappa(kappa_raw: keras.KerasTensor) -> keras.KerasTensor:
    # minimum, not a smooth cap: above KAPPA_MAX the loss would only want a larger kappa anyway
    return keras.ops.minimum(KAPPA_MIN + keras.ops.softplus(kappa_raw), KAPPA_MAX)


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
    norm = ops.sqrt(cos * cos + sin * sin + _DIRECTION_EPS)
    cos_error = (cos * ops.cos(y) + sin * ops.sin(y)) / norm
    # kappa (cos - 1) - log i0e(kappa) = kappa cos - log I0(kappa), without the large terms
    per_joint = kappa * (cos_error - 1.0) - ops.log(tf.math.special.bessel_i0e(kappa)) - _LOG_2PI
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
    `iklab.models` (``dense_<i>``, ``act_<i>``, ``output``) so the diagnostics find them."""
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


# --- inference (numpy) -----------------------------------------------------------------


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def mixture_numpy(raw: np.ndarray, k: int, d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw outputs ``(N, k (1 + 3d))`` -> weights ``(N, K)``, means ``(N, K, D)`` in (-pi, pi],
    kappa ``(N, K, D)``, float64: the parameters :class:`MixtureNLL` scores."""
    raw = np.asarray(raw, dtype=np.float64)
    if raw.ndim != 2 or raw.shape[1] != mixture_output_size(k, d):
        raise ValueError(
            f"raw mixture outputs must be (N, {mixture_output_size(k, d)}) for k={k}, d={d}, got {raw.shape}"
        )
    kd = k * d
    logits = raw[:, :k] - raw[:, :k].max(axis=1, keepdims=True)
    weights = np.exp(logits)
    weights /= weights.sum(axis=1, keepdims=True)
    cos, sin, kappa_raw = (raw[:, k + i * kd : k + (i + 1) * kd].reshape(-1, k, d) for i in range(3))
    mu = np.arctan2(sin, cos)
    mu = np.where(mu <= -np.pi, mu + 2.0 * np.pi, mu)  # atan2(-0.0, -1) = -pi
    kappa = np.minimum(KAPPA_MIN + _softplus(kappa_raw), KAPPA_MAX)
    return weights, mu, kappa


def effective_components(weights: np.ndarray) -> np.ndarray:
    """exp(entropy) of each row of weights ``(N, K)`` -> ``(N,)``: 1 for one component, K for equal weights."""
    weights = np.asarray(weights, dtype=np.float64)
    entropy = -np.sum(np.where(weights > 0, weights * np.log(np.maximum(weights, 1e-300)), 0.0), axis=1)
    return np.exp(entropy)


def ranked_components(raw: np.ndarray, k: int, d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`mixture_numpy` with each row's components sorted by weight, heaviest first."""
    weights, mu, kappa = mixture_numpy(raw, k, d)
    order = np.argsort(-weights, axis=1, kind="stable")
    rows = np.arange(len(weights))[:, None]
    return weights[rows, order], mu[rows, order], kappa[rows, order]


def most_probable(raw: np.ndarray, k: int, d: int) -> np.ndarray:
    """The mean of the heaviest component ``(N, D)`` radians: one answer per pose."""
    return ranked_components(raw, k, d)[1][:, 0]


def wrapped_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a - b wrapped into [-pi, pi), elementwise."""
    return (np.asarray(a) - np.asarray(b) + np.pi) % (2.0 * np.pi) - np.pi


def mixture_log_density(raw: np.ndarray, k: int, d: int, q: np.ndarray) -> np.ndarray:
    """log p(q) ``(N,)`` of joints ``(N, D)`` radians under the mixture (numpy twin of the loss)."""
    weights, mu, kappa = mixture_numpy(raw, k, d)
    error = wrapped_difference(np.asarray(q, dtype=np.float64)[:, None, :], mu)
    per_joint = kappa * (np.cos(error) - 1.0) - np.log(i0e(kappa)) - _LOG_2PI
    terms = np.log(np.maximum(weights, 1e-300)) + per_joint.sum(axis=2)
    top = terms.max(axis=1, keepdims=True)
    return (top + np.log(np.exp(terms - top).sum(axis=1, keepdims=True)))[:, 0]


def mixture_summary(raw: np.ndarray, k: int, d: int, q_true: np.ndarray) -> dict[str, float]:
    """How a mixture's answers relate to known joints ``q_true`` ``(N, D)`` radians.

    The best component is the one nearest ``q_true`` (max-abs wrapped joint error): on a pose with
    several solutions the heaviest may rightly be another one, so both are reported.
    """
    weights, mu, _ = mixture_numpy(raw, k, d)
    q_true = np.asarray(q_true, dtype=np.float64)
    error_deg = np.degrees(np.abs(wrapped_difference(q_true[:, None, :], mu)).max(axis=2))  # (N, K)
    best_deg = error_deg.min(axis=1)
    heaviest_deg = error_deg[np.arange(len(weights)), weights.argmax(axis=1)]
    return {
        "effective_components_mean": float(effective_components(weights).mean()),
        "components_above_2pct_mean": float((weights > 0.02).sum(axis=1).mean()),
        "best_component_error_deg_median": float(np.median(best_deg)),
        "best_component_within_1deg_fraction": float(np.mean(best_deg <= 1.0)),
        "heaviest_component_error_deg_median": float(np.median(heaviest_deg)),
        "nll_mean": float(-mixture_log_density(raw, k, d, q_true).mean()),
    }


def collapsed_mixture(
    effective_components_mean: float,
    data_solutions_mean: float,
    *,
    effective_limit: float = COLLAPSED_EFFECTIVE_COMPONENTS,
    solutions_limit: float = MULTI_SOLUTION_MEAN,
) -> bool:
    """True when a mixture uses about one component (effective number below ``effective_limit``)
    while the data has several solutions per pose (measured mean at least ``solutions_limit``):
    it has fallen back to a single regressor and will average branches again."""
    return effective_components_mean < effective_limit and data_solutions_mean >= solutions_limit


# --- toy problem: a planar 2-link arm, two IK answers per reachable point ---------------


def planar_two_link_fk(q: np.ndarray) -> np.ndarray:
    """Joints ``(N, 2)`` radians -> end-effector ``(N, 2)`` (x, y), links ``PLANAR_LINK_LENGTHS``."""
    q = np.asarray(q, dtype=np.float64)
    l1, l2 = PLANAR_LINK_LENGTHS
    elbow = q[:, 0] + q[:, 1]
    return np.column_stack([l1 * np.cos(q[:, 0]) + l2 * np.cos(elbow), l1 * np.sin(q[:, 0]) + l2 * np.sin(elbow)])


def planar_two_link_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows: end-effector ``x`` ``(n, 2)`` and joints ``q`` ``(n, 2)`` radians, float64.

    q1 ~ U[-pi, pi]; |q2| ~ U[margin, pi - margin] with a random sign, so every point has two
    distinct solutions (elbow up and down: q2 and -q2); at |q2| = 0 or pi they merge.
    """
    if n < 1:
        raise ValueError(f"planar_two_link_data needs n >= 1 rows, got {n}")
    rng = np.random.default_rng(seed)
    q1 = rng.uniform(-np.pi, np.pi, n)
    q2 = rng.uniform(PLANAR_SINGULAR_MARGIN, np.pi - PLANAR_SINGULAR_MARGIN, n) * rng.choice([-1.0, 1.0], n)
    q = np.column_stack([q1, q2])
    return planar_two_link_fk(q), q

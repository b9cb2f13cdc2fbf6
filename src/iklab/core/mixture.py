"""A mixture density head over joint angles (Bishop 1994), wrap-aware: several IK answers per pose.

A plain regressor trained on a pose with two solutions learns their average, which solves
neither (FACTS: "A 3x512 MLP collapses to the mean"). A mixture head predicts K weighted
components instead; each is a product of independent von Mises distributions, one per joint,
so every component is 2*pi periodic and a mean at +pi covers a target at -pi.

Raw output layout, ``mixture_output_size(k, d) = k * (1 + 3 d)`` columns, blocks in order:
  logits   (K)      mixture weights after a softmax
  cos      (K, D)   unnormalized direction of each mean; the mean is atan2(sin, cos)
  sin      (K, D)
  kappa    (K, D)   concentration: KAPPA_MIN + exp, capped at KAPPA_MAX (1/sqrt(kappa) ~ std, rad);
                    exp, not softplus: a 1 deg spread is kappa ~3300, an output of 8 rather than 3300

Numpy only (the robot-side solver decodes mixtures without TensorFlow); the loss
(:class:`iklab.learning.mixture_loss.MixtureNLL`) runs in the TF graph.
:func:`planar_two_link_data` is the smallest IK problem with two answers per pose, for tests.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import i0e

# Concentration bounds: 1e-2 is almost uniform on the circle; 1e4 is a std of 0.01 rad (0.6 deg),
# finer than the models here reach: float32 cos(x) - 1 is 0 below x ~ 3e-4, so more buys nothing.
KAPPA_MIN = 1e-2
KAPPA_MAX = 1e4
LOG_KAPPA_MAX = math.log(KAPPA_MAX)  # raw kappa outputs are clipped here before exp (no overflow)
# sqrt(c^2 + s^2 + eps): a (cos, sin) pair at the origin has no direction; eps keeps its gradient finite.
DIRECTION_EPS = 1e-8
LOG_2PI = math.log(2.0 * math.pi)
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


# --- inference (numpy) -----------------------------------------------------------------


def mixture_components_of(width: int, d: int) -> int:
    """K from a raw output's width ``k (1 + 3 d)`` (what a logged model carries)."""
    k, rest = divmod(int(width), 1 + 3 * d)
    if k < 1 or rest:
        raise ValueError(f"{width} outputs are no mixture over {d} joints (k (1 + 3 d) = {1 + 3 * d} k)")
    return k


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
    kappa = np.minimum(KAPPA_MIN + np.exp(np.minimum(kappa_raw, LOG_KAPPA_MAX)), KAPPA_MAX)
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
    per_joint = kappa * (np.cos(error) - 1.0) - np.log(i0e(kappa)) - LOG_2PI
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

"""Compiled (numba) pose encodings for the solver: rotation matrix -> quaternion, -> roll-pitch-yaw,
one row at a time, the same values as :mod:`iklab.core.kinematics`' vectorized conversions.

Why: a robot asks for one pose per call, and scipy's ``Rotation`` costs ~35 us of set-up for a
single row (numpy's ufuncs a few us each), more than the network's pass for a small MLP. These
loops cost well under a microsecond per row. tests/test_encodings.py checks them against
``matrix_to_quaternion`` (scipy's Shepperd method, ``qw >= 0``, the pivot component positive at
``qw == 0``) and ``matrix_to_rpy`` (roboticstoolbox's ``tr2rpy`` choices, gimbal lock included).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_LOCK = 20 * np.finfo(np.float64).eps  # |R20| this close to 1 is gimbal lock (as matrix_to_rpy)


@njit(cache=True)
def matrix_to_quaternion_rows(rotation):  # noqa: ANN001, ANN201 (numba infers the types)
    """``(N, 3, 3)`` -> ``(N, 4)`` (qw, qx, qy, qz), ``qw >= 0``: Shepperd's method (divide by the
    largest of trace, R00, R11, R22), normalized, as scipy's ``from_matrix(assume_valid=True)``."""
    out = np.empty((rotation.shape[0], 4))
    for n in range(rotation.shape[0]):
        r = rotation[n]
        trace = r[0, 0] + r[1, 1] + r[2, 2]
        # scipy picks the largest of (R00, R11, R22, trace), first on ties
        choice, best = 0, r[0, 0]
        if r[1, 1] > best:
            choice, best = 1, r[1, 1]
        if r[2, 2] > best:
            choice, best = 2, r[2, 2]
        if trace > best:
            choice = 3
        if choice == 3:
            w, x, y, z = 1.0 + trace, r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]
        elif choice == 0:
            w, x, y, z = r[2, 1] - r[1, 2], 1.0 + 2.0 * r[0, 0] - trace, r[1, 0] + r[0, 1], r[2, 0] + r[0, 2]
        elif choice == 1:
            w, x, y, z = r[0, 2] - r[2, 0], r[1, 0] + r[0, 1], 1.0 + 2.0 * r[1, 1] - trace, r[2, 1] + r[1, 2]
        else:
            w, x, y, z = r[1, 0] - r[0, 1], r[2, 0] + r[0, 2], r[2, 1] + r[1, 2], 1.0 + 2.0 * r[2, 2] - trace
        norm = math.sqrt(w * w + x * x + y * y + z * z)
        if w < 0.0:
            norm = -norm
        out[n, 0], out[n, 1], out[n, 2], out[n, 3] = w / norm, x / norm, y / norm, z / norm
    return out


@njit(cache=True)
def matrix_to_rpy_rows(rotation):  # noqa: ANN001, ANN201
    """``(N, 3, 3)`` -> ``(N, 3)`` roll, pitch, yaw: :func:`iklab.core.kinematics.matrix_to_rpy`'s
    formulas (the best-conditioned of four pitch formulas; roll 0 at gimbal lock)."""
    out = np.empty((rotation.shape[0], 3))
    for n in range(rotation.shape[0]):
        r = rotation[n]
        r20 = r[2, 0]
        if abs(abs(r20) - 1.0) < _LOCK:
            roll = 0.0
            if r20 < 0.0:
                yaw = -math.atan2(r[0, 1], r[0, 2])
            else:
                yaw = math.atan2(-r[0, 1], -r[0, 2])
            pitch = -math.asin(min(max(r20, -1.0), 1.0))
        else:
            roll = math.atan2(r[2, 1], r[2, 2])
            yaw = math.atan2(r[1, 0], r[0, 0])
            candidates = (r[0, 0], r[1, 0], r[2, 1], r[2, 2])
            numerators = (math.cos(yaw), math.sin(yaw), math.sin(roll), math.cos(roll))
            k = 0
            for i in range(1, 4):
                if abs(candidates[i]) > abs(candidates[k]):
                    k = i
            pitch = -math.atan(r20 * numerators[k] / candidates[k])
        out[n, 0], out[n, 1], out[n, 2] = roll, pitch, yaw
    return out

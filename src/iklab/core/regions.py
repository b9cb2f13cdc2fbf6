"""Joint-space regions (boxes) to sample from: per-robot presets and custom bounds.

A region is where the dataset's joint angles live. Its size decides whether
inverse kinematics is a function on it: `full` (the robot's joint limits) is
multi-valued for every 6R arm, the per-robot `working` presets are chosen so
that, measured with `python -m data_gen ambiguity`, under 1% of their poses
have a second solution inside the box.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from iklab.core.kinematics import Robot, wrap_from

_DEG = math.pi / 180.0


@dataclass(frozen=True, eq=False)
class Region:
    """A box in joint space: ``lower[i] <= q[i] <= upper[i]`` radians."""

    name: str
    lower: np.ndarray  # (6,)
    upper: np.ndarray  # (6,)

    @property
    def width(self) -> np.ndarray:
        return self.upper - self.lower

    def to_dict(self) -> dict:
        return {"name": self.name, "lower": self.lower.tolist(), "upper": self.upper.tolist()}

    @classmethod
    def from_dict(cls, spec: dict) -> Region:
        return cls(spec["name"], np.asarray(spec["lower"], float), np.asarray(spec["upper"], float))

    def contains(self, q: np.ndarray) -> np.ndarray:
        """``(N, 6)`` -> ``(N,)`` bool: is some 2*pi-equivalent of each row inside the box?"""
        q = np.ascontiguousarray(q, dtype=np.float64)
        if q.ndim != 2 or q.shape[1] != len(self.lower):
            return np.all(self.canonical(q) <= self.upper + 1e-12, axis=-1)  # numpy's words for a bad shape
        return _in_box_rows(q, np.ascontiguousarray(self.lower), np.ascontiguousarray(self.upper))

    def canonical(self, q: np.ndarray) -> np.ndarray:
        """Each angle moved by a multiple of 2*pi to the smallest value >= lower."""
        return wrap_from(q, self.lower)


# Working regions, in degrees (lower, upper) per joint; bench/region_search.py
# reproduces the choice and docs/datasets.md, "Regions" explains it. Jaco's keeps one IK
# branch: upper arm between horizontal and vertical (q1), elbow bent one way
# (q2 < 0), wrist bent one way (q4 < 0), edges backed off the elbow and wrist
# singularities; the base sweeps the front half-space (+x); q3 and q5 stop at
# +-175 so raw-angle targets have no jump at +-180.
_WORKING_DEG = {
    "jaco": ((-90.0, 90.0), (90.0, 180.0), (-165.0, -30.0), (-175.0, 175.0), (-165.0, -15.0), (-175.0, 175.0)),
}


def _has_working(robot: Robot) -> bool:
    # a preset is in roboticstoolbox's joint angles: a URDF arm of the same name has other zeros
    return robot.name in _WORKING_DEG and robot.source is None


def preset_names(robot: Robot) -> list[str]:
    return ["full"] + (["working"] if _has_working(robot) else [])


def default_region_name(robot: Robot) -> str:
    """`working` where the robot has one, else `full`."""
    return "working" if _has_working(robot) else "full"


def region_preset(robot: Robot, name: str | None = None) -> Region:
    """A named region for ``robot``; ValueError naming the valid presets."""
    name = name or default_region_name(robot)
    if name == "full":
        return Region("full", robot.qlim[0].copy(), robot.qlim[1].copy())
    if name == "working" and _has_working(robot):
        bounds = np.array(_WORKING_DEG[robot.name]) * _DEG
        return custom_region(robot, bounds[:, 0], bounds[:, 1], name="working")
    raise ValueError(
        f"unknown region {name!r} for robot {robot.name!r}; "
        f"presets: {', '.join(preset_names(robot))} (or give --lower/--upper)"
    )


def custom_region(robot: Robot, lower: object, upper: object, name: str = "custom") -> Region:
    """A box from explicit bounds (radians), checked against the robot's joint limits."""
    lower, upper = np.asarray(lower, float), np.asarray(upper, float)
    for label, bound in (("lower", lower), ("upper", upper)):
        if bound.shape != (robot.n_joints,) or not np.all(np.isfinite(bound)):
            raise ValueError(f"{label} bounds need {robot.n_joints} finite numbers, got {bound.tolist()}")
    bad = np.flatnonzero(lower >= upper)
    if bad.size:
        j = int(bad[0])
        raise ValueError(f"joint {j}: lower bound {lower[j]:.6g} must be below upper bound {upper[j]:.6g}")
    tol = 1e-9
    outside = np.flatnonzero((lower < robot.qlim[0] - tol) | (upper > robot.qlim[1] + tol))
    if outside.size:
        j = int(outside[0])
        raise ValueError(
            f"joint {j}: bounds [{lower[j]:.6g}, {upper[j]:.6g}] rad are outside "
            f"{robot.name}'s limits [{robot.qlim[0, j]:.6g}, {robot.qlim[1, j]:.6g}]"
        )
    return Region(name, lower, upper)


@njit(cache=True)
def _in_box_rows(q, lower, upper):  # noqa: ANN001, ANN202 (numba infers the types)
    """:meth:`Region.contains` compiled: the robot's every call asks it of one row, where
    numpy's four operations cost microseconds; the same arithmetic (Python's modulo, as np.mod)."""
    two_pi = 2.0 * math.pi
    inside = np.empty(q.shape[0], dtype=np.bool_)
    for n in range(q.shape[0]):
        inside[n] = True
        for k in range(q.shape[1]):
            if not lower[k] + (q[n, k] - lower[k]) % two_pi <= upper[k] + 1e-12:
                inside[n] = False
                break
    return inside

"""Robot models and batched forward kinematics, float64 numpy, no hidden state.

A robot is data: a standard-DH table read once from roboticstoolbox-python (the
reference) or from a URDF file's chain (``iklab.core.urdf``, an exact DH form of
any 6R chain), then FK is a handful of vectorized numpy operations per link.
roboticstoolbox is imported only when a robot is loaded *by name*; a robot
rebuilt from its dict (a dataset card, a logged model) needs numpy alone.

Units: metres and radians everywhere.

Rotation conversions follow roboticstoolbox's conventions. Figures are from
bench/bench_rotations.py on 1M random rotations on 2 CPU cores.
- Matrix <-> quaternion calls ``scipy.spatial.transform.Rotation``. It is about
  2x faster than our earlier numpy code (matrix to quaternion 100-175 ns
  against 245-330; back 60-100 ns against 185-290), and up to 3x faster on
  batches of 1-100 rows. It agrees with spatialmath's ``r2q``/``q2r`` to 6e-16.
  scipy is imported on first use: ``scipy.spatial`` takes 0.3-0.9 s to import,
  several times numpy's own import.
- Roll-pitch-yaw stays ours. ``matrix_to_rpy`` reproduces ``tr2rpy(order="zyx")``
  to 4e-16, including its gimbal lock: when |R20| is within 20 eps of 1
  (pitch within about 9.4e-8 rad of +-pi/2) it sets roll to 0. scipy's
  ``as_euler("ZYX")`` is only 7-9% faster and decides lock differently (pitch
  within 1e-7 rad, tested on its quaternion). For pitches 9.4e-8 to 1e-7 rad
  from lock it gives other roll and yaw values (3.1 rad apart), and it warns
  at lock unless told not to. ``rpy_to_matrix`` is 8x faster than
  ``from_euler``.
- scipy has no 6D encoding. ``rot6d_to_matrix`` is Zhou et al.'s Gram-Schmidt,
  which is not scipy's nearest-rotation orthogonalization.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # a slow import (~1 s), made only when a robot is loaded by name
    import roboticstoolbox as rtb

DEFAULT_ROBOT = "jaco"

# Names users type -> roboticstoolbox.models.DH class names. Only 6-DOF,
# all-revolute, standard-DH models load; the others are listed so that asking
# for them gives a precise reason rather than "unknown robot".
_RTB_DH_MODELS = {
    "jaco": "Jaco",
    "mico": "Mico",
    "puma560": "Puma560",
    "ur3": "UR3",
    "ur5": "UR5",
    "ur10": "UR10",
    "irb140": "IRB140",
    "kr5": "KR5",
    "stanford": "Stanford",
    "panda": "Panda",
    "lwr4": "LWR4",
    "sawyer": "Sawyer",
}


class RobotError(ValueError):
    """A robot name, model or URDF file iklab cannot use (unknown, not 6R, not standard DH)."""


@dataclass(frozen=True, eq=False)
class Robot:
    """A 6-DOF all-revolute arm in standard DH form.

    Joint i's angle is ``theta_i = sign_i * q_i + offset_i`` (sign -1 for
    roboticstoolbox's "flipped" joints); ``base`` and ``tool`` are 4x4
    homogeneous transforms applied before the first and after the last link.
    ``source`` says where a robot read from a file came from (for a URDF: the
    file's name and sha256, base and end links, the joint names in order, the
    DH form's measured gap to the file's chain); None for roboticstoolbox's.
    """

    name: str
    d: np.ndarray  # (6,) metres
    a: np.ndarray  # (6,) metres
    alpha: np.ndarray  # (6,) radians
    offset: np.ndarray  # (6,) radians
    sign: np.ndarray  # (6,) +1 or -1
    qlim: np.ndarray  # (2, 6) radians, row 0 lower, row 1 upper
    base: np.ndarray  # (4, 4)
    tool: np.ndarray  # (4, 4)
    source: dict | None = None

    @property
    def n_joints(self) -> int:
        return len(self.d)

    def to_dict(self) -> dict:
        """JSON-ready description (dataset cards, logged-model metadata)."""
        return {
            "name": self.name,
            "convention": "standard_dh",
            "d": self.d.tolist(),
            "a": self.a.tolist(),
            "alpha": self.alpha.tolist(),
            "offset": self.offset.tolist(),
            "sign": self.sign.tolist(),
            "qlim": self.qlim.tolist(),
            "base": self.base.tolist(),
            "tool": self.tool.tolist(),
            **({"source": self.source} if self.source is not None else {}),
        }

    @classmethod
    def from_dict(cls, spec: dict) -> Robot:
        """Inverse of :meth:`to_dict`; raises RobotError on a malformed spec."""
        try:
            if spec.get("convention", "standard_dh") != "standard_dh":
                raise RobotError(f"unsupported DH convention {spec['convention']!r}")
            arrays = {
                k: np.asarray(spec[k], dtype=np.float64)
                for k in ("d", "a", "alpha", "offset", "sign", "qlim", "base", "tool")
            }
            source = spec.get("source")
            if source is not None and not isinstance(source, dict):
                raise TypeError("'source'")
            robot = cls(name=str(spec["name"]), **arrays, source=source)
        except (KeyError, TypeError) as exc:
            raise RobotError(f"malformed robot description: missing or bad field {exc}") from None
        shapes = {
            "d": (6,),
            "a": (6,),
            "alpha": (6,),
            "offset": (6,),
            "sign": (6,),
            "qlim": (2, 6),
            "base": (4, 4),
            "tool": (4, 4),
        }
        for key, shape in shapes.items():
            if getattr(robot, key).shape != shape:
                raise RobotError(
                    f"malformed robot description: {key} has shape {getattr(robot, key).shape}, expected {shape}"
                )
        return robot


def is_robot_file(name: str) -> bool:
    """Is ``name`` a path to a URDF or xacro file rather than a roboticstoolbox model name?"""
    return str(name).strip().lower().endswith((".urdf", ".xacro"))


def known_robots() -> list[str]:
    """Robot names :func:`load_robot` loads (the 7-DOF and prismatic ones it only refuses left out)."""
    not_6r = {"lwr4", "panda", "sawyer", "stanford"}  # load_robot says why each is refused
    return sorted(set(_RTB_DH_MODELS) - not_6r)


def load_robot(name: str = DEFAULT_ROBOT, base_link: str | None = None, ee_link: str | None = None) -> Robot:
    """A 6-DOF all-revolute robot: roboticstoolbox's DH model by name, or a URDF/xacro file by path.

    ``base_link`` and ``ee_link`` choose a URDF file's chain (default: its root link and the
    chain's one end); a name takes neither.
    """
    if is_robot_file(name):
        from iklab.core import urdf  # numpy and the standard library only

        try:
            return Robot.from_dict(urdf.robot_spec(name, base_link, ee_link))
        except urdf.UrdfError as exc:
            raise RobotError(str(exc)) from None
    key = name.strip().lower()
    if base_link is not None or ee_link is not None:
        raise RobotError(f"robot {name!r} is a roboticstoolbox model: base and end-effector links are for URDF files")
    if key not in _RTB_DH_MODELS:
        raise RobotError(
            f"unknown robot {name!r}; known robots: {', '.join(known_robots())}, or a path to a .urdf/.xacro file"
        )
    import roboticstoolbox as rtb  # slow import (~1 s): only when a robot is loaded by name

    model = getattr(rtb.models.DH, _RTB_DH_MODELS[key])()
    return robot_from_rtb(model, key)


def robot_from_rtb(model: rtb.DHRobot, name: str) -> Robot:
    """Convert a roboticstoolbox DHRobot; RobotError unless it is 6R standard DH."""
    if model.n != 6 or not all(link.isrevolute for link in model.links):
        raise RobotError(
            f"robot {name!r} is {model.n}-DOF with joints {model.structure}; "
            "iklab needs a 6-DOF all-revolute arm (e.g. jaco, puma560, ur5)"
        )
    if model.mdh:
        raise RobotError(f"robot {name!r} uses modified DH; iklab supports standard DH only")
    links = model.links
    qlim = model.qlim if model.qlim is not None else np.tile([[-math.pi], [math.pi]], (1, 6))
    return Robot(
        name=name,
        d=np.array([link.d for link in links], dtype=np.float64),
        a=np.array([link.a for link in links], dtype=np.float64),
        alpha=np.array([link.alpha for link in links], dtype=np.float64),
        offset=np.array([link.offset for link in links], dtype=np.float64),
        sign=np.array([-1.0 if link.isflip else 1.0 for link in links]),
        qlim=np.array(qlim, dtype=np.float64),
        base=np.array(model.base.A, dtype=np.float64),
        tool=np.array(model.tool.A, dtype=np.float64),
    )


def to_rtb(robot: Robot) -> rtb.DHRobot:
    """The same robot as a roboticstoolbox ``DHRobot`` (for its numerical IK and checks)."""
    import roboticstoolbox as rtb
    from spatialmath import SE3

    links = [
        rtb.RevoluteDH(
            d=robot.d[i],
            a=robot.a[i],
            alpha=robot.alpha[i],
            offset=robot.offset[i],
            flip=bool(robot.sign[i] < 0),
            qlim=robot.qlim[:, i],
        )
        for i in range(robot.n_joints)
    ]
    return rtb.DHRobot(links, name=robot.name, base=SE3(robot.base, check=False), tool=SE3(robot.tool, check=False))


def as_joint_batch(q: np.ndarray, n_joints: int, name: str = "joint angles") -> np.ndarray:
    """``q`` as float64 ``(N, n_joints)``, or ValueError naming it and its shape."""
    q = np.asarray(q, dtype=np.float64)
    if q.ndim != 2 or q.shape[1] != n_joints:
        raise ValueError(f"{name} must have shape (N, {n_joints}) radians, got {q.shape}")
    return q


# Rows per block inside fk: every scratch array is (3 or 6, block) float64, small
# enough to stay in cache, large enough to amortize numpy's per-call overhead.
_FK_BLOCK_ROWS = 16384


def fk_rotation_translation(robot: Robot, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Batched FK. ``(N, 6)`` radians -> rotations ``(N, 3, 3)``, positions ``(N, 3)``."""
    q = as_joint_batch(q, robot.n_joints)
    rotation, position = np.empty((q.shape[0], 3, 3)), np.empty((q.shape[0], 3))
    _fk_into(robot, q, rotation, position)
    return rotation, position


def fk(robot: Robot, q: np.ndarray) -> np.ndarray:
    """Batched forward kinematics. ``(N, 6)`` radians -> ``(N, 4, 4)`` float64 poses."""
    q = as_joint_batch(q, robot.n_joints)
    out = np.empty((q.shape[0], 4, 4))
    _fk_into(robot, q, out[:, :3, :3], out[:, :3, 3])
    out[:, 3, :3] = 0.0
    out[:, 3, 3] = 1.0
    return out


def _fk_into(robot: Robot, q: np.ndarray, rotation: np.ndarray, position: np.ndarray) -> None:
    """Write FK of ``q`` into ``rotation`` ``(N, 3, 3)`` and ``position`` ``(N, 3)`` views."""
    n = q.shape[0]
    # Scratch buffers are allocated once per call and reused by every block:
    # fresh temporaries of this size would each cost an mmap and page faults.
    scratch = np.empty((_SCRATCH_ROWS, min(n, _FK_BLOCK_ROWS)))
    for start in range(0, n, _FK_BLOCK_ROWS):
        stop = min(start + _FK_BLOCK_ROWS, n)
        x, y, z, p = _fk_columns(robot, q[start:stop], scratch[:, : stop - start])
        block_r = rotation[start:stop]
        block_r[:, :, 0], block_r[:, :, 1], block_r[:, :, 2] = x.T, y.T, z.T
        position[start:stop] = p.T


_SCRATCH_ROWS = 6 * 9 + 3 * 7  # sincos: nine (6, n) arrays; _fk_columns: seven (3, n)


def _fk_columns(robot: Robot, q: np.ndarray, scratch: np.ndarray) -> tuple[np.ndarray, ...]:
    """FK of one block as end-effector frame columns x, y, z and position p, each ``(3, n)``.

    Column vectors laid out as ``(3, n)`` make each step a few contiguous
    elementwise numpy operations (no per-row loop, no small-matrix matmul),
    written into ``scratch`` with ``out=``. For one link, with ``u, v`` the
    previous x/y columns rotated by theta about the previous z:
        p' = p + d*z + a*u,  x' = u,  y' = v*cos(alpha) + z*sin(alpha),
        z' = z*cos(alpha) - v*sin(alpha)
    """
    sin_t, cos_t = sincos(q.T * robot.sign[:, None] + robot.offset[:, None], scratch[: 6 * 9])
    x, y, z, p, u, v, t = scratch[6 * 9 :].reshape(7, 3, -1)
    for column, target in enumerate((x, y, z)):
        target[:] = robot.base[:3, column : column + 1]
    p[:] = robot.base[:3, 3:4]
    for i in range(robot.n_joints):
        ct, st = cos_t[i], sin_t[i]
        np.multiply(x, ct, out=u), np.multiply(y, st, out=t), np.add(u, t, out=u)
        np.multiply(y, ct, out=v), np.multiply(x, st, out=t), np.subtract(v, t, out=v)
        if robot.d[i]:  # translation along the previous z, so before z changes
            np.multiply(z, robot.d[i], out=t), np.add(p, t, out=p)
        if robot.a[i]:
            np.multiply(u, robot.a[i], out=t), np.add(p, t, out=p)
        ca, sa = math.cos(robot.alpha[i]), math.sin(robot.alpha[i])
        np.multiply(v, ca, out=y), np.multiply(z, sa, out=t), np.add(y, t, out=y)
        np.multiply(z, ca, out=z), np.multiply(v, sa, out=t), np.subtract(z, t, out=z)
        x, u = u, x
    if not np.array_equal(robot.tool, np.eye(4)):
        tool_r, tool_p = robot.tool[:3, :3], robot.tool[:3, 3]
        p = p + x * tool_p[0] + y * tool_p[1] + z * tool_p[2]
        x, y, z = (x * tool_r[0, j] + y * tool_r[1, j] + z * tool_r[2, j] for j in range(3))
    return x, y, z, p


# sin/cos by table and short polynomial. numpy's float64 sin and cos fall
# back to libm here (about 14 ns per value, most of FK's time); this costs a
# third of that at the same accuracy (< 5e-15, tested). theta = k*h + r with
# h = 2*pi/256, a table of sin/cos(k*h), and Taylor series in |r| <= h/2.
_SINCOS_STEPS = 256
_STEP = 2 * math.pi / _SINCOS_STEPS
_STEP_HI = float(np.float32(_STEP))  # 24-bit mantissa: k * _STEP_HI is exact
_STEP_LO = _STEP - _STEP_HI
_SIN_TABLE = np.sin(np.arange(_SINCOS_STEPS) * _STEP)
_COS_TABLE = np.cos(np.arange(_SINCOS_STEPS) * _STEP)


def sincos(theta: np.ndarray, scratch: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """sin and cos of a float64 array, within about 1e-15 of numpy's for |theta| < 40.

    ``scratch``, if given, is ``(9 * theta.shape[0], theta.shape[1])`` float64
    and receives every intermediate (the results are views into it).
    """
    if scratch is None:
        scratch = np.empty((9 * theta.shape[0],) + theta.shape[1:])
    k, r, r2, index, sin_k, cos_k, sin_r, cos_r, tmp = scratch.reshape((9,) + theta.shape)
    index = index.view(np.int64)
    np.rint(np.multiply(theta, 1.0 / _STEP, out=k), out=k)
    np.subtract(theta, np.multiply(k, _STEP_HI, out=tmp), out=r)
    np.subtract(r, np.multiply(k, _STEP_LO, out=tmp), out=r)
    np.bitwise_and(k.astype(np.int64), _SINCOS_STEPS - 1, out=index)
    np.take(_SIN_TABLE, index, out=sin_k)
    np.take(_COS_TABLE, index, out=cos_k)
    np.multiply(r, r, out=r2)
    # |r| <= 0.0123: truncation errors r^7/5040 and r^8/40320 are below 1e-17.
    np.multiply(r2, 1.0 / 120.0, out=sin_r)  # r * (1 - r2/6 + r2^2/120)
    sin_r += -1.0 / 6.0
    sin_r *= r2
    sin_r += 1.0
    sin_r *= r
    np.multiply(r2, -1.0 / 720.0, out=cos_r)  # 1 - r2/2 + r2^2/24 - r2^3/720
    cos_r += 1.0 / 24.0
    cos_r *= r2
    cos_r += -0.5
    cos_r *= r2
    cos_r += 1.0
    # results overwrite k and r2, which are no longer needed
    np.multiply(sin_k, cos_r, out=k), np.multiply(cos_k, sin_r, out=tmp), np.add(k, tmp, out=k)
    np.multiply(cos_k, cos_r, out=r2), np.multiply(sin_k, sin_r, out=tmp), np.subtract(r2, tmp, out=r2)
    return k, r2


# --- Jacobian -------------------------------------------------------------------


def jacobian(robot: Robot, q: np.ndarray) -> np.ndarray:
    """Geometric Jacobian in the base frame. ``(N, 6)`` radians -> ``(N, 6, 6)``.

    Rows are ``[v (3); omega (3)]``, columns joints; flipped joints (sign -1)
    have their column negated, as in roboticstoolbox's ``jacob0``.
    """
    return fk_and_jacobian(robot, as_joint_batch(q, robot.n_joints))[2]


def fk_and_jacobian(robot: Robot, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FK and geometric Jacobian in one pass over the links (for iterative IK; `fk` is faster for FK alone).

    ``(N, 6)`` -> rotation ``(N, 3, 3)``, position ``(N, 3)``, Jacobian ``(N, 6, 6)``.
    Frames are carried as columns x, y, z, p laid out ``(3, N)``, so each step
    is a few contiguous elementwise operations; for one standard-DH link, with
    u, v the x/y columns rotated by theta about z:
        p' = p + d*z + a*u,  x' = u,  y' = v*cos(alpha) + z*sin(alpha),
        z' = z*cos(alpha) - v*sin(alpha)
    Joint i turns about z of frame i-1 (the base frame for joint 0).
    """
    n, joints = q.shape
    theta = (q * robot.sign + robot.offset).T
    sin_t, cos_t = sincos(np.ascontiguousarray(theta))  # numpy's float64 sin/cos are slow here
    x, y, z, p = (np.repeat(robot.base[:3, k : k + 1], n, axis=1) for k in range(4))
    # jac_t[row, joint] is (N,): angular rows are the joint axes, linear rows
    # are axis x (p_end - p_joint); written with the flip sign at the end
    jac_t = np.empty((6, joints, n))
    for i in range(joints):
        jac_t[3:, i] = z
        jac_t[:3, i] = p  # origin for now; turned into the lever arm below
        u, v = x * cos_t[i] + y * sin_t[i], y * cos_t[i] - x * sin_t[i]
        p = p + robot.d[i] * z + robot.a[i] * u
        ca, sa = math.cos(robot.alpha[i]), math.sin(robot.alpha[i])
        x, y, z = u, v * ca + z * sa, z * ca - v * sa
    tool_r, tool_p = robot.tool[:3, :3], robot.tool[:3, 3]
    p = p + x * tool_p[0] + y * tool_p[1] + z * tool_p[2]
    rotation = np.stack([x, y, z], axis=1).transpose(2, 0, 1) @ tool_r  # (N, 3, 3), columns x, y, z
    lever = p[:, None, :] - jac_t[:3]
    axis = jac_t[3:]
    jac_t[0] = axis[1] * lever[2] - axis[2] * lever[1]
    jac_t[1] = axis[2] * lever[0] - axis[0] * lever[2]
    jac_t[2] = axis[0] * lever[1] - axis[1] * lever[0]
    jac_t *= robot.sign[:, None]
    return rotation, np.ascontiguousarray(p.T), np.ascontiguousarray(jac_t.transpose(2, 0, 1))


# --- rotation encodings ------------------------------------------------------
# All take and return batches: rotations (N, 3, 3), quaternions (N, 4) as
# (qw, qx, qy, qz) with qw >= 0, roll-pitch-yaw (N, 3) radians.


def _scipy_rotation() -> type:
    """scipy's Rotation class, imported on first use (scipy.spatial alone takes 0.3-0.9 s to import)."""
    from scipy.spatial.transform import Rotation

    return Rotation


def matrix_to_quaternion(rotation: np.ndarray) -> np.ndarray:
    """``(N, 3, 3)`` -> unit quaternions ``(N, 4)`` (qw, qx, qy, qz), ``qw >= 0``.

    scipy's ``from_matrix`` with ``assume_valid=True``: Shepperd's method (each
    row divides by the largest of trace, R00, R11, R22), then normalized, so a
    near-rotation (float32, drift) still gives a unit quaternion. It skips
    scipy's determinant check and SVD orthogonalization, which cost 5x and
    do nothing for FK output. At ``qw == 0`` the pivot component stays positive,
    as in ``r2q``.
    """
    r = np.asarray(rotation, dtype=np.float64)
    quat = _scipy_rotation().from_matrix(r, assume_valid=True).as_quat(scalar_first=True)
    # not as_quat(canonical=True): at qw == 0 it makes the first non-zero component positive, unlike r2q
    quat[quat[:, 0] < 0] *= -1.0
    return quat


def quaternion_to_matrix(quat: np.ndarray) -> np.ndarray:
    """``(N, 4)`` (qw, qx, qy, qz), any norm > 0 -> ``(N, 3, 3)`` rotation matrices.

    A zero or NaN quaternion raises ValueError (scipy's ``from_quat``).
    """
    q = np.asarray(quat, dtype=np.float64)
    return _scipy_rotation().from_quat(q, scalar_first=True).as_matrix()


def matrix_to_rpy(rotation: np.ndarray) -> np.ndarray:
    """``(N, 3, 3)`` -> ``(N, 3)`` roll, pitch, yaw in radians.

    Same convention and branch choices as roboticstoolbox's ``tr2rpy``
    default (order "zyx": R = Rz(yaw) Ry(pitch) Rx(roll)), vectorized.
    """
    r = np.asarray(rotation, dtype=np.float64)
    r20 = r[:, 2, 0]
    roll = np.arctan2(r[:, 2, 1], r[:, 2, 2])
    yaw = np.arctan2(r[:, 1, 0], r[:, 0, 0])
    # tr2rpy picks the best-conditioned of four equivalent pitch formulas.
    candidates = np.stack([r[:, 0, 0], r[:, 1, 0], r[:, 2, 1], r[:, 2, 2]])
    numerators = np.stack([np.cos(yaw), np.sin(yaw), np.sin(roll), np.cos(roll)])
    k = np.argmax(np.abs(candidates), axis=0)
    cols = np.arange(r.shape[0])
    with np.errstate(divide="ignore", invalid="ignore"):
        pitch = -np.arctan(r20 * numerators[k, cols] / candidates[k, cols])
    # Gimbal lock (|R20| == 1): roll is set to zero and yaw absorbs it.
    locked = np.abs(np.abs(r20) - 1.0) < 20 * np.finfo(np.float64).eps
    if locked.any():
        rl = r[locked]
        roll[locked] = 0.0
        yaw[locked] = np.where(
            rl[:, 2, 0] < 0, -np.arctan2(rl[:, 0, 1], rl[:, 0, 2]), np.arctan2(-rl[:, 0, 1], -rl[:, 0, 2])
        )
        pitch[locked] = -np.arcsin(np.clip(rl[:, 2, 0], -1.0, 1.0))
    return np.stack([roll, pitch, yaw], axis=1)


def rpy_to_matrix(rpy: np.ndarray) -> np.ndarray:
    """``(N, 3)`` roll, pitch, yaw -> ``(N, 3, 3)``, R = Rz(yaw) Ry(pitch) Rx(roll)."""
    roll, pitch, yaw = np.asarray(rpy, dtype=np.float64).T
    cr, sr, cp, sp, cy, sy = (np.cos(roll), np.sin(roll), np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw))
    return np.stack(
        [
            np.stack([cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr], axis=1),
            np.stack([sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr], axis=1),
            np.stack([-sp, cp * sr, cp * cr], axis=1),
        ],
        axis=1,
    )


def matrix_to_rot6d(rotation: np.ndarray) -> np.ndarray:
    """``(N, 3, 3)`` -> ``(N, 6)``: first column then second column (Zhou et al. 2019)."""
    r = np.asarray(rotation, dtype=np.float64)
    return np.concatenate([r[:, :, 0], r[:, :, 1]], axis=1)


def rot6d_to_matrix(rot6d: np.ndarray) -> np.ndarray:
    """``(N, 6)`` -> ``(N, 3, 3)`` by Gram-Schmidt; exact inverse on orthonormal input."""
    v = np.asarray(rot6d, dtype=np.float64)
    x = v[:, :3] / np.linalg.norm(v[:, :3], axis=1, keepdims=True)
    y = v[:, 3:] - np.sum(x * v[:, 3:], axis=1, keepdims=True) * x
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    return np.stack([x, y, np.cross(x, y)], axis=2)


def wrap_angle(angle: np.ndarray) -> np.ndarray:
    """Wrap radians to [-pi, pi)."""
    return (np.asarray(angle) + math.pi) % (2 * math.pi) - math.pi


def wrap_from(angle: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """Each angle moved by a multiple of 2*pi to the smallest equivalent >= ``lower`` (radians)."""
    return lower + np.mod(np.asarray(angle, dtype=np.float64) - lower, 2 * math.pi)


def rotation_angle_between(r_a: np.ndarray, r_b: np.ndarray) -> np.ndarray:
    """Geodesic angle (radians) between rotation batches ``(N, 3, 3)`` -> ``(N,)``."""
    # atan2 of |sin| and cos is accurate near 0 and pi, unlike arccos(trace).
    rel = np.einsum("nji,njk->nik", r_a, r_b)
    cos_angle = (np.trace(rel, axis1=1, axis2=2) - 1.0) / 2.0
    axis = np.stack([rel[:, 2, 1] - rel[:, 1, 2], rel[:, 0, 2] - rel[:, 2, 0], rel[:, 1, 0] - rel[:, 0, 1]], axis=1)
    return np.arctan2(np.linalg.norm(axis, axis=1) / 2.0, cos_angle)

"""A 6R arm from a URDF (or xacro) file, turned into an exact standard-DH table.

A URDF chain is fixed transforms (each joint's ``<origin>``, fixed joints folded in) and six
revolute joints, each turning about its own ``<axis>``. Every such chain has an exact
standard-DH form plus a base and a tool transform: frame i's z is joint i+1's axis line, its x
the common normal of axes i and i+1 (the classic construction), so FK, the Jacobian and the
refinement kernels (``iklab.core.kinematics``, ``iklab.core.refine_kernel``) run on a URDF arm
unchanged, at the speed they have on roboticstoolbox's DH models. The conversion is checked
where it is made: the DH table's FK is compared with the file's chain (a plain product of joint
origins and axis rotations) on 64 joint vectors, and a table off by more than 1e-6 m or rad is
refused. The figure is kept in the robot's ``source``; on the arms tested (tests/test_urdf.py)
it is below 1e-13.

Choices the construction leaves free, made here: joint i's angle is the file's ``q_i`` plus
an offset (``sign`` is always +1, so joint limits are the file's); frame 0's origin is the
point of axis 1 nearest the base link's origin and its x the first common normal (offset 0);
two parallel axes get d = 0 (the common normal through the previous frame's origin);
coincident axes share a frame; frame 6 is the end link's frame where that is a DH frame of
link 6 (a flange's tool0 usually is: no tool transform to apply), else it lies on axis 6 level
with the end link's origin (a = alpha = 0) and the tool transform carries the rest. Axes within 1e-9 rad of parallel are
taken as parallel: tilts that small come from rounded angles in the file (1.570796325 for
pi/2), and a DH table that honours them puts the common normal kilometres away.

Standard library XML only: robot code needs no extra package. A ``.xacro`` file is expanded
with ``xacrodoc`` (installed with roboticstoolbox, the ``train`` extra); one that includes
other ROS packages it cannot find is refused with the ``xacro`` command to run instead.
Units: metres and radians. Errors are one line (:class:`UrdfError`) naming the joint or link.
"""

from __future__ import annotations

import hashlib
import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MOVABLE = ("revolute", "continuous", "prismatic", "floating", "planar")
PARALLEL_RAD = 1e-9  # axes closer than this to parallel are taken as parallel
COINCIDENT_M = 1e-12  # parallel axes closer than this are one line
TINY = 1e-14  # m or rad: DH values smaller than this are rounding dust, set to 0
CHECK_LIMIT = 1e-6  # m and rad: a DH table further than this from the file's chain is refused
CHECK_SAMPLES = 64


class UrdfError(ValueError):
    """A URDF file iklab cannot turn into a 6R arm; one line naming the file and the joint or link."""


@dataclass(frozen=True)
class Chain:
    """The serial chain between two links of a URDF file, at the file's numbers.

    Pose of the end link: ``fixed[0] @ R(axes[0], q0) @ fixed[1] @ ... @ R(axes[5], q5) @ fixed[6]``,
    where ``R(axis, q)`` turns by ``q`` about ``axis`` through the joint frame's origin.
    """

    name: str  # the file's <robot name>
    file: str  # the file's name (no directory) and its sha256, for the record
    sha256: str
    base: str
    ee: str
    joints: tuple[str, ...]  # the six joints, base to end
    fixed: tuple[np.ndarray, ...]  # seven (4, 4) transforms
    axes: np.ndarray  # (6, 3) unit vectors, each in its joint's frame
    qlim: np.ndarray  # (2, 6) radians


# --- reading the file ------------------------------------------------------------


def read_chain(path: str | Path, base: str | None = None, ee: str | None = None) -> Chain:
    """The chain from ``base`` (default: the root link) to ``ee`` (default: the chain's one end)."""
    path, root = _root(path)
    name = _name(root, path)
    links = {link.get("name") for link in root.findall("link")}
    joints = [_joint(element, path) for element in root.findall("joint")]
    parent_joint = {}
    for joint in joints:
        for end in (joint["parent"], joint["child"]):
            if end not in links:
                raise UrdfError(f"{path}: joint {joint['name']!r} names link {end!r}, which the file does not declare")
        if joint["child"] in parent_joint:
            raise UrdfError(f"{path}: link {joint['child']!r} is the child of two joints")
        parent_joint[joint["child"]] = joint
    for label, link in (("base", base), ("end-effector", ee)):
        if link is not None and link not in links:
            raise UrdfError(f"{path}: no link {link!r} (the {label} link); links: {', '.join(sorted(links))}")
    if ee is None:
        ee = _default_ee(path, links, joints, parent_joint, base)
    path_joints = _path_to(path, ee, base, parent_joint)
    base = base or (path_joints[0]["parent"] if path_joints else ee)
    movable = [j for j in path_joints if j["type"] != "fixed"]
    for joint in movable:
        if joint["type"] not in ("revolute", "continuous"):
            raise UrdfError(
                f"{path}: joint {joint['name']!r} is {joint['type']}; iklab needs six revolute joints "
                f"between {base!r} and {ee!r}"
            )
        if joint["mimic"]:
            raise UrdfError(f"{path}: joint {joint['name']!r} mimics {joint['mimic']!r}; iklab needs six free joints")
    if len(movable) != 6:
        names = ", ".join(j["name"] for j in movable) or "none"
        raise UrdfError(
            f"{path}: {len(movable)} revolute joints between {base!r} and {ee!r} ({names}); iklab needs 6 "
            "(choose other base and end-effector links)"
        )
    fixed, current = [], np.eye(4)
    for joint in path_joints:
        current = current @ joint["origin"]
        if joint["type"] != "fixed":
            fixed.append(current)
            current = np.eye(4)
    fixed.append(current)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return Chain(
        name=name,
        file=path.name,
        sha256=digest,
        base=base,
        ee=ee,
        joints=tuple(j["name"] for j in movable),
        fixed=tuple(fixed),
        axes=np.array([j["axis"] for j in movable]),
        qlim=np.array([[j["lower"] for j in movable], [j["upper"] for j in movable]]),
    )


def robot_name(path: str | Path) -> str:
    """The ``<robot name>`` of a URDF file (what datasets, experiments and the registry call it)."""
    path, root = _root(path)
    return _name(root, path)


def _root(path: str | Path) -> tuple[Path, ET.Element]:
    path = Path(str(path).strip())
    if not path.is_file():
        raise UrdfError(f"{path}: no such URDF file")
    text = _expand_xacro(path) if path.name.lower().endswith(".xacro") else path.read_bytes()
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise UrdfError(f"{path}: not valid XML ({exc})") from None
    if root.tag != "robot":
        raise UrdfError(f"{path}: the top element is <{root.tag}>, a URDF file has <robot>")
    return path, root


def _name(root: ET.Element, path: Path) -> str:
    """<robot name>, with characters that would break a directory or registry name made '_'."""
    return re.sub(r"[^\w.-]", "_", (root.get("name") or "").strip()) or path.name.split(".")[0]


def _expand_xacro(path: Path) -> str:
    command = f"xacro {path} > {path.name.split('.')[0]}.urdf"
    try:
        from xacrodoc import XacroDoc
    except ImportError:
        raise UrdfError(
            f"{path}: reading xacro needs xacrodoc (pip install 'iklab[train]'); or run {command}"
        ) from None
    try:  # resolve_packages=False: meshes' package:// paths are left alone (kinematics needs none)
        return XacroDoc.from_file(path, resolve_packages=False).to_urdf_string()
    except Exception as exc:  # xacro's own errors have no common base class
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UrdfError(f"{path}: xacro could not expand it ({reason}); run {command} and pass the .urdf") from None


def _numbers(element: ET.Element | None, key: str, count: int, default: list[float], where: str) -> np.ndarray:
    text = None if element is None else element.get(key)
    if text is None:
        return np.array(default, dtype=np.float64)
    try:
        values = np.array([float(v) for v in text.split()], dtype=np.float64)
    except ValueError:
        values = np.array([])
    if values.shape != (count,) or not np.all(np.isfinite(values)):
        raise UrdfError(f"{where} {key}={text!r} is not {count} numbers")
    return values


def _joint(element: ET.Element, path: Path) -> dict:
    name = element.get("name") or "?"
    where = f"{path}: joint {name!r}"
    kind = element.get("type")
    if kind not in MOVABLE + ("fixed",):
        raise UrdfError(f"{where} has type {kind!r}; URDF types: {', '.join(MOVABLE + ('fixed',))}")
    parent, child = element.find("parent"), element.find("child")
    if parent is None or child is None or not parent.get("link") or not child.get("link"):
        raise UrdfError(f"{where} needs <parent link=...> and <child link=...>")
    origin = element.find("origin")
    xyz = _numbers(origin, "xyz", 3, [0.0, 0.0, 0.0], f"{where}: origin")
    rpy = _numbers(origin, "rpy", 3, [0.0, 0.0, 0.0], f"{where}: origin")
    transform = np.eye(4)
    transform[:3, :3], transform[:3, 3] = _rpy_matrix(*rpy), xyz
    axis = _numbers(element.find("axis"), "xyz", 3, [1.0, 0.0, 0.0], f"{where}: axis")
    if kind != "fixed" and np.linalg.norm(axis) < 1e-12:
        raise UrdfError(f"{where}: axis is zero")
    lower, upper = -math.pi, math.pi  # continuous joints: one turn (iklab's joint boxes are finite)
    if kind in ("revolute", "prismatic"):
        limit = element.find("limit")
        if limit is None:
            raise UrdfError(f"{where} is {kind} and has no <limit>")
        lower = float(_numbers(limit, "lower", 1, [0.0], f"{where}: limit")[0])
        upper = float(_numbers(limit, "upper", 1, [0.0], f"{where}: limit")[0])
        if kind == "revolute" and not lower < upper:
            raise UrdfError(f"{where}: limit lower {lower:g} is not below upper {upper:g}")
    mimic = element.find("mimic")
    return {
        "name": name,
        "type": kind,
        "parent": parent.get("link"),
        "child": child.get("link"),
        "origin": transform,
        "axis": axis / max(np.linalg.norm(axis), 1e-300),
        "lower": lower,
        "upper": upper,
        "mimic": None if mimic is None else mimic.get("joint", "?"),
    }


def _path_to(path: Path, ee: str, base: str | None, parent_joint: dict) -> list[dict]:
    """The joints from ``base`` (or the root) down to ``ee``, base first."""
    chain, link, seen = [], ee, {ee}
    while link != base and link in parent_joint:
        joint = parent_joint[link]
        chain.append(joint)
        link = joint["parent"]
        if link in seen:
            raise UrdfError(f"{path}: the joints form a loop through link {link!r}")
        seen.add(link)
    if base is not None and link != base:
        raise UrdfError(f"{path}: end-effector link {ee!r} is not below base link {base!r}")
    return chain[::-1]


def _default_ee(path: Path, links: set, joints: list[dict], parent_joint: dict, base: str | None) -> str:
    """The leaf below ``base`` with the most moving joints above it; refused when two tie."""
    children: dict[str, list[str]] = {}
    for joint in joints:
        children.setdefault(joint["parent"], []).append(joint["child"])
    roots = sorted(link for link in links if link not in parent_joint)
    if base is None and len(roots) != 1:
        raise UrdfError(f"{path}: {len(roots)} root links ({', '.join(roots)}); choose the base link")
    start = base or roots[0]
    best, tied, stack = (-1, None), [], [(start, 0)]
    while stack:
        link, moving = stack.pop()
        if link not in children:
            if moving > best[0]:
                best, tied = (moving, link), [link]
            elif moving == best[0]:
                tied.append(link)
            continue
        for child in children[link]:
            stack.append((child, moving + (parent_joint[child]["type"] != "fixed")))
    if len(tied) > 1:
        raise UrdfError(
            f"{path}: the chain from {start!r} branches and ends in {', '.join(sorted(tied))}; "
            "choose the end-effector link"
        )
    return best[1]


def _rpy_matrix(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """URDF's fixed-axis roll, pitch, yaw: ``Rz(yaw) @ Ry(pitch) @ Rx(roll)``."""
    cr, sr, cp, sp = math.cos(roll), math.sin(roll), math.cos(pitch), math.sin(pitch)
    cy, sy = math.cos(yaw), math.sin(yaw)
    return np.array(
        [
            [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
            [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
            [-sp, cp * sr, cp * cr],
        ]
    )


# --- the chain's own FK: the reference the DH table is checked against -------------


def chain_fk(chain: Chain, q: np.ndarray) -> np.ndarray:
    """Plain product of the chain's transforms. ``(N, 6)`` radians -> ``(N, 4, 4)``."""
    q = np.asarray(q, dtype=np.float64)
    pose = np.broadcast_to(chain.fixed[0], (len(q), 4, 4)).copy()
    for i in range(6):
        turn = np.zeros((len(q), 4, 4))
        turn[:, :3, :3] = _axis_rotation(chain.axes[i], q[:, i])
        turn[:, 3, 3] = 1.0
        pose = pose @ turn @ chain.fixed[i + 1]
    return pose


def _axis_rotation(axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rodrigues: ``(N,)`` angles about one unit axis -> ``(N, 3, 3)``."""
    k = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    c, s = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    return np.eye(3) * c + k * s + np.outer(axis, axis) * (1.0 - c)


# --- the DH form ---------------------------------------------------------------------


def dh_spec(chain: Chain) -> dict:
    """The chain as a standard-DH robot description (``Robot.to_dict``'s keys), checked against it."""
    frames = _dh_frames(chain)
    d, a, alpha, offset = (np.zeros(6) for _ in range(4))
    for i in range(6):
        (x0, z0, o0), (x1, z1, o1) = frames[i], frames[i + 1]
        step = o1 - o0
        d[i], a[i] = step @ z0, step @ x1
        offset[i] = math.atan2(x1 @ np.cross(z0, x0), x1 @ x0)
        alpha[i] = math.atan2(np.cross(z0, z1) @ x1, z0 @ z1)
    for values in (d, a, alpha, offset):  # rounding dust (1e-17) to zero: the FK kernel skips zero d and a
        values[np.abs(values) < TINY] = 0.0
    base, frame6 = _homogeneous(*frames[0]), _homogeneous(*frames[6])
    ends = np.eye(4)
    for transform in chain.fixed:
        ends = ends @ transform
    spec = {
        "name": chain.name,
        "convention": "standard_dh",
        "d": d,
        "a": a,
        "alpha": alpha,
        "offset": offset,
        "sign": np.ones(6),
        "qlim": chain.qlim.copy(),
        "base": base,
        "tool": np.linalg.solve(frame6, ends),
    }
    if np.max(np.abs(spec["tool"] - np.eye(4))) < TINY:
        spec["tool"] = np.eye(4)  # rounding dust: an identity tool is skipped by the FK kernel
    position_m, rotation_rad = _check(chain, spec)
    if max(position_m, rotation_rad) > CHECK_LIMIT:
        raise UrdfError(
            f"{chain.file}: the DH form of {chain.base!r} -> {chain.ee!r} is {position_m:.2g} m, "
            f"{rotation_rad:.2g} rad off the file's chain (nearly parallel joint axes?); please report it"
        )
    spec["source"] = {
        "kind": "urdf",
        "file": chain.file,
        "sha256": chain.sha256,
        "base_link": chain.base,
        "ee_link": chain.ee,
        "joints": list(chain.joints),
        "dh_error_m": position_m,
        "dh_error_rad": rotation_rad,
    }
    return spec


def _dh_frames(chain: Chain) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """DH frames 0..6 at q = 0 as (x, z, origin) in the base link's frame; frame i's z is joint i+1's axis."""
    lines, pose = [], np.eye(4)
    for i in range(6):
        pose = pose @ chain.fixed[i]
        direction = pose[:3, :3] @ chain.axes[i]
        lines.append((pose[:3, 3].copy(), direction / np.linalg.norm(direction)))
    end = pose @ chain.fixed[6]
    point, z = lines[0]
    origin = point - (point @ z) * z  # nearest the base link's origin
    x = _perpendicular(z, np.array([1.0, 0.0, 0.0]))
    x = _next_frame((x, z, origin), lines[1])[0]  # offset 0 on joint 1 (unless axes 1 and 2 coincide)
    frames = [(x, z, origin)]
    for line in lines[1:]:
        frames.append(_next_frame(frames[-1], line))
    frames.append(_last_frame(frames[-1], end))
    return frames


def _last_frame(previous: tuple, end: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frame 6 on axis 6: the end link's own frame where that is a DH frame of link 6 (its x
    meets axis 6 at a right angle, as a flange's tool0 does), so that the tool transform is the
    identity and FK skips it; else level with the end link's origin, x along frame 5's."""
    x5, z5, o5 = previous
    x_end, z_end, p_end = end[:3, 0], end[:3, 2], end[:3, 3]
    foot = o5 + ((p_end - o5) @ z5) * z5
    if abs(x_end @ z5) < TINY and np.linalg.norm(np.cross(p_end - foot, x_end)) < TINY:
        return x_end.copy(), z_end.copy(), p_end.copy()
    return x5, z5, foot


def _next_frame(previous: tuple, line: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frame i from frame i-1 and joint i+1's axis line (point, unit direction)."""
    x0, z0, o0 = previous
    point, z = line
    normal = np.cross(z0, z)
    sine = np.linalg.norm(normal)
    if sine < PARALLEL_RAD:  # parallel: d = 0, the common normal through o0
        z = z0 if z @ z0 > 0 else -z0
        offset = point - o0
        offset -= (offset @ z0) * z0
        length = np.linalg.norm(offset)
        if length < COINCIDENT_M:
            return x0, z, o0
        return offset / length, z, o0 + offset
    x = normal / sine
    w = point - o0
    along_new = np.cross(w, z0) @ normal / sine**2  # foot of the common normal on the new axis
    return x, z, point + along_new * z


def _perpendicular(z: np.ndarray, hint: np.ndarray) -> np.ndarray:
    x = hint - (hint @ z) * z
    if np.linalg.norm(x) < 1e-6:
        x = np.array([0.0, 1.0, 0.0]) - z[1] * z
    return x / np.linalg.norm(x)


def _homogeneous(x: np.ndarray, z: np.ndarray, origin: np.ndarray) -> np.ndarray:
    frame = np.eye(4)
    frame[:3, 0], frame[:3, 1], frame[:3, 2], frame[:3, 3] = x, np.cross(z, x), z, origin
    return frame


def dh_fk(spec: dict, q: np.ndarray) -> np.ndarray:
    """FK of a DH description by 4x4 products (slow, plain): ``(N, 6)`` -> ``(N, 4, 4)``."""
    q = np.asarray(q, dtype=np.float64)
    pose = np.broadcast_to(spec["base"], (len(q), 4, 4)).copy()
    for i in range(6):
        theta = spec["sign"][i] * q[:, i] + spec["offset"][i]
        ct, st = np.cos(theta), np.sin(theta)
        ca, sa = math.cos(spec["alpha"][i]), math.sin(spec["alpha"][i])
        link = np.zeros((len(q), 4, 4))
        link[:, 0] = np.stack([ct, -st * ca, st * sa, spec["a"][i] * ct], axis=1)
        link[:, 1] = np.stack([st, ct * ca, -ct * sa, spec["a"][i] * st], axis=1)
        link[:, 2] = [0.0, sa, ca, spec["d"][i]]
        link[:, 3, 3] = 1.0
        pose = pose @ link
    return pose @ spec["tool"]


def _check(chain: Chain, spec: dict) -> tuple[float, float]:
    """Largest position (m) and rotation (rad) gap between the DH table and the chain."""
    rng = np.random.default_rng(0)
    q = rng.uniform(chain.qlim[0], chain.qlim[1], size=(CHECK_SAMPLES, 6))
    q[0] = 0.0
    want, got = chain_fk(chain, q), dh_fk(spec, q)
    position = float(np.max(np.linalg.norm(want[:, :3, 3] - got[:, :3, 3], axis=1)))
    # rotation gap: |R1 - R2| (Frobenius) is sqrt(8) sin(angle/2), close enough to the angle here
    rotation = float(np.max(np.linalg.norm(want[:, :3, :3] - got[:, :3, :3], axis=(1, 2)) / math.sqrt(2)))
    return position, rotation


def robot_spec(path: str | Path, base: str | None = None, ee: str | None = None) -> dict:
    """Read ``path`` and return its chain's DH description (for ``Robot.from_dict``)."""
    return dh_spec(read_chain(path, base, ee))

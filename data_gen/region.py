"""Find a single-branch working region (a joint box) for any 6R arm, automatically.

The method that found Jaco's `working` box (docs/datasets.md, "Regions"), made general:

1. Start box: the joint limits, a joint that turns a whole turn or more cut to
   [-175, 175] degrees (one turn, and no jump at +-180 in raw-angle targets).
2. Branch families: IK branches meet where det J = 0, so the box is split, a
   5-degree grid cut at a time, on the joints det J depends on (found
   numerically: never the first and last) until each part holds one sign of
   det J (a small decision tree on the sign, Gini impurity).
3. Peel: from each large part, cut 5 degrees off whichever edge slab holds the
   most samples of the other sign, until under ``det_target`` of the box
   disagrees (Jaco's scan of det J's sign).
4. Judge: each peeled box's ambiguity (data_gen.ambiguity: the share of poses
   with a second IK solution inside the box) and its share of the reachable
   volume; the largest share with ambiguity at most ``max_ambiguity`` wins, and
   is measured again on a fresh sample. Where none is under it, the base joint
   (which det J cannot see) is halved and the boxes judged again.

Volume share: end-effector positions of ``volume_samples`` uniform joint
samples, in cubic voxels of 1/20 of the arm's reach; the share is the number of
voxels the box's samples occupy over the number the whole joint range's occupy,
at the same sample count (both sample-limited alike).
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from iklab.core.kinematics import Robot, fk_rotation_translation, jacobian
from iklab.core.regions import Region, custom_region

from .ambiguity import AmbiguityResult, measure_ambiguity

DEFAULT_STEP_DEG = 5.0
DEFAULT_SAMPLES = 200_000
TURN_MARGIN_DEG = 5.0  # a joint of a whole turn keeps [-175, 175]: no raw-angle jump at +-180
VOXELS_PER_REACH = 20
# The peel's boxes kept as candidates: the first under each share of det J's minority sign. A box
# that still crosses a singular band a little can hold one branch (the other branch's solutions
# lie outside it): the measured ambiguity decides.
PEEL_LEVELS = (0.05, 0.02, 0.01, 0.005)
_DECIMALS = 6  # printed radians, rounded inward so they stay inside the joint limits

Log = Callable[[str], None]


@dataclass(frozen=True)
class Candidate:
    lower_deg: np.ndarray
    upper_deg: np.ndarray
    det_disagreement: float  # share of the box's samples whose det J sign is the minority's
    ambiguity: AmbiguityResult
    volume_share: float


@dataclass(frozen=True)
class RegionSearch:
    robot: str
    region: Region  # the found box, radians (rounded inward to 1e-6)
    ambiguity: AmbiguityResult  # measured again on a fresh sample
    volume_share: float
    det_disagreement: float
    candidates: list[Candidate] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def lower_deg(self) -> np.ndarray:
        return np.degrees(self.region.lower)

    @property
    def upper_deg(self) -> np.ndarray:
        return np.degrees(self.region.upper)


def start_box(robot: Robot, margin_deg: float = TURN_MARGIN_DEG) -> tuple[np.ndarray, np.ndarray]:
    """The joint limits in degrees, each joint at most one turn (minus the margins)."""
    lower, upper = np.degrees(robot.qlim[0]), np.degrees(robot.qlim[1])
    lower, upper = lower.copy(), upper.copy()
    for j in range(robot.n_joints):
        if upper[j] - lower[j] > 360.0 - 2 * margin_deg:
            centre = 0.0 if lower[j] <= -180.0 + margin_deg and upper[j] >= 180.0 - margin_deg else lower[j] + 180.0
            lower[j], upper[j] = centre - 180.0 + margin_deg, centre + 180.0 - margin_deg
    return lower, upper


def det_sign(robot: Robot, q_deg: np.ndarray) -> np.ndarray:
    """``(N, 6)`` degrees -> ``(N,)`` +1 / -1, the sign of det J."""
    return np.where(np.linalg.det(jacobian(robot, np.radians(q_deg))) >= 0, 1.0, -1.0)


def det_joints(robot: Robot, seed: int = 0) -> list[int]:
    """The joints det J depends on (a 6R arm's first and last never enter it)."""
    rng = np.random.default_rng(seed)
    q = rng.uniform(robot.qlim[0], robot.qlim[1], size=(64, robot.n_joints))
    det = np.linalg.det(jacobian(robot, q))
    scale = np.abs(det).max() + 1e-300
    joints = []
    for j in range(robot.n_joints):
        moved = q.copy()
        moved[:, j] += rng.uniform(0.5, 2.5, size=len(q))
        if np.abs(np.linalg.det(jacobian(robot, moved)) - det).max() > 1e-9 * scale:
            joints.append(j)
    return joints


def det_minority(robot: Robot, lower_deg, upper_deg, n: int = 20_000, seed: int = 0) -> float:
    """Share of ``n`` uniform samples of the box whose det J sign is the minority's."""
    rng = np.random.default_rng(seed)
    positive = np.mean(det_sign(robot, rng.uniform(lower_deg, upper_deg, size=(n, 6))) > 0)
    return float(min(positive, 1 - positive))


def _grid(lo: float, hi: float, step: float) -> np.ndarray:
    """Cuts strictly inside (lo, hi) on multiples of ``step``."""
    first = math.floor(lo / step + 1e-9) * step + step
    return np.arange(first, hi - 1e-9, step)


def split_families(
    q_deg: np.ndarray,
    sign: np.ndarray,
    lower,
    upper,
    joints,
    step: float = DEFAULT_STEP_DEG,
    max_depth: int = 4,
    pure: float = 0.02,
    min_share: float = 0.02,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Axis-aligned parts of the box, each mostly one sign of det J (Gini splits on a ``step`` grid)."""
    leaves: list[tuple[np.ndarray, np.ndarray]] = []
    min_rows = max(1, int(min_share * len(q_deg)))

    def grow(rows: np.ndarray, lo: np.ndarray, hi: np.ndarray, depth: int) -> None:
        positive = sign[rows] > 0
        share = positive.mean() if len(rows) else 0.0
        if min(share, 1 - share) <= pure or depth == max_depth or len(rows) < 2 * min_rows:
            leaves.append((lo, hi))
            return
        best = (2 * len(rows) * share * (1 - share), None, None)
        for j in joints:
            order = np.argsort(q_deg[rows, j])
            x, cum = q_deg[rows, j][order], np.cumsum(positive[order])
            for cut in _grid(lo[j], hi[j], step):
                k = int(np.searchsorted(x, cut))
                if min(k, len(x) - k) < min_rows:
                    continue
                left_p = cum[k - 1] / k
                right_p = (cum[-1] - cum[k - 1]) / (len(x) - k)
                gini = 2 * k * left_p * (1 - left_p) + 2 * (len(x) - k) * right_p * (1 - right_p)
                if gini < best[0] - 1e-9 * len(x):
                    best = (gini, j, cut)
        _, j, cut = best
        if j is None:
            leaves.append((lo, hi))
            return
        below = q_deg[rows, j] < cut
        left_hi, right_lo = hi.copy(), lo.copy()
        left_hi[j], right_lo[j] = cut, cut
        grow(rows[below], lo, left_hi, depth + 1)
        grow(rows[~below], right_lo, hi, depth + 1)

    grow(np.arange(len(q_deg)), np.asarray(lower, float), np.asarray(upper, float), 0)
    return leaves


def peel(
    q_deg: np.ndarray,
    disagree: np.ndarray,
    lower,
    upper,
    step: float = DEFAULT_STEP_DEG,
    target: float = 0.0005,
    joints=(1, 2, 3, 4),
    log: Log | None = None,
    snapshots: dict | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Shrink the box ``step`` degrees at a time until under ``target`` of its samples disagree.

    Each step removes the edge slab (one joint, one side) whose samples disagree
    most: it cuts back from the nearest singular band. ``snapshots``, a dict of
    disagreement levels (keys), gets the first box under each level as its value.
    """
    lower, upper = np.array(lower, float), np.array(upper, float)
    while True:
        inside = np.all((q_deg >= lower) & (q_deg <= upper), axis=1)
        total = disagree[inside].mean() if inside.any() else 0.0
        for level in snapshots or {}:
            if total < level and snapshots[level] is None:
                snapshots[level] = (lower.copy(), upper.copy())
        if total < target:
            return lower, upper
        worst = None
        for j in joints:
            if upper[j] - lower[j] <= step + 1e-9:
                continue
            for side in (0, 1):
                edge = q_deg[:, j] < lower[j] + step if side == 0 else q_deg[:, j] > upper[j] - step
                slab = inside & edge
                frac = disagree[slab].mean() if slab.any() else 0.0
                if worst is None or frac > worst[0]:
                    worst = (frac, j, side)
        if worst is None:
            return lower, upper
        frac, j, side = worst
        if side == 0:
            lower[j] += step
        else:
            upper[j] -= step
        if log:
            log(
                f"    box disagreement {total:6.2%}: cut q{j} {'lower' if side == 0 else 'upper'} "
                f"edge (slab {frac:5.1%}) -> q{j} [{lower[j]:.0f}, {upper[j]:.0f}]"
            )


def volume_share(robot: Robot, lower_deg, upper_deg, n: int = DEFAULT_SAMPLES, seed: int = 0) -> float:
    """Voxels of the box's reach over the whole joint range's (see the module docstring)."""
    rng = np.random.default_rng(seed)
    full = fk_rotation_translation(robot, rng.uniform(robot.qlim[0], robot.qlim[1], size=(n, 6)))[1]
    voxel = np.linalg.norm(full, axis=1).max() / VOXELS_PER_REACH
    box = fk_rotation_translation(robot, np.radians(rng.uniform(lower_deg, upper_deg, size=(n, 6))))[1]
    cells_full, cells_box = _cells(full, voxel), _cells(box, voxel)
    return np.intersect1d(cells_box, cells_full).size / cells_full.size


def _cells(points: np.ndarray, voxel: float) -> np.ndarray:
    """Distinct voxel keys of ``(N, 3)`` points (coordinates lie within +-VOXELS_PER_REACH voxels)."""
    index = np.floor(points / voxel).astype(np.int64) + 4 * VOXELS_PER_REACH
    span = 8 * VOXELS_PER_REACH
    return np.unique((index[:, 0] * span + index[:, 1]) * span + index[:, 2])


def to_region(robot: Robot, lower_deg, upper_deg, name: str = "custom") -> Region:
    """The box in radians rounded inward to 1e-6 (what is printed is what is measured)."""
    scale = 10.0**_DECIMALS
    lower = np.ceil(np.radians(np.asarray(lower_deg, float)) * scale - 1e-6) / scale
    upper = np.floor(np.radians(np.asarray(upper_deg, float)) * scale + 1e-6) / scale
    lower, upper = np.maximum(lower, robot.qlim[0]), np.minimum(upper, robot.qlim[1])
    return custom_region(robot, np.round(lower, _DECIMALS + 3), np.round(upper, _DECIMALS + 3), name=name)


def _boxes(q_deg, sign, lower, upper, joints, step, det_target, families: int) -> list[tuple]:
    """Candidate boxes: each of the largest one-sign parts, peeled, kept at several disagreement levels."""
    parts = split_families(q_deg, sign, lower, upper, joints, step)
    parts.sort(key=lambda box: -np.prod(box[1] - box[0]))
    boxes = []
    for lo, hi in parts[:families]:
        inside = np.all((q_deg >= lo) & (q_deg <= hi), axis=1)
        majority = 1.0 if np.mean(sign[inside] > 0) >= 0.5 else -1.0
        snapshots = dict.fromkeys(PEEL_LEVELS)
        final = peel(q_deg, sign != majority, lo, hi, step, det_target, joints, snapshots=snapshots)
        for box in [*snapshots.values(), final]:
            if box is not None and not any(
                np.array_equal(box[0], b[0]) and np.array_equal(box[1], b[1]) for b in boxes
            ):
                boxes.append(box)
    return boxes


def _disagreement(q_deg, sign, lower, upper) -> float:
    inside = np.all((q_deg >= lower) & (q_deg <= upper), axis=1)
    positive = np.mean(sign[inside] > 0) if inside.any() else 0.5
    return float(min(positive, 1 - positive))


def find_region(
    robot: Robot,
    *,
    max_ambiguity: float = 0.01,
    samples: int = DEFAULT_SAMPLES,
    step_deg: float = DEFAULT_STEP_DEG,
    det_target: float = 0.0005,
    families: int = 3,
    poses: int = 500,
    starts: int = 32,
    verify_poses: int = 2000,
    verify_starts: int = 64,
    threshold_deg: float = 5.0,
    volume_samples: int = DEFAULT_SAMPLES,
    seed: int = 0,
    log: Log = lambda line: None,
) -> RegionSearch:
    """The largest-volume single-branch box found for ``robot`` (module docstring); ValueError if none."""
    if not 0 < max_ambiguity < 1:
        raise ValueError(f"max_ambiguity must be in (0, 1), got {max_ambiguity}")
    started = time.perf_counter()
    lower, upper = start_box(robot)
    joints = det_joints(robot, seed)
    log(f"start box (deg): {fmt_box(lower, upper)}; det J depends on q{', q'.join(map(str, joints))}")
    rng = np.random.default_rng(seed)
    q_deg = rng.uniform(lower, upper, size=(samples, robot.n_joints))
    sign = det_sign(robot, q_deg)
    amb = dict(n_starts=starts, threshold_deg=threshold_deg)
    tried: list[Candidate] = []
    for _ in range(3):  # the base joint halved after a round with no box under max_ambiguity
        boxes = _boxes(q_deg, sign, lower, upper, joints, step_deg, det_target, families)
        shares = [volume_share(robot, lo, hi, n=volume_samples, seed=seed) for lo, hi in boxes]
        log(f"{len(boxes)} candidate boxes (one det J sign, peeled); judging the largest volume first")
        for k in np.argsort(shares)[::-1]:
            lo, hi = boxes[k]
            region = to_region(robot, lo, hi)
            quick = measure_ambiguity(robot, region, n_poses=poses, seed=seed, **amb)
            tried.append(Candidate(lo, hi, _disagreement(q_deg, sign, lo, hi), quick, shares[k]))
            log(
                f"  {fmt_box(lo, hi)}: volume share {shares[k]:.1%}, ambiguous {quick.ambiguous_fraction:.2%} "
                f"of {poses} ({time.perf_counter() - started:.0f} s)"
            )
            if quick.ambiguous_fraction > max_ambiguity / 2:  # headroom: the fresh sample may measure more
                continue
            log(f"  verifying it on {verify_poses} fresh poses x {verify_starts} starts ...")
            check = measure_ambiguity(
                robot, region, n_poses=verify_poses, seed=seed + 1, **{**amb, "n_starts": verify_starts}
            )
            log(f"  ambiguous {check.ambiguous_fraction:.2%} ({check.seconds:.0f} s)")
            if check.ambiguous_fraction <= max_ambiguity:
                seconds = time.perf_counter() - started
                return RegionSearch(robot.name, region, check, shares[k], tried[-1].det_disagreement, tried, seconds)
        width, centre = upper[0] - lower[0], (upper[0] + lower[0]) / 2
        lower[0], upper[0] = centre - width / 4, centre + width / 4  # det J cannot see the base joint
        keep = np.all((q_deg >= lower) & (q_deg <= upper), axis=1)
        q_deg, sign = q_deg[keep], sign[keep]
        log(f"no box at or under {max_ambiguity:.1%}: the base joint halved to [{lower[0]:.0f}, {upper[0]:.0f}]")
    raise ValueError(
        f"no box with ambiguity at most {max_ambiguity:.1%} found for {robot.name} "
        f"(least: {min(c.ambiguity.ambiguous_fraction for c in tried):.2%}); try a larger --max-ambiguity or --samples"
    )


def fmt_box(lower_deg, upper_deg) -> str:
    return " ".join(f"[{lo + 0.0:.0f},{hi + 0.0:.0f}]" for lo, hi in zip(lower_deg, upper_deg, strict=True))


def region_text(found: RegionSearch, robot_arg: str, base_link: str | None, ee_link: str | None) -> str:
    """What a user pastes: an experiment file's ``data`` block (YAML), the data_gen arguments in a comment."""
    lower = ", ".join(f"{v + 0.0:.{_DECIMALS}f}" for v in found.region.lower)  # + 0.0: no "-0.000000"
    upper = ", ".join(f"{v + 0.0:.{_DECIMALS}f}" for v in found.region.upper)
    links = "".join(f" {flag} {name}" for flag, name in (("--base", base_link), ("--ee", ee_link)) if name)
    amb = found.ambiguity
    pairs = zip(found.lower_deg.round(3), found.upper_deg.round(3), strict=True)
    lines = [
        f"# {found.robot}: a single-branch working region, found by data_gen region in {found.seconds:.0f} s",
        "# joints (deg): " + ", ".join(f"q{j} [{lo + 0.0:.0f}, {hi + 0.0:.0f}]" for j, (lo, hi) in enumerate(pairs)),
        f"# ambiguity: {100 * amb.ambiguous_fraction:.2f}% of {amb.n_poses} fresh poses have a second IK solution "
        f"in the box more than {amb.threshold_deg:g} deg away ({amb.n_starts} starts each)",
        f"# volume share: {100 * found.volume_share:.1f}% of the positions the whole joint range reaches "
        f"(voxels of 1/{VOXELS_PER_REACH} of the reach); det J minority sign {100 * found.det_disagreement:.2f}%",
        f"# data_gen: --robot {robot_arg}{links} --lower={','.join(lower.split(', '))} "
        f"--upper={','.join(upper.split(', '))}",
        "data:",
        f"  robot: {robot_arg}",
        *([f"  base_link: {base_link}"] if base_link else []),
        *([f"  ee_link: {ee_link}"] if ee_link else []),
        "  region: custom",
        f"  lower: [{lower}]  # radians",
        f"  upper: [{upper}]",
    ]
    return "\n".join(lines) + "\n"


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file beside it: a reader sees all or nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise

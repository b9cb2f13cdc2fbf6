"""Every branch against the analytic solver: IKSolver.solve_all against ssik on the same poses
(issue 26, items 1 and 3).

For each arm (Puma560, Jaco): --poses joint vectors drawn uniformly in the `full` region (the
joint limits; data_gen's sampler, --seed), FK'd with iklab's fk. The reference is ssik built from
the model's own DH table (`Manipulator.from_dh`, tests/ssik_reference.py), trusted only once its
FK equals iklab's to 1e-9 on 100 joint vectors: its branches of each pose, those a turn of 2*pi
brings inside the joint limits. Figures:
- coverage: the share of those branches solve_all returns (every joint within 1e-3 rad, modulo
  2*pi); extra: solve_all rows matching no ssik branch; wrong: solve_all rows iklab's FK does not
  confirm (1e-5 m, 0.01 deg, inside the limits): must be 0;
- time per pose at 1, 100 and 1,000 poses per call: solve_all and ssik (one pose per call: it has
  no batch API; the bare `solve` calls, without mapping its answers to iklab's joints or limits),
  in this process, each timed pass over every pose once per round, rounds interleaved (the
  machine is shared: a burst of load falls on all alike), the fastest of --repeats rounds;
- ssik's shipped solvers on their own arms' poses (time only: a different Jaco, JACO 2, and
  ssik's Puma 560): the speed ratio is taken against the faster of the two ssik builds;
- the missed branches: smallest singular value of the Jacobian there, margin to the joint
  limits, the nearest solve_all row (which joints differ), another ssik branch within solve_all's
  1 deg duplicate radius, and the network's nearest raw component;
- solve_all with complete_pairs=False (no search for a pose's missing twin; on Jaco, whose joints
  all turn fully, solve_all looks for one where it found an odd number), and with min_weight=0
  (every component refined, the light ones too), 1,000 poses per call: the coverage each adds,
  and its time.

Run: .venv/bin/python bench/bench_ssik.py --model-puma560 URI --model-jaco URI [--poses 1000]
     (URI: runs:/<run id>/model, models:/..., or a local model directory; MLFLOW_TRACKING_URI
     names the store)
"""

import argparse
import json
import math
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the helpers the reference test checks (tests/ssik_reference.py)

import numpy as np  # noqa: E402
import ssik  # noqa: E402
from ssik_reference import (  # noqa: E402
    MATCH_RAD,
    dh_targets,
    inside_limits,
    joint_gaps,
    manipulator,
    matched,
    pose_errors,
    ssik_fk,
    to_iklab_joints,
)

from data_gen.generate import sample_joints  # noqa: E402
from iklab.core.kinematics import fk, jacobian  # noqa: E402
from iklab.core.regions import region_preset  # noqa: E402
from iklab.core.solution_sets import DISTINCT_RAD  # noqa: E402
from iklab.robot.solver import IKSolver  # noqa: E402

BATCH_SIZES = (1, 100, 1000)
SHIPPED = {"puma560": "puma560_ik", "jaco": "jaco2_ik"}  # ssik's own builds of (other) such arms
TARGET_SPEEDUP = {"jaco": 5.0}  # issue 26: Jaco's solve_all >= 5x ssik at 1,000 poses per call
TOLERANCE_M, TOLERANCE_RAD = 1e-5, math.radians(0.01)  # solve_all's defaults: what "exact" means here
NEAR_SINGULAR = 0.02  # smallest singular value of the Jacobian below this: next to a singularity
NEAR_LIMIT_RAD = math.radians(2.0)


@dataclass
class ArmFigures:
    """One arm's figures, printed and written with --json."""

    robot: str
    poses: int
    ssik_solutions_per_pose: float  # every branch, before the joint limits
    reference_solutions: int  # inside the joint limits: what coverage counts
    covered: int
    covered_1deg: int  # within solve_all's own duplicate radius (1 deg) instead of 1e-3 rad
    extra: tuple  # (solve_all rows matching no ssik branch, those with no ssik branch at all within 1 deg)
    wrong: tuple  # (rows iklab's FK rejects, worst position error m, worst rotation error rad)
    solve_all_us: dict  # poses per call -> microseconds per pose
    ssik_us: float  # ssik from_dh, one pose per call
    shipped_us: float  # ssik's shipped solver of the same family, its own poses
    shipped_solutions_per_pose: float
    missed: dict  # how the missed branches look
    variants: dict  # VARIANTS' name -> that solve_all at the largest batch: coverage and time

    @property
    def coverage(self) -> float:
        return self.covered / self.reference_solutions


def fk_check(robot: object, arm: ssik.Manipulator, seed: int) -> float:
    """Largest difference between ssik's FK and iklab's on 100 joint vectors: the reference is
    trusted only when it is machine precision."""
    q = np.random.default_rng(seed).uniform(robot.qlim[0], robot.qlim[1], size=(100, 6))
    return float(np.abs(ssik_fk(robot, arm, q) - fk(robot, q)).max())


def timed_rounds(repeats: int, works: dict) -> dict:
    """Each of ``works`` (name -> callable) once per round, ``repeats`` rounds, interleaved so
    that a burst of load from other processes falls on all of them alike -> name -> (its fastest
    round's seconds, its last answer)."""
    best, last = dict.fromkeys(works, math.inf), {}
    for _ in range(repeats):
        for name, work in works.items():
            started = time.perf_counter()
            last[name] = work()
            best[name] = min(best[name], time.perf_counter() - started)
    return {name: (best[name], last[name]) for name in works}


# solve_all with one default changed: what each default adds to the coverage, at what time
VARIANTS = {
    "without_pairs": ({"complete_pairs": False}, "no search for a missing twin (complete_pairs=False)"),
    "every_component": ({"min_weight": 0.0}, "every component refined, the light ones too (min_weight=0)"),
}


def solve_all_work(solver: IKSolver, poses: np.ndarray, size: int, **options: float) -> object:
    """solve_all over every pose, ``size`` poses per call -> each pose's solutions ``(m, 6)``."""
    chunks = [poses[i : i + size] for i in range(0, len(poses), size)]
    return lambda: [r.q for c in chunks for r in solver.solve_all(c, **options)]


def ssik_work(solve: object, targets: np.ndarray) -> object:
    """ssik one pose per call (it has no batch API), every branch (no limits: iklab applies its
    own), the bare calls: mapping the answers to iklab's joints is left out of its time."""
    return lambda: [solve(t, respect_limits=False) for t in targets]


def shipped_targets(robot_name: str, n: int, seed: int) -> tuple[ssik.Manipulator, np.ndarray]:
    """ssik's shipped solver for an arm of this family and ``n`` poses of its own (joints
    uniform in its limits, a joint without limits in [-pi, pi], FK'd by it)."""
    arm = ssik.Manipulator.from_prebuilt(SHIPPED[robot_name])
    limits = [(-math.pi, math.pi) if lim is None else lim for lim in arm.joint_limits]
    low, high = np.array(limits, dtype=np.float64).T
    q = np.random.default_rng(seed).uniform(low, high, size=(n, arm.dof))
    return arm, np.array([arm.fk(row) for row in q])


def set_figures(found: list, reference: list, seconds: float) -> dict:
    """Coverage (1e-3 rad and 1 deg), solutions per pose and time per pose of one solve_all variant."""
    n_ref = sum(len(r) for r in reference)
    return {
        "coverage": sum(int(matched(f, r).sum()) for f, r in zip(found, reference, strict=True)) / n_ref,
        "coverage_1deg": sum(int(matched(f, r, DISTINCT_RAD).sum()) for f, r in zip(found, reference, strict=True))
        / n_ref,
        "odd_poses": sum(len(f) % 2 for f in found),
        "solutions_per_pose": sum(len(f) for f in found) / len(found),
        "us_per_pose": 1e6 * seconds / len(found),
    }


def wrong_rows(robot: object, poses: np.ndarray, found: list[np.ndarray]) -> tuple[int, float, float]:
    """solve_all rows iklab's FK does not confirm (or outside the limits), and the worst errors."""
    rows = np.concatenate([f for f in found if len(f)] or [np.zeros((0, 6))])
    if not len(rows):
        return 0, 0.0, 0.0
    owners = np.repeat(np.arange(len(poses)), [len(f) for f in found])
    position_m, rotation_rad = pose_errors(fk(robot, rows), poses[owners])
    outside = np.any((rows < robot.qlim[0]) | (rows > robot.qlim[1]), axis=1)
    bad = (position_m > TOLERANCE_M) | (rotation_rad > TOLERANCE_RAD) | outside
    return int(bad.sum()), float(position_m.max()), float(rotation_rad.max())


def bounded_joints(robot: object) -> np.ndarray:
    """``(6,)`` bool: the joints whose range is narrower than a turn (a full turn's bounds are no
    stop: the angle wraps)."""
    return (robot.qlim[1] - robot.qlim[0]) < 2 * math.pi - 1e-9


def limit_margin(robot: object, q: np.ndarray) -> np.ndarray:
    """``(M,)`` radians from the nearest joint limit of a :func:`bounded_joints` joint; inf
    where there are none."""
    bounded = bounded_joints(robot)
    if not bounded.any():
        return np.full(len(q), math.inf)
    return np.minimum(q - robot.qlim[0], robot.qlim[1] - q)[:, bounded].min(axis=1)


def network_answers(solver: IKSolver, poses: np.ndarray) -> np.ndarray:
    """The network's raw answers (every mixture component, unrefined) ``(N, K, 6)``."""
    from iklab.core.encodings import decode_candidates, encode_pose_matrices

    features = encode_pose_matrices(poses, solver.input_encoding, solver.robot)
    return decode_candidates(solver.network(features), solver.output_encoding)[1]


def nearest_gap(candidates: np.ndarray, row: np.ndarray) -> tuple[float, np.ndarray]:
    """The nearest of ``candidates`` ``(K, 6)`` to ``row`` (largest joint gap, modulo 2*pi):
    (that gap, its per-joint gaps ``(6,)``); (inf, inf) without candidates."""
    if not len(candidates):
        return math.inf, np.full(6, math.inf)
    gaps = joint_gaps(candidates, row[None])[0]
    best = int(gaps.max(axis=1).argmin())
    return float(gaps[best].max()), gaps[best]


def classify_misses(reference, found, owner, rows, hit, columns) -> tuple[dict, dict, list]:
    """Each missed branch: 'merged' (another ssik branch of its pose within 1 deg: solve_all
    keeps one of such a pair), 'imprecise' (a solve_all row within 1 deg, not 1e-3 rad), 'absent'
    (nothing within 1 deg) or 'pose_empty'; per kind, which joints the nearest solve_all row has
    off by > 1e-3 rad -> (counts, joint patterns per kind, one example row per miss)."""
    kinds = {"merged": 0, "imprecise": 0, "absent": 0, "pose_empty": 0}
    patterns, examples = {kind: {} for kind in kinds}, []
    for i in np.flatnonzero(~hit):
        p = owner[i]
        gap, joints = nearest_gap(found[p], rows[i])
        twins = int((joint_gaps(reference[p], rows[i][None])[0].max(axis=1) <= DISTINCT_RAD).sum()) - 1
        kind = (
            "pose_empty"
            if not len(found[p])
            else "merged"
            if twins
            else "imprecise"
            if gap <= DISTINCT_RAD
            else "absent"
        )
        kinds[kind] += 1
        pattern = ",".join(str(j) for j in np.flatnonzero(joints > MATCH_RAD)) or "-"
        patterns[kind][pattern] = patterns[kind].get(pattern, 0) + 1
        examples.append((int(p), kind, *(float(c[i]) for c in columns), gap, pattern))
    return kinds, {k: _by_count(v) for k, v in patterns.items() if v}, examples


def characterize(robot, reference, found, raw, hit) -> dict:
    """How the missed branches differ from all branches: the smallest singular value of the
    Jacobian and the joints of its null direction, limit margins, :func:`classify_misses`, and the
    network's nearest raw component (did it propose the branch at all?)."""
    rows = np.concatenate(reference)
    owner = np.repeat(np.arange(len(reference)), [len(r) for r in reference])
    _, singular, right = np.linalg.svd(jacobian(robot, rows))
    sigma, null = singular[:, -1], np.abs(right[:, -1, :])  # the joint motion that moves the tool least
    margin = limit_margin(robot, rows)
    raw_gap = np.array([nearest_gap(raw[p], r)[0] for p, r in zip(owner, rows, strict=True)])
    kinds, patterns, examples = classify_misses(reference, found, owner, rows, hit, (sigma, margin, raw_gap))
    missed, singular_rows = ~hit, sigma < NEAR_SINGULAR
    null_joints = [",".join(str(j) for j in np.flatnonzero(v > 0.3)) for v in null]

    def share(mask: np.ndarray, within: np.ndarray) -> float:
        return float(mask[within].mean()) if within.any() else math.nan

    bounded = np.isfinite(margin).any()  # a joint narrower than a turn: limits to be near

    return {
        "missed": int(missed.sum()),
        "kinds": kinds,
        "joints_off_from_nearest_found": patterns,
        "sigma_min_median": {"missed": _median(sigma[missed]), "all": _median(sigma)},
        "near_singular_share": {"missed": share(singular_rows, missed), "all": share(singular_rows, hit | missed)},
        "null_direction_joints_near_singular": {
            "missed": _by_count(Counter(null_joints[i] for i in np.flatnonzero(missed & singular_rows))),
            "all": _by_count(Counter(null_joints[i] for i in np.flatnonzero(singular_rows))),
        },
        "near_limit_share": {
            "missed": share(margin < NEAR_LIMIT_RAD, missed) if bounded else math.nan,
            "all": share(margin < NEAR_LIMIT_RAD, hit | missed) if bounded else math.nan,
        },
        "raw_component_gap_median_rad": {"missed": _median(raw_gap[missed]), "covered": _median(raw_gap[hit])},
        "raw_component_within_0.3_rad_share": {
            "missed": share(raw_gap <= 0.3, missed),
            "covered": share(raw_gap <= 0.3, hit),
        },
        "by_kind": by_kind(examples),
        "coverage_by_branches_per_pose": coverage_by_count(reference, hit, owner),
        "examples": sorted(examples, key=lambda e: e[2])[:8],
    }


def by_kind(examples: list) -> dict:
    """Per kind of miss: count, median smallest singular value, median gap to the network's
    nearest raw component and the share of misses with one within 0.3 rad."""
    out = {}
    for kind in dict.fromkeys(e[1] for e in examples):
        sigma, raw = (np.array([e[i] for e in examples if e[1] == kind]) for i in (2, 4))
        out[kind] = {
            "count": len(sigma),
            "sigma_min_median": _median(sigma),
            "raw_gap_median_rad": _median(raw),
            "raw_within_0.3_rad": float(np.mean(raw <= 0.3)),
        }
    return out


def coverage_by_count(reference: list, hit: np.ndarray, owner: np.ndarray) -> dict:
    """Coverage of the poses with m branches inside the limits, for each m: (covered, branches)."""
    counts = np.array([len(r) for r in reference])[owner]
    return {int(m): (int(hit[counts == m].sum()), int((counts == m).sum())) for m in np.unique(counts)}


def _by_count(counts: dict) -> dict:
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def _median(values: np.ndarray) -> float:
    return float(np.median(values)) if len(values) else math.nan


def extra_rows(branches: list[np.ndarray], found: list[np.ndarray], hits_found: list[np.ndarray]) -> tuple[int, int]:
    """solve_all rows matching no ssik branch inside the limits: (all of them, those with no ssik
    branch at all, before the limits, within 1 deg: a branch ssik itself did not return)."""
    extra = unknown = 0
    for every, mine, mine_hit in zip(branches, found, hits_found, strict=True):
        for row in mine[~mine_hit]:
            extra += 1
            unknown += nearest_gap(every, row)[0] > DISTINCT_RAD
    return extra, unknown


def measure(solver: IKSolver, arm: ssik.Manipulator, poses: np.ndarray, args: argparse.Namespace) -> dict:
    """Every timed call of one arm, interleaved (:func:`timed_rounds`)."""
    name = solver.robot.name
    shipped_arm, own_targets = shipped_targets(name, len(poses), args.seed + 2)
    works = {"ssik": ssik_work(arm.solve, dh_targets(solver.robot, poses))}
    works["shipped"] = ssik_work(shipped_arm.solve, own_targets)
    works.update({size: solve_all_work(solver, poses, size) for size in BATCH_SIZES})
    works.update(
        {name: solve_all_work(solver, poses, BATCH_SIZES[-1], **options) for name, (options, _) in VARIANTS.items()}
    )
    return timed_rounds(args.repeats, works)


def run_arm(name: str, uri: str, args: argparse.Namespace) -> ArmFigures:
    solver = IKSolver.load(uri, robot=name)
    robot, arm = solver.robot, manipulator(solver.robot)
    fk_gap = fk_check(robot, arm, args.seed + 1)
    if not fk_gap <= 1e-9:
        sys.exit(f"{name}: ssik's FK of the DH table differs from iklab's by {fk_gap:.2e}: not a reference")
    q = sample_joints(region_preset(robot, "full"), args.seed, 0, args.poses)
    poses = fk(robot, q)
    timings = measure(solver, arm, poses, args)
    branches = [to_iklab_joints(robot, [s.q for s in a]) for a in timings["ssik"][1]]
    reference = [inside_limits(robot, b) for b in branches]
    found = timings[BATCH_SIZES[-1]][1]
    hits = [matched(f, r) for f, r in zip(found, reference, strict=True)]
    print(f"{name}: model {uri}; {len(poses)} poses, joints uniform in the joint limits (seed {args.seed})")
    print_reference(robot, arm, poses, q, branches, reference, fk_gap)
    figures = ArmFigures(
        robot=name,
        poses=len(poses),
        ssik_solutions_per_pose=sum(len(b) for b in branches) / len(poses),
        reference_solutions=sum(len(r) for r in reference),
        covered=int(sum(h.sum() for h in hits)),
        covered_1deg=int(sum(matched(f, r, DISTINCT_RAD).sum() for f, r in zip(found, reference, strict=True))),
        extra=extra_rows(branches, found, [matched(r, f) for f, r in zip(found, reference, strict=True)]),
        wrong=wrong_rows(robot, poses, found),
        solve_all_us={size: 1e6 * timings[size][0] / len(poses) for size in BATCH_SIZES},
        ssik_us=1e6 * timings["ssik"][0] / len(poses),
        shipped_us=1e6 * timings["shipped"][0] / len(poses),
        shipped_solutions_per_pose=float(np.mean([len(a) for a in timings["shipped"][1]])),
        missed=characterize(robot, reference, found, network_answers(solver, poses), np.concatenate(hits)),
        variants={name: set_figures(timings[name][1], reference, timings[name][0]) for name in VARIANTS},
    )
    print_coverage(figures, found)
    print_timing(figures)
    print_missed(figures.missed)
    return figures


def print_reference(robot, arm, poses, q, branches, reference, fk_gap) -> None:
    """ssik's branches: how many, how exact through iklab's FK, and whether the sampled joints are among them."""
    every = np.concatenate(branches)
    owners = np.repeat(np.arange(len(poses)), [len(b) for b in branches])
    branch_m, branch_rad = pose_errors(fk(robot, every), poses[owners])
    generating = sum(bool(matched(r, s[None])[0]) for r, s in zip(reference, q, strict=True))
    print(
        f"  ssik from_dh ({arm.solver_name}): FK against iklab's {fk_gap:.1e}; {len(every) / len(poses):.2f} "
        f"branches per pose, {sum(len(r) for r in reference) / len(poses):.2f} inside the limits; worst branch "
        f"through iklab's FK {branch_m.max():.1e} m, {branch_rad.max():.1e} rad; sampled joints among them: "
        f"{generating}/{len(poses)}"
    )


def print_coverage(f: ArmFigures, found: list) -> None:
    (extra, unknown), (wrong, worst_m, worst_rad) = f.extra, f.wrong
    print(
        f"  solve_all: {sum(len(x) for x in found) / f.poses:.2f} per pose; coverage {f.coverage:.2%} "
        f"({f.covered}/{f.reference_solutions}; within 1 deg {f.covered_1deg / f.reference_solutions:.2%}); "
        f"extra {extra} ({unknown} with no ssik branch within 1 deg); wrong {wrong} (worst {worst_m:.1e} m, "
        f"{math.degrees(worst_rad):.1e} deg); poses with none: {sum(not len(x) for x in found)}"
    )
    print(f"  odd solution counts: {sum(len(x) % 2 for x in found)} poses")
    for name, (_, what) in VARIANTS.items():
        r = f.variants[name]
        print(
            f"  {what}, {BATCH_SIZES[-1]} per call: coverage {r['coverage']:.2%} (within 1 deg "
            f"{r['coverage_1deg']:.2%}), {r['odd_poses']} odd, {r['solutions_per_pose']:.2f} per pose, "
            f"{r['us_per_pose']:.1f} us per pose"
        )


def print_timing(f: ArmFigures) -> None:
    print("  microseconds per pose at 1 / 100 / 1000 poses per call:")
    print("    solve_all" + "".join(f"{f.solve_all_us[s]:10.1f}" for s in BATCH_SIZES))
    print(f"    ssik from_dh, same poses, one per call (no batch API){f.ssik_us:10.1f}")
    print(
        f"    ssik shipped {SHIPPED[f.robot]}, its own poses, one per call{f.shipped_us:10.1f} "
        f"({f.shipped_solutions_per_pose:.2f} branches per pose)"
    )
    fastest = min(f.ssik_us, f.shipped_us)
    for size in BATCH_SIZES:
        print(f"    faster ssik / solve_all at {size} per call: {fastest / f.solve_all_us[size]:.2f}x")
    target = TARGET_SPEEDUP.get(f.robot)
    if target:
        ratio = fastest / f.solve_all_us[BATCH_SIZES[-1]]
        print(f"    target {target:.0f}x at {BATCH_SIZES[-1]} per call: {'met' if ratio >= target else 'MISSED'}")


def print_missed(m: dict) -> None:
    if not m["missed"]:
        print("  missed branches: none")
        return
    print(f"  missed branches: {m['missed']}: {m['kinds']}")
    for kind, patterns in m["joints_off_from_nearest_found"].items():
        print(f"    {kind}: joints (0-5) off by > 1e-3 rad in the nearest solve_all row: {_top(patterns)}")
    for key in ("sigma_min_median", "near_singular_share", "near_limit_share"):
        print(f"    {key}: " + ", ".join(f"{k} {v:.3g}" for k, v in m[key].items()))
    for who, patterns in m["null_direction_joints_near_singular"].items():
        print(f"    joints of the Jacobian's null direction, near-singular branches, {who}: {_top(patterns)}")
    for key in ("raw_component_gap_median_rad", "raw_component_within_0.3_rad_share"):
        print(f"    {key}: " + ", ".join(f"{k} {v:.3g}" for k, v in m[key].items()))
    for kind, figures in m["by_kind"].items():
        print(f"    {kind}: " + ", ".join(f"{k} {v:.3g}" for k, v in figures.items()))
    shares = (f"{m_}: {c / t:.1%} of {t}" for m_, (c, t) in m["coverage_by_branches_per_pose"].items())
    print("    coverage by the pose's branch count inside the limits: " + "; ".join(shares))
    print("    lowest sigma_min: pose, kind, sigma_min, limit margin rad, nearest raw rad, nearest found rad, joints")
    for e in m["examples"]:
        print(f"      {e[0]:5d} {e[1]:10s} {e[2]:9.2e} {e[3]:8.3f} {e[4]:8.3f} {e[5]:8.3f}  {e[6]}")


def _top(counts: dict, n: int = 6) -> str:
    shown = ", ".join(f"[{k}] {v}" for k, v in list(counts.items())[:n])
    rest = sum(list(counts.values())[n:])
    return shown + (f", others {rest}" if rest else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-puma560", required=True, help="MLflow URI or model directory")
    parser.add_argument("--model-jaco", required=True, help="MLflow URI or model directory")
    parser.add_argument("--poses", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=26, help="joint sampler's seed (the datasets use 0)")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds; the fastest counts")
    parser.add_argument("--threads", type=int, default=0, help="numba's and ssik's threads (0: their defaults)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    started = time.perf_counter()
    set_threads(args.threads)
    figures = [run_arm(name, uri, args) for name, uri in (("puma560", args.model_puma560), ("jaco", args.model_jaco))]
    wall = time.perf_counter() - started
    print(f"wall time {wall:.0f} s")
    if args.json:
        payload = {"args": {k: str(v) for k, v in vars(args).items()}, "wall_s": wall}
        payload["arms"] = [{**vars(f), "coverage": f.coverage} for f in figures]
        args.json.write_text(json.dumps(payload, indent=1, default=str))


def set_threads(threads: int) -> None:
    import numba
    from ssik import _ssik_native

    if threads:
        numba.set_num_threads(threads)
        _ssik_native.set_max_threads(threads)
    print(f"threads: numba {numba.get_num_threads()}, ssik native {_ssik_native.get_max_threads()} (0: auto)")


if __name__ == "__main__":
    main()

"""Find and justify Jaco's default single-branch working region (rerun to reproduce it).

The general method, for any arm, is `python -m data_gen region` (data_gen/region.py, which holds
the det J scan and the peel this script uses); this script keeps Jaco's own study: the eight
branch families, the "front", and the table of hand-picked candidate boxes.

    .venv/bin/python bench/region_search.py            # scan + candidates + verification, ~2 min
    .venv/bin/python bench/region_search.py --no-verify   # scan + candidates only, ~75 s

Joints are numbered q1..q6 here (joint 1 is the base), as in Kinova's and the
robotics literature's usage; the README and the datasets count q0..q5, so the
README's q0 is this script's q1.

A network can only learn IK where IK is single-valued, so the `working`
preset must be a joint box that holds one IK branch. Branches of a 6R arm
meet on singular configurations (det J = 0): a connected box on which
det J keeps one sign maps each of its poses back to one configuration
locally, and in practice (checked below) globally. The search:

1. Family. Jaco's joints 2 and 3 have parallel axes, so the arm has the
   usual shoulder x elbow x wrist branch families. With the box limited to
   the model's qlim [-180, 180] on every joint (custom_region refuses
   anything wider, so no joint range may straddle +-180), the families are:
   upper arm leaning toward the hand (q2 in [90, 180], past vertical would
   need q2 > 180) or away (q2 in [-180, -90]); elbow
   q3 in (0, 180) or (-180, 0); wrist q5 > 0 or q5 < 0. Step 1 measures all
   eight on a common box: only "lean toward the hand, q3 < 0" (and its mirror
   image, leaning away with q3 > 0) avoids the shoulder singularity, which
   sits in the middle of the other two families (the "reach back over the
   top" posture of Kinova's factory home, q = [275, 167, 57, 241, 83, 76]).
2. Singularity scan. On that family, sample 200k configurations, compute
   det J (central differences of our batched FK) and print, per 5-degree
   bin of each joint, the % whose sign disagrees with the majority.
   Singular surfaces show up as bands: elbow stretched (q3 near -180) and
   folded (q3 near 0), wrist axes 4 and 6 aligned (q5 near 0 and -180).
   q1 and q6 never enter det J. Then peel: cut 5 degrees off whichever edge
   (q2..q5, either side) has the most disagreeing samples, until < 0.05% of
   the box disagrees. It only ever cuts q3 and q5 and ends at
   q3 [-165, -30], q5 [-165, -15]; q2 keeps [90, 180] and q4 stays whole.
   q4 and q6 are then trimmed to [-175, 175]: datasets store raw angles, and
   a full turn would put a 360-degree jump in the targets at +-180.
3. Candidates. A table of boxes, each measured with the project's
   `measure_ambiguity` (multi-start ik_LM) and the workspace measure below:
   the old placeholder, the whole family, the chosen box, each edge pushed
   5-10 deg toward its singular band, q2 below horizontal or past vertical,
   narrower wrist roll, and base-joint growth.
4. Verification of the chosen box with more poses and more starts.

"In front". roboticstoolbox's Jaco() takes Kinova's own joint angles in
Kinova's base frame: Kinova's factory home angles [275, 167, 57, 241, 83, 76]
put the hand at (0.22, -0.26, 0.51) m, in front of and beside the base. The
model has no mechanical front, so we take the direction the arm reaches in
ordinary use: a top-down grasp recorded for a Jaco2 6-DOF (j2n6s300) in a
public kinova-ros user script, object at (0.5, 0, 0.26) m, has q1 = 6 deg,
and this model puts its hand at (0.50, 0.00, 0.25) m: the arm reaching
forward with q1 = 0 points along +x. So front = +x (the home pose is also in
that half, x > 0). In the chosen family the hand's azimuth is about -q1
(joint 1 is flipped), so q1 in [-90, 90] sweeps the whole front half-space;
wider q1 only adds volume beside and behind the base (see the q1 rows).

Kinova's home pose itself is not in the box: all its IK solutions sit within
~10 deg of the shoulder singularity (in the chosen family it needs q2 = 192,
upper arm leaning back past vertical; the box stops at q2 = 180, where the
det J scan is still clean and which is also the model's qlim).

Workspace measure (columns of the candidate table), from 400k configurations
sampled uniformly in the box (seed 0), end-effector positions from FK:
  vol_L     occupied 4 cm voxels x 0.064 litres (all positions). 2 cm voxels
            are badly sample-limited at this count (a 2 cm count keeps growing
            by ~60% from 200k to 800k samples); 4 cm still undercounts by
            ~5% vs 1.6M samples, so compare boxes only at equal sampling.
  front_L   the part of vol_L whose voxel centres have x > 0 and z > 0 (in
            front of the robot, above its base plane): the "useful workspace".
  front%    fraction of samples with x > 0 and z > 0 (how much of a dataset
            drawn from the box lands in the useful workspace).
  approach% orientation spread: share of 288 equal-area cells (12 bands in
            cos(polar) x 24 sectors, ~12 deg) on the sphere of tool z-axis
            (approach) directions hit by the front samples (saturates at 100%
            once q4 and q6 are wide).
  down_L    front_L voxels in which some sample points the tool z-axis within
            30 deg of straight down (top-down grasps, as on a table); sample-
            limited like vol_L, so it favours boxes that sample densely.
Ambiguity columns: `measure_ambiguity` (threshold 5 deg, starts inside the
box); det- is the det J minority-sign fraction on 20k samples (0 means no
singular surface was seen inside the box).
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np

from data_gen.ambiguity import measure_ambiguity
from data_gen.region import det_minority, det_sign, peel
from iklab.core.kinematics import Robot, fk, fk_rotation_translation, load_robot, to_rtb
from iklab.core.regions import Region, region_preset

DEG = math.pi / 180.0
FRONT = np.array([1.0, 0.0, 0.0])  # +x, see the module docstring

# Step 1: the common box on which the eight branch families are compared.
FAMILY_Q1, FAMILY_Q4, FAMILY_Q6 = (-90.0, 90.0), (-180.0, 180.0), (-180.0, 180.0)
Q2_SIDES = {"toward": (90.0, 180.0), "away": (-180.0, -90.0)}
Q3_SIDES = {"q3>0": (0.0, 180.0), "q3<0": (-180.0, 0.0)}
Q5_SIDES = {"q5>0": (0.0, 180.0), "q5<0": (-180.0, 0.0)}

# The chosen family, whole: q2 toward the hand, q3 < 0, q5 < 0.
# q5 < 0 rather than q5 > 0 (same ambiguity and workspace by the wrist's
# symmetry) so that the kinova-ros top-down grasp configuration lies inside.
FAMILY = ((-90, 90), (90, 180), (-180, 0), (-180, 180), (-180, 0), (-180, 180))


def _preset_degrees(name: str) -> tuple:
    region = region_preset(load_robot("jaco"), name)
    return tuple(
        zip(np.degrees(region.lower).round(6).tolist(), np.degrees(region.upper).round(6).tolist(), strict=True)
    )


# The box this search chose, as shipped in iklab.core.regions (Jaco's `working` preset).
CHOSEN = _preset_degrees("working")

# Configurations named in the docstring (degrees).
KINOVA_HOME = (275.35, 167.43, 57.25, 240.86, 82.95, 75.60)
ROS_TOP_GRASP = (6.01, 145.63, 261.56, 21.80, -70.65, 40.26)


def box(bounds) -> tuple[np.ndarray, np.ndarray]:
    b = np.asarray(bounds, float)
    return b[:, 0], b[:, 1]


def fmt_bounds(lower_deg, upper_deg) -> str:
    return " ".join(f"[{lo:.0f},{hi:.0f}]" for lo, hi in zip(lower_deg, upper_deg, strict=True))


def det_profile(robot: Robot, bounds, n: int = 200_000, seed: int = 0, bin_deg: float = 5.0):
    """Print, per joint and 5-degree bin, the % of samples whose det J sign disagrees with the majority.

    Returns the samples (degrees) and their disagreement flags for :func:`peel`.
    """
    lower, upper = box(bounds)
    rng = np.random.default_rng(seed)
    q_deg = rng.uniform(lower, upper, size=(n, 6))
    sign = det_sign(robot, q_deg)
    majority = 1.0 if np.mean(sign > 0) >= 0.5 else -1.0
    disagree = sign != majority
    print(f"  {n} samples, majority sign of det J: {'+' if majority > 0 else '-'}, disagreeing: {disagree.mean():.2%}")
    for j in range(6):
        edges = np.arange(lower[j], upper[j] + 1e-9, bin_deg)
        idx = np.clip(np.digitize(q_deg[:, j], edges) - 1, 0, len(edges) - 2)
        frac = [disagree[idx == k].mean() for k in range(len(edges) - 1)]
        print(f"  q{j + 1} [{lower[j]:.0f},{upper[j]:.0f}]: " + " ".join(f"{100 * f:.0f}" for f in frac))
    return q_deg, disagree


# --- workspace ----------------------------------------------------------------


def workspace(
    robot: Robot, lower_deg, upper_deg, n: int = 400_000, seed: int = 0, voxel: float = 0.04
) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    q = rng.uniform(np.asarray(lower_deg) * DEG, np.asarray(upper_deg) * DEG, size=(n, 6))
    rot, pos = fk_rotation_translation(robot, q)
    cells, inverse = np.unique(np.floor(pos / voxel).astype(np.int64), axis=0, return_inverse=True)
    inverse = inverse.ravel()
    centres = (cells + 0.5) * voxel
    litre = voxel**3 * 1000.0
    front_cell = (centres @ FRONT > 0) & (centres[:, 2] > 0)
    front_sample = (pos @ FRONT > 0) & (pos[:, 2] > 0)
    approach = rot[:, :, 2]
    a = approach[front_sample]
    band = np.clip(((a[:, 2] + 1) / 2 * 12).astype(int), 0, 11)
    sector = np.clip(((np.arctan2(a[:, 1], a[:, 0]) + math.pi) / (2 * math.pi) * 24).astype(int), 0, 23)
    down = approach[:, 2] < -math.cos(30 * DEG)
    down_cells = np.zeros(len(cells), bool)
    down_cells[inverse[down]] = True
    return {
        "vol_L": len(cells) * litre,
        "front_L": float(front_cell.sum() * litre),
        "front_frac": float(front_sample.mean()),
        "approach_cov": len(np.unique(band * 24 + sector)) / 288.0,
        "down_L": float((down_cells & front_cell).sum() * litre),
    }


# --- candidates ---------------------------------------------------------------


def candidates() -> list[tuple[str, list, list]]:
    out = []

    def add(name, bounds):
        lo, hi = box(bounds)
        out.append((name, lo, hi))

    chosen = [list(b) for b in CHOSEN]

    def vary(name, joint, lo=None, hi=None):
        b = [list(x) for x in chosen]
        if lo is not None:
            b[joint][0] = lo
        if hi is not None:
            b[joint][1] = hi
        add(name, b)

    add("placeholder (old _WORKING_DEG)", ((-60, 60), (120, 240), (30, 150), (-90, 90), (-90, 90), (-90, 90)))
    add("family, whole (q3, q5 to the singular bands)", FAMILY)
    add("CHOSEN", CHOSEN)
    vary("q3 lower -170 (toward stretched arm)", 2, lo=-170)
    vary("q3 upper -20 (toward folded arm)", 2, hi=-20)
    vary("q3 upper -10", 2, hi=-10)
    vary("q5 [-170,-10] (toward wrist alignment)", 4, lo=-170, hi=-10)
    vary("q2 lower 60 (upper arm below horizontal)", 1, lo=60)
    vary("q2 upper 200 (past vertical; beyond qlim, Region only)", 1, hi=200)
    vary("q1 +-60", 0, lo=-60, hi=60)
    vary("q1 +-120", 0, lo=-120, hi=120)
    vary("q1 +-175 (base all round)", 0, lo=-175, hi=175)
    vary("q4, q6 +-90 (narrow wrist roll)", 3, lo=-90, hi=90)
    out[-1][1][5], out[-1][2][5] = -90, 90
    return out


def measure(robot: Robot, name, lower_deg, upper_deg, poses, starts, seed) -> dict:
    # Region, not custom_region: the old placeholder has q2 up to 240 (beyond qlim).
    region = Region(name, np.asarray(lower_deg, float) * DEG, np.asarray(upper_deg, float) * DEG)
    return measure_ambiguity(robot, region, n_poses=poses, n_starts=starts, seed=seed).to_dict()


def print_row(name, lower_deg, upper_deg, amb, ws, det):
    print(
        f"{name}\n    {fmt_bounds(lower_deg, upper_deg)}\n"
        f"    ambiguous {amb['ambiguous_fraction']:6.2%}  distinct {amb['mean_distinct_solutions']:.3f}"
        f"  det- {det:6.2%} | vol {ws['vol_L']:5.0f} L  front {ws['front_L']:5.0f} L"
        f"  front% {ws['front_frac']:4.0%}  approach% {ws['approach_cov']:4.0%}  down {ws['down_L']:4.0f} L",
        flush=True,
    )


def reachable(robot: Robot, region: Region, q_deg, starts: int = 64, seed: int = 0) -> np.ndarray | None:
    """An IK solution of fk(q_deg) inside ``region`` (degrees), or None."""
    target = fk(robot, np.asarray([q_deg], float) * DEG)[0]
    ets = to_rtb(robot).ets()
    rng = np.random.default_rng(seed)
    for s in rng.uniform(region.lower, region.upper, size=(starts, 6)):
        sol = ets.ik_LM(target, q0=s, tol=1e-10, slimit=1, ilimit=60, joint_limits=False)
        q = np.asarray(sol.q)[None]
        err = np.linalg.norm(fk(robot, q)[0] - target)
        if err < 1e-5 and region.contains(q)[0]:
            return region.canonical(q)[0] / DEG
    return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--poses", type=int, default=1000, help="poses per candidate (default 1000)")
    ap.add_argument("--starts", type=int, default=32, help="IK starts per pose for candidates (default 32)")
    ap.add_argument("--no-verify", action="store_true", help="skip the final verification runs")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    robot = load_robot("jaco")

    print("== front: where the model puts known Kinova configurations")
    for label, q in (("Kinova factory home", KINOVA_HOME), ("kinova-ros top-down grasp", ROS_TOP_GRASP)):
        p = fk(robot, np.asarray([q]) * DEG)[0, :3, 3]
        print(f"  {label:26s} q={np.round(q, 1).tolist()} -> hand at {np.round(p, 3).tolist()} m")
    print("  front = +x (q1 = 0 reaching forward); hand azimuth ~ -q1 in the chosen family")

    print(
        f"\n== step 1: branch families (q1 {FAMILY_Q1}, q4/q6 full; {args.poses // 2} poses x "
        f"{args.starts} starts, seed 0)"
    )
    for (n2, s2), (n3, s3), (n5, s5) in (
        (a, b, c) for a in Q2_SIDES.items() for b in Q3_SIDES.items() for c in Q5_SIDES.items()
    ):
        lo, hi = box((FAMILY_Q1, s2, s3, FAMILY_Q4, s5, FAMILY_Q6))
        amb = measure(robot, "family", lo, hi, args.poses // 2, args.starts, 0)
        print(
            f"  q2 {n2:6s} {n3} {n5}: ambiguous {amb['ambiguous_fraction']:6.2%}  distinct "
            f"{amb['mean_distinct_solutions']:.3f}  det- {det_minority(robot, lo, hi):6.2%}",
            flush=True,
        )

    print("\n== step 2: det J sign scan on the chosen family", fmt_bounds(*box(FAMILY)))
    q_deg, disagree = det_profile(robot, FAMILY)
    print("  peeling edges until < 0.05% of the box disagrees:")
    lower, upper = peel(q_deg, disagree, *box(FAMILY), log=print)  # its lines count joints from q0
    print(f"  -> {fmt_bounds(lower, upper)}  (q4, q6 then trimmed to +-175 to keep the raw-angle seam out of the data)")
    print("  CHOSEN =", fmt_bounds(*box(CHOSEN)))
    print("  rescan of CHOSEN:")
    det_profile(robot, CHOSEN, n=100_000)

    print(f"\n== step 3: candidates ({args.poses} poses x {args.starts} starts, seed 0; workspace from 400k samples)")
    for name, lo, hi in candidates():
        amb = measure(robot, name, lo, hi, args.poses, args.starts, 0)
        print_row(name, lo, hi, amb, workspace(robot, lo, hi), det_minority(robot, lo, hi))

    chosen_region = region_preset(robot, "working")
    for label, q in (("Kinova factory home", KINOVA_HOME), ("kinova-ros top-down grasp", ROS_TOP_GRASP)):
        sol = reachable(robot, chosen_region, q)
        print(
            f"  {label} pose inside the chosen box: "
            + ("no solution found" if sol is None else f"yes, q = {np.round(sol, 1).tolist()}")
        )
        if sol is None:
            lo, hi = box(CHOSEN)
            wider = Region("q2 to 200", lo * DEG, np.where(np.arange(6) == 1, 200.0, hi) * DEG)
            sol = reachable(robot, wider, q, starts=128)
            if sol is not None:
                print(f"    with q2 up to 200 (past the shoulder-singularity margin): q = {np.round(sol, 1).tolist()}")

    if not args.no_verify:
        print("\n== step 4: verification of the chosen box", fmt_bounds(*box(CHOSEN)))
        for poses, starts, seed in ((2000, 64, 1), (2000, 64, 2), (500, 128, 1)):
            amb = measure(robot, "chosen", *box(CHOSEN), poses, starts, seed)
            print(
                f"  measure_ambiguity(n_poses={poses}, n_starts={starts}, seed={seed}): "
                f"ambiguous {amb['ambiguous_fraction']:.2%}  distinct {amb['mean_distinct_solutions']:.4f}"
                f"  solve rate {amb['solve_success_rate']:.1%}  ({amb['seconds']:.0f} s)",
                flush=True,
            )
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

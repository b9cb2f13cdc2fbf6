"""Refinement of network-like IK guesses: iklab.core.refine.refine against roboticstoolbox's ik_LM.

Poses from Jaco's `working` region; starts are the true joints plus gaussian
noise (2 degrees per joint by default), roughly what a trained network gives.
Both solvers are judged by our FK, with the same tolerances (0.01 mm, 0.01 deg).
roboticstoolbox solves one pose per call, so it runs on the first --rtb-poses
poses and its rate is per pose.
Run: .venv/bin/python bench/bench_refine.py [--poses 10000] [--noise-deg 2] [--rtb-poses 1000]
"""

import argparse
import math
import time

import numpy as np
from timing import best_seconds

from iklab.core.kinematics import fk, load_robot, to_rtb, wrap_angle
from iklab.core.refine import refine, verify
from iklab.core.regions import region_preset

TOLERANCE_M = 1e-5  # 0.01 mm
TOLERANCE_RAD = math.radians(0.01)
SAME_BRANCH_RAD = math.radians(1.0)
# ik_LM's tol bounds 0.5 |e|^2 (e: metres and radians stacked): 1e-10 stops at |e| < 1.4e-5,
# outside 0.01 mm; 1e-12 stops at 1.4e-6, inside both tolerances.
RTB_TOLERANCE = 1e-12


def verified(robot, q, targets, q_true) -> dict:
    """FK-checked success, errors and same-branch share of solutions ``q`` ``(N, 6)``."""
    check = verify(robot, q, targets[:, :3, :3], targets[:, :3, 3], TOLERANCE_M, TOLERANCE_RAD)
    same_branch = np.all(np.abs(wrap_angle(q - q_true)) <= SAME_BRANCH_RAD, axis=1)
    return {
        "success": check.success.mean(),
        "same_branch": same_branch.mean(),
        "position_mm": 1e3 * check.position_error_m,
        "rotation_deg": np.degrees(check.rotation_error_rad),
    }


def run_ik_lm(robot, targets, starts, tolerance: float = RTB_TOLERANCE, **options):
    """roboticstoolbox's ik_LM, one pose per call: (poses/s, q, its own success flags, searches)."""
    ets, n = to_rtb(robot).ets(), len(targets)
    q, flag, searches = np.empty((n, 6)), np.empty(n, bool), np.empty(n, int)
    started = time.perf_counter()
    for row in range(n):
        solution = ets.ik_LM(targets[row], q0=starts[row], tol=tolerance, **options)
        q[row], flag[row], searches[row] = solution.q, solution.success, solution.searches
    return n / (time.perf_counter() - started), q, flag, searches


def report(label: str, poses_per_second: float, stats: dict) -> None:
    pos, rot = stats["position_mm"], stats["rotation_deg"]
    print(
        f"{label:22s}: {poses_per_second:10,.0f} poses/s, success {100 * stats['success']:7.3f}%, "
        f"same branch (<= 1 deg) {100 * stats['same_branch']:7.3f}%"
    )
    print(
        f"{'':22s}  position error mm  max {pos.max():.2e}  p99 {np.percentile(pos, 99):.2e}; "
        f"rotation error deg  max {rot.max():.2e}  p99 {np.percentile(rot, 99):.2e}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--poses", type=int, default=10_000)
    parser.add_argument("--noise-deg", type=float, default=2.0)
    parser.add_argument("--rtb-poses", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    robot = load_robot("jaco")
    region = region_preset(robot, "working")
    rng = np.random.default_rng(args.seed)
    q_true = rng.uniform(region.lower, region.upper, size=(args.poses, 6))
    starts = q_true + rng.normal(scale=math.radians(args.noise_deg), size=q_true.shape)
    targets = fk(robot, q_true)

    refine(robot, starts[:100], targets[:100])  # warm-up
    seconds, result = best_seconds(
        lambda: refine(robot, starts, targets, tolerance_m=TOLERANCE_M, tolerance_rad=TOLERANCE_RAD)
    )
    ours_rate = args.poses / seconds
    print(
        f"jaco working region, {args.poses} poses, starts = true q + N(0, {args.noise_deg} deg) per joint, "
        f"tolerances {TOLERANCE_M * 1e3} mm / {math.degrees(TOLERANCE_RAD)} deg"
    )
    report("iklab refine", ours_rate, verified(robot, result.q, targets, q_true))
    print(
        f"{'':22s}  iterations mean {result.iterations.mean():.2f}, p99 "
        f"{np.percentile(result.iterations, 99):.0f}, max {result.iterations.max()}; "
        f"refine's own success flag {100 * result.success.mean():.3f}%"
    )

    n = min(args.rtb_poses, args.poses)
    rtb_rate, rtb_q, rtb_flag, searches = run_ik_lm(robot, targets[:n], starts[:n])
    report(f"rtb ik_LM ({n} poses)", rtb_rate, verified(robot, rtb_q, targets[:n], q_true[:n]))
    print(
        f"{'':22s}  its own success flag {100 * rtb_flag.mean():.2f}%, "
        f"restarted from a random start {100 * (searches > 1).mean():.2f}%"
    )
    print(f"speed ratio refine / ik_LM: {ours_rate / rtb_rate:,.0f}x")


if __name__ == "__main__":
    main()

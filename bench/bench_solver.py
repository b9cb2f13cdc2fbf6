"""IKSolver (network + refinement) against roboticstoolbox's ik_LM on the same poses, in one run.

Poses: --poses joint vectors drawn with data_gen's sample_joints from the
model's own region (seed --seed; the datasets use seed 0, so the default 1
gives poses the network was not trained on), FK'd with iklab's FK; the sampled
joints are the "true" branch. Methods: the raw network (predict alone, and
solve(refine=False), which adds the FK check), IKSolver.solve with refinement
(whole batch in one call, best of 3 after a warm-up), and rtb's
ets().ik_LM(tol=--tolerance, joint_limits=True) one pose per call in a Python
loop, from a uniform random start in the joint limits (--rtb-start random; ik_LM
then does its own random restarts) or from mid-range (--rtb-start mid).
Every answer is judged by iklab's FK with the same tolerances (0.01 mm,
0.01 deg), never by the solvers' own flags; same branch = every joint within
1 deg of the sampled one.
Targets (issue): success >= 99.9% with errors <= 0.01 mm / 0.01 deg, throughput
>= 20x ik_LM's, branch agreement >= 99%.
Run: .venv/bin/python bench/bench_solver.py [--model models:/ik-jaco@champion] [--poses 10000]
     [--rtb-poses N] [--rtb-start random|mid]
"""

import argparse
import math
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{Path(__file__).resolve().parent.parent}/mlflow.db")

import numpy as np  # noqa: E402
from bench_refine import RTB_TOLERANCE, SAME_BRANCH_RAD, TOLERANCE_M, TOLERANCE_RAD, run_ik_lm, verified  # noqa: E402
from timing import best_seconds  # noqa: E402

from data_gen.generate import sample_joints  # noqa: E402
from iklab.kinematics import fk, jacobian, wrap_angle  # noqa: E402

TARGET_SUCCESS = 0.999
TARGET_SPEEDUP = 20.0
TARGET_SAME_BRANCH = 0.99
REPEATS = 3  # best of, for IKSolver


def table_row(label: str, rate: float, stats: dict) -> None:
    pos, rot = stats["position_mm"], stats["rotation_deg"]
    print(
        f"{label:34s} {rate:11,.0f} {100 * stats['success']:9.3f} {100 * stats['same_branch']:9.3f} "
        f"{pos.max():10.3g} {np.percentile(pos, 99):10.3g} {rot.max():10.3g} {np.percentile(rot, 99):10.3g}"
    )


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def load_solver(uri: str):
    from iklab.solver import IKSolver

    try:
        return IKSolver.load(uri)
    except Exception as exc:  # any load failure -> one line, no traceback
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        sys.exit(
            f"bench_solver: cannot load model {uri!r} ({first_line}); run `make search` to train "
            "and register a champion, or pass --model URI"
        )


def failure_details(robot, region, q_true, q_net, net_stats, refined, refined_stats, limit: int = 8) -> None:
    """A few refinement failures and off-branch answers: how far the network was, singularity, edges."""
    failed = np.flatnonzero(
        (refined_stats["position_mm"] > TOLERANCE_M * 1e3)
        | (refined_stats["rotation_deg"] > math.degrees(TOLERANCE_RAD))
    )
    off_branch = np.flatnonzero(np.any(np.abs(wrap_angle(refined.q - q_true)) > SAME_BRANCH_RAD, axis=1))
    sigma_min = np.linalg.svd(jacobian(robot, q_true), compute_uv=False)[:, -1]
    edge_deg = np.degrees(np.minimum(q_true - region.lower, region.upper - q_true))  # (N, 6)
    net_dq = np.degrees(np.abs(wrap_angle(q_net - q_true))).max(axis=1)
    print(
        f"\nsmallest singular value of J at the sampled q (all poses): median {np.median(sigma_min):.3f}, "
        f"p1 {np.percentile(sigma_min, 1):.3f}, min {sigma_min.min():.4f}"
    )
    print(
        f"network max joint error vs the sampled q, deg: median {np.median(net_dq):.2f}, "
        f"p99 {np.percentile(net_dq, 99):.1f}, max {net_dq.max():.1f}"
    )
    for title, rows in (
        ("refinement failures (FK-judged)", failed),
        ("answers off the sampled branch (max joint diff > 1 deg)", off_branch),
    ):
        print(f"{title}: {len(rows)}" + (f"; first {min(limit, len(rows))}:" if len(rows) else ""))
        if not len(rows):
            continue
        print(
            f"  {'row':>5s} {'net mm':>8s} {'net deg':>8s} {'net dq deg':>10s} {'out mm':>9s} {'out deg':>9s} "
            f"{'iters':>5s} {'in region':>9s} {'sigma_min':>9s} {'edge deg (joint)':>16s}  out dq deg per joint"
        )
        for row in rows[:limit]:
            joint = int(np.argmin(edge_deg[row]))
            out_dq = np.degrees(wrap_angle(refined.q[row] - q_true[row]))
            print(
                f"  {row:5d} {net_stats['position_mm'][row]:8.2f} {net_stats['rotation_deg'][row]:8.2f} "
                f"{net_dq[row]:10.2f} {refined_stats['position_mm'][row]:9.2e} "
                f"{refined_stats['rotation_deg'][row]:9.2e} {refined.iterations[row]:5d} "
                f"{str(bool(refined.within_region[row])):>9s} {sigma_min[row]:9.4f} "
                f"{edge_deg[row, joint]:10.2f} (q{joint})  {np.array2string(out_dq, precision=1)}"
            )
        if len(rows) > limit:
            print(
                f"  ... over all {len(rows)}: network max joint error median "
                f"{np.median(net_dq[rows]):.1f} deg, sigma_min median {np.median(sigma_min[rows]):.3f}, "
                f"within region {100 * refined.within_region[rows].mean():.0f}%"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models:/ik-jaco@champion")
    parser.add_argument("--poses", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rtb-start", choices=("random", "mid"), default="random")
    parser.add_argument("--rtb-poses", type=int, default=None, help="first N poses only (default: all)")
    parser.add_argument(
        "--tolerance",
        type=float,
        default=RTB_TOLERANCE,
        help="ik_LM's tol on 0.5 |e|^2 (default 1e-12: |e| < 1.4e-6, inside 0.01 mm)",
    )
    parser.add_argument("--max-iterations", type=int, default=50, help="IKSolver's refinement iterations")
    args = parser.parse_args()
    if args.poses < 1 or (args.rtb_poses is not None and args.rtb_poses < 1):
        parser.error("--poses and --rtb-poses must be positive")

    solver = load_solver(args.model)
    robot, region = solver.robot, solver.region
    q_true = sample_joints(region, args.seed, 0, args.poses)
    targets = fk(robot, q_true)

    # warm-up: TF graph tracing and the first refinement are not timed
    warm = targets[: min(64, args.poses)]
    solver.solve(warm, refine=True, max_iterations=args.max_iterations)
    solver.solve(warm, refine=False)

    predict_s, q_net = best_seconds(lambda: solver.predict(targets), REPEATS)
    raw_s, raw = best_seconds(lambda: solver.solve(targets, refine=False), REPEATS)
    refined_s, refined = best_seconds(
        lambda: solver.solve(
            targets,
            refine=True,
            max_iterations=args.max_iterations,
            tolerance_m=TOLERANCE_M,
            tolerance_rad=TOLERANCE_RAD,
        ),
        REPEATS,
    )
    net_stats = verified(robot, q_net, targets, q_true)
    assert np.array_equal(raw.q, q_net)  # solve(refine=False) returns the network's joints
    raw_stats = net_stats
    refined_stats = verified(robot, refined.q, targets, q_true)
    refined_rate = args.poses / refined_s

    n_rtb = min(args.rtb_poses or args.poses, args.poses)
    # its own stream: default_rng(seed) would repeat the draws sample_joints(region, seed) made for
    # q_true, making every start an affine function of the true joints
    rng = np.random.default_rng((args.seed, 1))
    lower, upper = robot.qlim
    if args.rtb_start == "random":
        rtb_starts = rng.uniform(lower, upper, size=(n_rtb, 6))
        start_text = "uniform random in the joint limits (ik_LM then does its own random restarts)"
    else:
        rtb_starts = np.tile((lower + upper) / 2.0, (n_rtb, 1))
        start_text = "mid-range of the joint limits (ik_LM does its own random restarts on failure)"
    rtb_rate, rtb_q, rtb_flag, rtb_searches = run_ik_lm(
        robot, targets[:n_rtb], rtb_starts, args.tolerance, joint_limits=True
    )
    rtb_stats = verified(robot, rtb_q, targets[:n_rtb], q_true[:n_rtb])

    print(
        f"model {args.model}: robot {robot.name}, region {region.name!r}; {args.poses} poses from "
        f"sample_joints(seed={args.seed}); judged by iklab FK, tolerances {TOLERANCE_M * 1e3:g} mm / "
        f"{math.degrees(TOLERANCE_RAD):g} deg; same branch = all joints within "
        f"{math.degrees(SAME_BRANCH_RAD):g} deg of the sampled q"
    )
    print(f"IKSolver: whole batch per call, best of {REPEATS} after a warm-up, max_iterations {args.max_iterations}")
    rtb_subset = (
        f"the first {n_rtb} of the {args.poses} poses (rate is per pose)"
        if n_rtb < args.poses
        else f"all {n_rtb} poses"
    )
    print(
        f"rtb: ets().ik_LM(tol={args.tolerance:g}, joint_limits=True, defaults ilimit=30 slimit=100, "
        f"method chan), one pose per call, one pass, on {rtb_subset}; start {start_text}"
    )
    print()
    print(
        f"{'method':34s} {'poses/s':>11s} {'success%':>9s} {'branch%':>9s} {'pos max mm':>10s} "
        f"{'pos p99 mm':>10s} {'rot max deg':>10s} {'rot p99 deg':>10s}"
    )
    table_row("network only (predict)", args.poses / predict_s, net_stats)
    table_row("IKSolver.solve(refine=False)", args.poses / raw_s, raw_stats)
    table_row("IKSolver.solve(refine=True)", refined_rate, refined_stats)
    table_row(f"rtb ik_LM ({args.rtb_start} start, {n_rtb})", rtb_rate, rtb_stats)
    print()
    print(
        f"IKSolver refined: iterations mean {refined.iterations.mean():.2f}, p99 "
        f"{np.percentile(refined.iterations, 99):.0f}, max {refined.iterations.max()}; within region "
        f"{100 * refined.within_region.mean():.3f}% (raw network {100 * raw.within_region.mean():.3f}%); "
        f"its own success flag {100 * refined.success.mean():.3f}%"
    )
    print(
        f"rtb ik_LM: its own success flag {100 * rtb_flag.mean():.3f}%, needed a restart "
        f"{100 * (rtb_searches > 1).mean():.2f}%, searches mean {rtb_searches.mean():.2f} max "
        f"{rtb_searches.max()}"
    )
    print(
        f"{'':11s}its tol bounds 0.5 |e|^2 (e = position m and rotation rad stacked), so it stops at |e| < "
        f"sqrt(2 tol) = {math.sqrt(2 * args.tolerance):.3g} (0.01 mm is 1e-05 m: tol <= 5e-11 needed)"
    )
    speedup = refined_rate / rtb_rate
    print(f"throughput ratio IKSolver (refined) / rtb ik_LM: {speedup:,.1f}x")

    ok = refined_stats["success"] >= TARGET_SUCCESS - 1e-12
    good = (refined_stats["position_mm"] <= TOLERANCE_M * 1e3) & (
        refined_stats["rotation_deg"] <= math.degrees(TOLERANCE_RAD)
    )
    good_pos = refined_stats["position_mm"][good].max() if good.any() else math.nan
    good_rot = refined_stats["rotation_deg"][good].max() if good.any() else math.nan
    all_pos, all_rot = refined_stats["position_mm"].max(), refined_stats["rotation_deg"].max()
    print("\ntargets (IKSolver with refinement):")
    print(f"  success >= {100 * TARGET_SUCCESS:g}%: {100 * refined_stats['success']:.3f}%  {verdict(ok)}")
    print(
        f"  errors <= 0.01 mm / 0.01 deg on successful answers: max {good_pos:.2e} mm / {good_rot:.2e} deg  "
        f"{verdict(good.any() and good_pos <= 0.01 and good_rot <= 0.01)}"
    )
    print(
        f"  errors <= 0.01 mm / 0.01 deg over all answers: max {all_pos:.3g} mm / {all_rot:.3g} deg  "
        f"{verdict(all_pos <= 0.01 and all_rot <= 0.01)}"
    )
    print(f"  throughput >= {TARGET_SPEEDUP:g}x rtb: {speedup:,.1f}x  {verdict(speedup >= TARGET_SPEEDUP)}")
    print(
        f"  branch agreement >= {100 * TARGET_SAME_BRANCH:g}%: {100 * refined_stats['same_branch']:.3f}%  "
        f"{verdict(refined_stats['same_branch'] >= TARGET_SAME_BRANCH)}"
    )

    failure_details(robot, region, q_true, q_net, net_stats, refined, refined_stats)


if __name__ == "__main__":
    main()

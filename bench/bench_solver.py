"""IKSolver (network + refinement) against roboticstoolbox's ik_LM on the same poses, in one run.

Part 1, latency and robot-loop figures (issue 12's report): per-call latency p50/p99 of
IKSolver.solve at 1, 10, 100 and 10,000 poses per call (calls cycle through the poses) and
ik_LM's per pose (random start; seeded 3 deg from the answer); seeded solve (seeds 3 deg off the
sampled joints): exact and within 1 deg of them; a 600-step circle of 6 cm radius through the
middle of the region followed by solve_path and by ik_LM seeded the same way (previous answer);
with --http, one-row requests on loopback (p50/p99) to `mlflow models serve` and to iklab's lean
server (`python -m iklab.serve`, the same request format).
Part 2, the batch table below.

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
     [--rtb-poses N] [--rtb-start random|mid] [--http]
"""

import argparse
import json
import math
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{Path(__file__).resolve().parent.parent}/mlflow.db")

import numpy as np  # noqa: E402
from bench_refine import RTB_TOLERANCE, SAME_BRANCH_RAD, TOLERANCE_M, TOLERANCE_RAD, run_ik_lm, verified  # noqa: E402
from timing import best_seconds  # noqa: E402

from data_gen.generate import sample_joints  # noqa: E402
from iklab.core.kinematics import fk, jacobian, to_rtb, wrap_angle  # noqa: E402
from iklab.core.refine import into_limits, verify  # noqa: E402
from iklab.studies.services import stop_group  # noqa: E402

TARGET_SUCCESS = 0.999
TARGET_SPEEDUP = 20.0
TARGET_SAME_BRANCH = 0.99
TARGET_HTTP_MS = 3.0  # one row per request, on loopback (issue 24)
REPEATS = 3  # best of, for IKSolver
SEED_NOISE_RAD = math.radians(3)  # "a seed within a few degrees of a solution"
SEEDED_WITHIN_RAD = math.radians(1)
CIRCLE_STEPS, CIRCLE_RADIUS_M, TARGET_PATH_STEP_RAD = 600, 0.06, math.radians(2)
LATENCY_BATCHES = ((1, 2000), (10, 500), (100, 200), (10_000, 7))  # (poses per call, calls)


def table_row(label: str, rate: float, stats: dict) -> None:
    pos, rot = stats["position_mm"], stats["rotation_deg"]
    print(
        f"{label:34s} {rate:11,.0f} {100 * stats['success']:9.3f} {100 * stats['same_branch']:9.3f} "
        f"{pos.max():10.3g} {np.percentile(pos, 99):10.3g} {rot.max():10.3g} {np.percentile(rot, 99):10.3g}"
    )


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def load_solver(uri: str):
    from iklab.robot.solver import IKSolver

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


def call_latencies(call, batches, calls: int) -> np.ndarray:
    """Seconds of each of ``calls`` calls ``call(batch)``, cycling through ``batches``."""
    seconds = np.empty(calls)
    for i in range(calls):
        batch = batches[i % len(batches)]
        started = time.perf_counter()
        call(batch)
        seconds[i] = time.perf_counter() - started
    return seconds


def latency_text(seconds: np.ndarray, per: int = 1) -> str:
    p50, p99 = np.percentile(seconds, 50) * 1e6, np.percentile(seconds, 99) * 1e6
    return f"p50 {p50:10,.1f} us  p99 {p99:10,.1f} us  ({p50 / per:8,.2f} us/pose at p50)"


def ik_lm_latencies(robot, targets, starts, tolerance):
    """Per-pose seconds and answers of ik_LM, one call per pose."""
    ets = to_rtb(robot).ets()
    seconds, q = np.empty(len(targets)), np.empty((len(targets), 6))
    for row in range(len(targets)):
        started = time.perf_counter()
        q[row] = ets.ik_LM(targets[row], q0=starts[row], tol=tolerance, joint_limits=True).q
        seconds[row] = time.perf_counter() - started
    return seconds, q


def circle(robot, q_center, steps=CIRCLE_STEPS, radius=CIRCLE_RADIUS_M):
    """Poses on a circle of ``radius`` through FK(q_center) in the base x-y plane, orientation held."""
    center = fk(robot, q_center[None])[0]
    angle = np.linspace(0.0, 2 * np.pi, steps)
    poses = np.repeat(center[None], steps, axis=0)
    poses[:, 0, 3] += radius * (np.cos(angle) - 1.0)
    poses[:, 1, 3] += radius * np.sin(angle)
    return poses


def path_figures(robot, q, poses, q_start):
    """(exact share, worst per-step joint jump in deg) of a joint path ``q`` along ``poses``."""
    from iklab.robot.solver import joint_distance

    check = verify(robot, q, poses[:, :3, :3], poses[:, :3, 3], TOLERANCE_M, TOLERANCE_RAD)
    before = np.vstack([q_start, q[:-1]])
    return check.success.mean(), math.degrees(joint_distance(q, before).max())


HTTP_SERVERS = ("mlflow models serve", "python -m iklab.serve")


def http_latencies(model_uri: str, poses, requests: int = 300, server_name: str = HTTP_SERVERS[0]):
    """One-row requests to ``server_name`` (MLflow's server or iklab's lean one, the same request
    format) on loopback: (seconds per request, share exact). The server is started here and
    stopped by its process group id."""
    from iklab.core.kinematics import matrix_to_quaternion

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    env = {**os.environ, "PATH": f"{mlflow_cli.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    if server_name == HTTP_SERVERS[0]:
        command = [str(mlflow_cli), "models", "serve", "-m", model_uri, "--env-manager", "local"]
        command += ["-h", "127.0.0.1", "-p", str(port)]
    else:
        command = [sys.executable, "-m", "iklab.serve", "--model", model_uri, "--port", str(port)]
    server = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if server.poll() is not None:
                sys.exit(f"bench_solver: {server_name} exited before answering")
            try:
                with urllib.request.urlopen(f"{base}/ping", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    sys.exit(f"bench_solver: {server_name} did not answer /ping within 180 s")
                time.sleep(0.5)
        rows = np.hstack([poses[:, :3, 3], matrix_to_quaternion(poses[:, :3, :3])])
        columns = ["x", "y", "z", "qw", "qx", "qy", "qz"]
        seconds, exact = np.empty(requests), np.empty(requests, bool)
        for i in range(requests + 20):  # 20 warm-up requests
            body = json.dumps({"dataframe_split": {"columns": columns, "data": [rows[i % len(rows)].tolist()]}})
            request = urllib.request.Request(
                f"{base}/invocations", data=body.encode(), headers={"Content-Type": "application/json"}
            )
            started = time.perf_counter()
            with urllib.request.urlopen(request, timeout=60) as response:
                answer = json.loads(response.read())["predictions"][0]
            if i >= 20:
                seconds[i - 20], exact[i - 20] = time.perf_counter() - started, answer["success"]
        return seconds, exact.mean()
    finally:
        stop_group(server.pid)
        server.wait(timeout=30)


def robot_loop_report(args, solver, q_true, targets) -> None:
    """Part 1: latency per call size, seeded solve, path tracking, HTTP, against ik_LM."""
    robot, region = solver.robot, solver.region
    lower, upper = robot.qlim
    rng = np.random.default_rng((args.seed, 2))
    print(f"== part 1: latency, seeds, paths ({len(targets)} poses; judged by iklab FK, 0.01 mm / 0.01 deg)")
    ours = {}
    for size, calls in LATENCY_BATCHES:
        if size > len(targets):
            continue
        batches = [targets[i : i + size] for i in range(0, len(targets) - size + 1, size)]
        ours[size] = call_latencies(solver.solve, batches, calls)
        print(f"IKSolver.solve, {size:6d} poses per call: {latency_text(ours[size], size)}")
    n_rtb = min(args.latency_rtb_poses, len(targets))
    random_starts = rng.uniform(lower, upper, size=(n_rtb, 6))
    rtb_random, rtb_q = ik_lm_latencies(robot, targets[:n_rtb], random_starts, args.tolerance)
    near = q_true[:n_rtb] + rng.normal(scale=SEED_NOISE_RAD, size=(n_rtb, 6))
    rtb_seeded, rtb_seeded_q = ik_lm_latencies(robot, targets[:n_rtb], near, args.tolerance)
    rtb_random_exact = verified(robot, rtb_q, targets[:n_rtb], q_true[:n_rtb])["success"]
    rtb_seeded_exact = verified(robot, rtb_seeded_q, targets[:n_rtb], q_true[:n_rtb])["success"]
    print(f"rtb ik_LM, random start, 1 pose per call: {latency_text(rtb_random)}  exact {100 * rtb_random_exact:.2f}%")
    print(f"rtb ik_LM, seeded 3 deg off, 1 per call:  {latency_text(rtb_seeded)}  exact {100 * rtb_seeded_exact:.2f}%")

    seeds = q_true + rng.normal(scale=SEED_NOISE_RAD, size=q_true.shape)
    seeded_s, seeded = best_seconds(lambda: solver.solve(targets, q_seed=seeds), REPEATS)
    seeded_stats = verified(robot, seeded.q, targets, q_true)
    near_seed = np.all(np.abs(wrap_angle(seeded.q - q_true)) <= SEEDED_WITHIN_RAD, axis=1).mean()
    single_seeded = call_latencies(
        lambda i: solver.solve(targets[i], q_seed=seeds[i]), list(range(min(len(targets), 2000))), 2000
    )
    print(
        f"IKSolver.solve(q_seed 3 deg off), whole batch: {len(targets) / seeded_s:,.0f} poses/s, exact "
        f"{100 * seeded_stats['success']:.3f}%, within 1 deg of the seed's solution {100 * near_seed:.3f}%"
    )
    print(f"IKSolver.solve(q_seed), 1 pose per call:     {latency_text(single_seeded)}")

    q_mid = (region.lower + region.upper) / 2.0
    poses = circle(robot, q_mid)
    path_s, path = best_seconds(lambda: solver.solve_path(poses, q_mid), 1)
    path_exact, path_worst = path_figures(robot, path.q, poses, q_mid)
    ets = to_rtb(robot).ets()
    rtb_path, previous = np.empty((len(poses), 6)), q_mid
    started = time.perf_counter()
    for i, pose in enumerate(poses):
        rtb_path[i] = previous = ets.ik_LM(pose, q0=previous, tol=args.tolerance, joint_limits=True).q
    rtb_path_s = time.perf_counter() - started
    rtb_path_exact, rtb_path_worst = path_figures(robot, rtb_path, poses, q_mid)
    print(
        f"circle, {len(poses)} steps, r {CIRCLE_RADIUS_M * 100:g} cm: "
        f"IKSolver.solve_path exact {100 * path_exact:.2f}%, "
        f"worst step {path_worst:.3f} deg, {1e6 * path_s / len(poses):,.1f} us/step; ik_LM seeded by the previous "
        f"answer: exact {100 * rtb_path_exact:.2f}%, worst step {rtb_path_worst:.3f} deg, "
        f"{1e6 * rtb_path_s / len(poses):,.1f} us/step"
    )
    http = None
    if args.http:
        for server_name in HTTP_SERVERS:  # the last one's figure is the target's: iklab's server
            http, http_exact = http_latencies(args.model, targets, server_name=server_name)
            print(
                f"HTTP, {server_name} on loopback, 1 row per request: {latency_text(http)}, "
                f"exact {100 * http_exact:.1f}%"
            )

    outside = sum(int(np.sum(~np.all((r.q >= lower) & (r.q <= upper), axis=1))) for r in (seeded, path))
    print("\ntargets (part 1):")
    if 1 in ours:
        one, rtb_one = np.median(ours[1]) * 1e6, np.median(rtb_random) * 1e6
        print(
            f"  1 pose per call, median <= ik_LM random start: {one:.1f} vs {rtb_one:.1f} us  {verdict(one <= rtb_one)}"
        )
    if 10_000 in ours:
        rate, rtb_rate = 10_000 / np.median(ours[10_000]), 1.0 / np.median(rtb_random)
        print(
            f"  10,000 per call, throughput >= {TARGET_SPEEDUP:g}x ik_LM: {rate:,.0f} vs {rtb_rate:,.0f} poses/s = "
            f"{rate / rtb_rate:.1f}x  {verdict(rate / rtb_rate >= TARGET_SPEEDUP)}"
        )
    if http is not None:
        p50 = np.median(http) * 1e3
        print(
            f"  HTTP one row, python -m iklab.serve, p50 <= {TARGET_HTTP_MS:g} ms: {p50:.2f} ms  "
            f"{verdict(p50 <= TARGET_HTTP_MS)}"
        )
    seeded_ok = seeded_stats["success"] >= TARGET_SUCCESS and near_seed >= TARGET_SUCCESS
    print(
        f"  seeded: >= 99.9% exact and within 1 deg: {100 * seeded_stats['success']:.3f}% / {100 * near_seed:.3f}%  "
        f"{verdict(seeded_ok)}"
    )
    path_ok = path_exact == 1.0 and path_worst <= math.degrees(TARGET_PATH_STEP_RAD)
    print(
        f"  circle: every step exact, worst step <= 2 deg: {100 * path_exact:.2f}%, {path_worst:.3f} deg  "
        f"{verdict(path_ok)}"
    )
    print(f"  answers outside the joint limits (seeded batch, path): {outside}  {verdict(outside == 0)}")
    print()


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
    parser.add_argument("--latency-rtb-poses", type=int, default=1000, help="ik_LM poses timed one by one in part 1")
    parser.add_argument("--http", action="store_true", help="also time one-row requests to mlflow models serve")
    parser.add_argument("--skip-part1", action="store_true", help="only the batch table (part 2)")
    args = parser.parse_args()
    if args.poses < 1 or (args.rtb_poses is not None and args.rtb_poses < 1):
        parser.error("--poses and --rtb-poses must be positive")

    solver = load_solver(args.model)
    robot, region = solver.robot, solver.region
    q_true = sample_joints(region, args.seed, 0, args.poses)
    targets = fk(robot, q_true)

    # warm-up: the first calls (numba's compiled kernels load) are not timed
    warm = targets[: min(64, args.poses)]
    solver.solve(warm, refine=True, max_iterations=args.max_iterations)
    solver.solve(warm, refine=False)

    if not args.skip_part1:
        robot_loop_report(args, solver, q_true, targets)
        print("== part 2: one batch of all poses per call")

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
    # solve(refine=False) returns the network's joints, moved into the joint limits by 2*pi
    assert np.array_equal(raw.q, into_limits(q_net, robot.qlim[0], robot.qlim[1])[0])
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

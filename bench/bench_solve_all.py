"""Every solution of a pose: a mixture model's IKSolver.solve_all against multi-start numerical IK
needing the same share, in one run (issue 13's speed target: >= 20x).

Poses: FK of --poses joint vectors drawn uniformly in the robot's joint limits (seed --seed).
Reference: multi-start IK (damped least squares from --reference-starts uniform random joints
per pose, the exact answers deduplicated within 1 deg modulo 2*pi). The model: solve_all (each
mixture component refined, exact answers kept, deduplicated the same way), best of 3. Then the
fewest multi-start starts per pose (another seed; 1, 2, 4, ... then bisection) whose coverage of
the reference reaches the model's, each start refined for at most 20, 30 or 100 steps (fewer
steps and more starts can be cheaper): the ratio is the cheapest one's time over solve_all's.
Both run on the same poses, this process, this machine. For Puma560 the closed-form solutions
(roboticstoolbox's ikine_a, 8 configurations, inside the joint limits) are a second reference.

Bounds, so a missed target says how far any model of this network could go: the network's
forward pass alone (solve_all with refinement free), and a perfect model's solve_all (this
forward pass, then the reference solutions themselves refined: each already exact, so only
the FK check runs, and nothing is spent on components that lead nowhere or to a duplicate).

Run: .venv/bin/python bench/bench_solve_all.py --model runs:/<run id>/model [--poses 500]
     (default --model: the newest finished run of ik-<--robot>-train with output_encoding mixture)
"""

import argparse
import inspect
import math
import os
import sys
import time
from functools import partial
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{Path(__file__).resolve().parent.parent}/mlflow.db")

import numpy as np  # noqa: E402

from iklab.core.kinematics import fk  # noqa: E402
from iklab.core.refine import refine  # noqa: E402
from iklab.core.solution_sets import compare_sets, match_at_caps, multi_start  # noqa: E402
from iklab.learning.branch_coverage import puma560_closed_form_sets  # noqa: E402
from iklab.robot.solver import IKSolver  # noqa: E402

TARGET_SPEEDUP = 20.0
REPEATS = 3


def newest_mixture_model(robot: str) -> str:
    import mlflow

    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(f"ik-{robot}-train")
    runs = (
        []
        if experiment is None
        else client.search_runs(
            [experiment.experiment_id],
            "params.`data.output_encoding` = 'mixture' and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
    )
    if not runs:
        sys.exit(f"no finished mixture run in ik-{robot}-train: train one (experiments/{robot}_full_mixture.yaml)")
    return f"runs:/{runs[0].info.run_id}/model"


def timed(work: object) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--robot", default="puma560")
    parser.add_argument("--poses", type=int, default=500)
    parser.add_argument("--reference-starts", type=int, default=256)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    uri = args.model or newest_mixture_model(args.robot)
    solver = IKSolver.load(uri)
    robot = solver.robot
    rng = np.random.default_rng(args.seed)
    poses = fk(robot, rng.uniform(robot.qlim[0], robot.qlim[1], size=(args.poses, 6)))
    n = len(poses)
    print(f"model {uri} ({robot.name}, {solver.output_encoding}); {n} poses uniform in the joint limits")

    seconds, found = math.inf, None
    for _ in range(REPEATS):
        started = time.perf_counter()
        found = [r.q for r in solver.solve_all(poses)]
        seconds = min(seconds, time.perf_counter() - started)
    started = time.perf_counter()
    reference = multi_start(robot, poses, args.reference_starts, seed=args.seed + 1)
    reference_seconds = time.perf_counter() - started
    mine = compare_sets(found, reference)
    print(
        f"reference: multi-start, {args.reference_starts} starts per pose: {mine.reference / n:.2f} solutions "
        f"per pose, {1000 * reference_seconds / n:.2f} ms per pose"
    )
    print(
        f"solve_all: {mine.found / n:.2f} solutions per pose, coverage {mine.coverage:.1%} of the reference, "
        f"extra {mine.extra / n:.3f} per pose, poses fully covered {mine.poses_fully_covered / n:.1%}, "
        f"{1000 * seconds / n:.3f} ms per pose (best of {REPEATS})"
    )
    if robot.name == "puma560":
        closed = puma560_closed_form_sets(robot, poses)
        against = compare_sets(found, closed)
        complete = compare_sets(reference, closed)
        print(
            f"closed form (ikine_a, inside the limits): {against.reference / n:.2f} per pose; solve_all covers "
            f"{against.coverage:.1%}, the multi-start reference {complete.coverage:.1%}"
        )
    matches = {}
    tries = match_at_caps(robot, poses, reference, mine.coverage, args.reference_starts, seed=args.seed + 2)
    for match in tries:
        cap = match.max_iterations
        print(
            f"multi-start to match, each start refined for at most {cap} steps (1, 2, 4, ... starts per pose, "
            "then bisection): starts, coverage, ms per pose"
        )
        for starts, coverage, elapsed in match.ladder:
            print(f"  {starts:4d}  {coverage:6.1%}  {1000 * elapsed / n:8.3f}")
        if match.matched:
            matches[cap] = min(  # the matching budget timed like solve_all: best of REPEATS
                timed(partial(multi_start, robot, poses, match.starts, seed=args.seed + 2, max_iterations=cap))
                for _ in range(REPEATS)
            )
            print(
                f"  {match.starts} starts: {1000 * matches[cap] / n:.3f} ms per pose (best of {REPEATS}); "
                f"speed-up of solve_all at equal coverage: {matches[cap] / seconds:.1f}x"
            )
        else:
            print(f"  never matched the model's coverage up to {args.reference_starts} starts")
    if not matches:
        return
    cap = min(matches, key=matches.get)
    ratio = matches[cap] / seconds
    verdict = "meets" if ratio >= TARGET_SPEEDUP else "MISSES"
    print(
        f"speed-up of solve_all over the cheapest multi-start at equal coverage ({cap} steps per start): "
        f"{ratio:.1f}x ({verdict} the {TARGET_SPEEDUP:.0f}x target)"
    )
    forward = min(timed(partial(solver.predict, poses)) for _ in range(REPEATS))
    exact = np.concatenate(reference)
    options = {  # solve_all's own refinement options, from its signature: the bound refines as it does
        name: p.default
        for name, p in inspect.signature(IKSolver.solve_all).parameters.items()
        if name in ("max_iterations", "tolerance_m", "tolerance_rad")
    }
    targets = np.repeat(poses, [len(r) for r in reference], axis=0)
    check = min(
        timed(partial(refine, robot, exact, targets, lower=robot.qlim[0], upper=robot.qlim[1], **options))
        for _ in range(REPEATS)
    )
    print(
        f"bounds: the forward pass alone {1000 * forward / n:.3f} ms per pose ({matches[cap] / forward:.1f}x); "
        f"a perfect model (forward pass + FK check of the {len(exact) / n:.2f} reference solutions per pose) "
        f"{1000 * (forward + check) / n:.3f} ms per pose ({matches[cap] / (forward + check):.1f}x)"
    )


if __name__ == "__main__":
    main()

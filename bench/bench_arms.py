"""Arms from URDF files, end to end (issue 25 item 4): each trained model's figures on its test split.

Per arm (--arm EXPERIMENT=URI, the experiment file that trained the model and its URI):
- the network's raw median position and rotation error on --poses poses of the dataset's test split
  (the rows the training never saw; IKSolver.solve(refine=False));
- the exact solve rate: IKSolver.solve on the same poses, success judged by iklab's FK (within
  0.01 mm and 0.01 deg, inside the joint limits), and the worst errors;
- one-pose latency: the median of --calls calls of solve() with one pose each (after load's warm-up).
For a mixture model over `full` (--mixture EXPERIMENT=URI): solve_all's coverage of ssik's solutions
(ssik.Manipulator.from_urdf of the same file; its branches a turn of 2*pi brings inside the joint
limits; found when every joint agrees within 1e-3 rad modulo 2*pi: tests/ssik_reference.py) on
--ssik-poses poses, FK of joints uniform in the limits; wrong rows (not FK-verified) must be 0.

Run: .venv/bin/python bench/bench_arms.py --arm experiments/irb140_mlp.yaml=runs:/<id>/model ...
     [--mixture experiments/ur5_full_mixture.yaml=runs:/<id>/model] (MLFLOW_TRACKING_URI names the store)
"""

import argparse
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # tests/ssik_reference.py: the solution-set helpers

import numpy as np  # noqa: E402

from iklab.core.kinematics import fk  # noqa: E402
from iklab.learning.config import load_experiment  # noqa: E402
from iklab.learning.datasets import dataset_path, load_dataset  # noqa: E402
from iklab.robot.solver import IKSolver  # noqa: E402


def _pair(text: str) -> tuple[str, str]:
    experiment, _, uri = text.partition("=")
    if not uri:
        raise argparse.ArgumentTypeError(f"expected EXPERIMENT=URI, got {text!r}")
    return experiment, uri


def arm_figures(experiment: str, uri: str, poses: int, calls: int) -> None:
    config = load_experiment(experiment)
    test = load_dataset(dataset_path(config.data)).test
    targets = test.poses()[:poses]
    solver = IKSolver.load(uri)
    raw = solver.solve(targets, refine=False)
    started = time.perf_counter()
    exact = solver.solve(targets)
    batch_s = time.perf_counter() - started
    one = []
    for pose in targets[:calls]:
        tick = time.perf_counter()
        solver.solve(pose)
        one.append(time.perf_counter() - tick)
    print(
        f"{solver.robot.name} ({experiment}, {uri})\n"
        f"  network alone, {len(targets)} test poses: median {1e3 * np.median(raw.position_error_m):.2f} mm, "
        f"{np.degrees(np.median(raw.rotation_error_rad)):.2f} deg\n"
        f"  exact solve rate {exact.success.mean():.4%} ({(~exact.success).sum()} failed); worst "
        f"{1e3 * exact.position_error_m.max():.2e} mm, {np.degrees(exact.rotation_error_rad.max()):.2e} deg; "
        f"in the region {exact.within_region.mean():.2%}; batch {1e6 * batch_s / len(targets):.1f} us/pose\n"
        f"  one pose per call: median {1e6 * np.median(one):.0f} us, p95 {1e6 * np.percentile(one, 95):.0f} us "
        f"({len(one)} calls)",
        flush=True,
    )


def mixture_coverage(experiment: str, uri: str, poses: int, seed: int) -> None:
    import ssik
    from ssik_reference import inside_limits, matched

    config = load_experiment(experiment)
    solver = IKSolver.load(uri)
    robot = solver.robot
    arm = ssik.Manipulator.from_urdf(config.data.robot, ee=config.data.ee_link)
    rng = np.random.default_rng(seed)
    targets = fk(robot, rng.uniform(robot.qlim[0], robot.qlim[1], size=(poses, 6)))
    started = time.perf_counter()
    found = solver.solve_all(targets)
    seconds = time.perf_counter() - started
    total = covered = wrong = extra = 0
    for target, result in zip(targets, found, strict=True):
        reference = inside_limits(robot, np.array([s.q for s in arm.solve(target, respect_limits=False)]))
        reference = reference[_distinct(reference)]
        total += len(reference)
        covered += int(matched(result.q, reference).sum())
        wrong += int((~result.success).sum())
        extra += int((~matched(reference, result.q)).sum())
    print(
        f"{robot.name} full, mixture ({experiment}, {uri}), {poses} poses (seed {seed}):\n"
        f"  solve_all covers {covered} of ssik's {total} solutions inside the limits ({covered / total:.2%}; "
        f"{total / poses:.2f} per pose); rows matching no ssik solution {extra}; not FK-verified {wrong}\n"
        f"  solve_all {1e3 * seconds / poses:.2f} ms per pose ({poses} poses in one call)",
        flush=True,
    )


def _distinct(q: np.ndarray) -> np.ndarray:
    """Rows of ``q`` that are not within 1e-3 rad (modulo 2*pi) of an earlier row: the same solution
    reached twice (a joint of more than a turn brought inside the limits once)."""
    keep = np.ones(len(q), dtype=bool)
    for i in range(1, len(q)):
        gaps = np.abs((q[:i][keep[:i]] - q[i] + math.pi) % (2 * math.pi) - math.pi).max(axis=1)
        keep[i] = not (gaps <= 1e-3).any()
    return keep


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arm", type=_pair, action="append", default=[], help="EXPERIMENT=URI (repeat)")
    parser.add_argument("--mixture", type=_pair, default=None, help="EXPERIMENT=URI of a mixture model over full")
    parser.add_argument("--poses", type=int, default=10_000, help="test poses per arm (default 10000)")
    parser.add_argument("--calls", type=int, default=1_000, help="one-pose calls timed (default 1000)")
    parser.add_argument("--ssik-poses", type=int, default=300, help="poses for the coverage (default 300)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    for experiment, uri in args.arm:
        arm_figures(experiment, uri, args.poses, args.calls)
    if args.mixture:
        mixture_coverage(*args.mixture, args.ssik_poses, args.seed)
    print(f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

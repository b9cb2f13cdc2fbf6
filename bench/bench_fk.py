"""FK throughput: iklab.core.kinematics.fk against roboticstoolbox's robot.fkine, same rows, one run.

Target (issue 2): at least 200x faster, max abs difference <= 1e-12 on 10,000 rows.
Run: .venv/bin/python bench/bench_fk.py [--rows 10000] [--robot jaco]
"""

import argparse

import numpy as np
import roboticstoolbox as rtb
from timing import best_seconds

from iklab.core.kinematics import _RTB_DH_MODELS, fk, load_robot


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--robot", default="jaco")
    args = parser.parse_args()
    robot = load_robot(args.robot)
    reference = getattr(rtb.models.DH, _RTB_DH_MODELS[robot.name])()
    q = np.random.default_rng(0).uniform(robot.qlim[0], robot.qlim[1], size=(args.rows, 6))

    rtb_seconds, _ = best_seconds(lambda: reference.fkine(q), 2)
    ours_seconds, _ = best_seconds(lambda: fk(robot, q), 20)
    difference = np.max(np.abs(fk(robot, q) - np.array(reference.fkine(q).A)))

    per_pose = lambda seconds: 1e6 * seconds / args.rows  # noqa: E731
    print(f"robot {robot.name}, {args.rows} random configurations over the joint limits")
    print(f"roboticstoolbox fkine : {per_pose(rtb_seconds):8.3f} us/pose")
    print(
        f"iklab fk              : {per_pose(ours_seconds):8.3f} us/pose "
        f"({args.rows / ours_seconds / 1e6:.2f} M poses/s)"
    )
    print(f"speed-up              : {rtb_seconds / ours_seconds:8.0f}x (target >= 200x)")
    print(f"max |difference|      : {difference:.2e} (target <= 1e-12)")


if __name__ == "__main__":
    main()

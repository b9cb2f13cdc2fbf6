"""Ambiguity of Jaco's `full` and `working` regions with the CLI's default sample sizes.

Expected (issue 2): about 99% for `full`; under 1% for the default `working` region.
Run: .venv/bin/python bench/bench_ambiguity.py [--poses N] [--starts N] (defaults: the CLI's)
"""

import argparse

from data_gen.ambiguity import DEFAULT_POSES, DEFAULT_STARTS, measure_ambiguity
from iklab.core.kinematics import load_robot
from iklab.core.regions import region_preset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--poses", type=int, default=DEFAULT_POSES)
    parser.add_argument("--starts", type=int, default=DEFAULT_STARTS)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    robot = load_robot("jaco")
    for name in ("full", "working"):
        r = measure_ambiguity(
            robot, region_preset(robot, name), n_poses=args.poses, n_starts=args.starts, seed=args.seed
        )
        print(
            f"jaco {name:8s}: ambiguous {100 * r.ambiguous_fraction:6.2f}% of {r.n_poses} poses, "
            f"{r.mean_distinct_solutions:.2f} distinct in-region solutions per pose, "
            f"{100 * r.solve_success_rate:.1f}% of starts reached the pose, {r.seconds:.0f} s"
        )


if __name__ == "__main__":
    main()

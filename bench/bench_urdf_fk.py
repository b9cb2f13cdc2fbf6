"""FK of an arm read from a URDF file: iklab's fk against roboticstoolbox's fkine on the same file.

A URDF arm becomes an exact standard-DH table (iklab.core.urdf), so its FK runs the DH kernel:
it should be as fast as on a roboticstoolbox DH model, and at least 200x roboticstoolbox's
fkine on the same DH table (a DHRobot, as bench/bench_fk.py measures for DH). roboticstoolbox's
own reading of the file (an ERobot, whose fkine is compiled) is timed too: the arms whose files
it reads offline, Puma560 from its data package and the UR5 test fixture.
Run: .venv/bin/python bench/bench_urdf_fk.py [--rows 10000]
"""

import argparse
import warnings
from pathlib import Path

import numpy as np
import roboticstoolbox as rtb
from timing import best_seconds

from iklab.core.kinematics import fk, jacobian, load_robot, rotation_angle_between, to_rtb

ROOT = Path(__file__).resolve().parents[1]
RTBDATA = Path(__import__("rtbdata").__file__).parent / "xacro"
# (URDF file, end-effector link, roboticstoolbox's DH model of the same arm: its speed is the DH figure)
ARMS = [
    (RTBDATA / "unimation_puma560_description/urdf/puma560_robot.urdf", "link7", "puma560"),
    (ROOT / "tests/fixtures/urdf/ur5.urdf", "tool0", "ur5"),
]


def bench_arm(path: Path, ee: str, dh_name: str, rows: int) -> None:
    robot = load_robot(str(path), ee_link=ee)
    dh_robot = load_robot(dh_name)
    with warnings.catch_warnings():  # Robot.URDF is deprecated in favour of a subclass per robot
        warnings.simplefilter("ignore", DeprecationWarning)
        reference = rtb.Robot.URDF(str(path))
    q = np.random.default_rng(0).uniform(robot.qlim[0], robot.qlim[1], size=(rows, 6))

    rtb_seconds, rtb_poses = best_seconds(lambda: reference.fkine(q, end=ee), 2)
    dh_rtb = to_rtb(robot)
    dh_rtb_seconds, dh_rtb_poses = best_seconds(lambda: dh_rtb.fkine(q), 2)
    ours_seconds, poses = best_seconds(lambda: fk(robot, q), 20)
    dh_seconds, _ = best_seconds(lambda: fk(dh_robot, q), 20)
    jacobian_seconds, _ = best_seconds(lambda: jacobian(robot, q), 10)
    dh_jacobian_seconds, _ = best_seconds(lambda: jacobian(dh_robot, q), 10)
    theirs = np.array(rtb_poses.A)
    position_m = np.max(np.linalg.norm(poses[:, :3, 3] - theirs[:, :3, 3], axis=1))
    rotation_rad = np.max(rotation_angle_between(poses[:, :3, :3], theirs[:, :3, :3]))

    per_pose = lambda seconds: 1e6 * seconds / rows  # noqa: E731
    print(f"{robot.name} from {path.name} ({robot.source['base_link']} -> {ee}), {rows} random configurations")
    print(f"  roboticstoolbox fkine, DHRobot of the DH form : {per_pose(dh_rtb_seconds):8.3f} us/pose")
    print(f"  roboticstoolbox fkine, ERobot of the same file: {per_pose(rtb_seconds):8.3f} us/pose")
    print(f"  iklab fk, URDF arm                            : {per_pose(ours_seconds):8.3f} us/pose")
    print(f"  iklab fk, roboticstoolbox's DH {dh_name:<9}      : {per_pose(dh_seconds):8.3f} us/pose")
    print(f"  speed-up over DHRobot fkine                   : {dh_rtb_seconds / ours_seconds:8.0f}x (target >= 200x)")
    print(f"  speed-up over ERobot fkine                    : {rtb_seconds / ours_seconds:8.0f}x")
    dh_gap = np.max(np.abs(poses - np.array(dh_rtb_poses.A)))
    print(f"  URDF arm / DH model time                      : {ours_seconds / dh_seconds:8.2f} (same kernel: ~1)")
    print(
        f"  iklab jacobian, URDF arm / DH model           : {per_pose(jacobian_seconds):8.3f} / "
        f"{per_pose(dh_jacobian_seconds):.3f} us/pose"
    )
    print(f"  max gap to the ERobot's fkine                 : {position_m:.1e} m, {rotation_rad:.1e} rad")
    print(f"  max |difference| to the DHRobot's fkine       : {dh_gap:.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    args = parser.parse_args()
    for path, ee, dh_name in ARMS:
        bench_arm(path, ee, dh_name, args.rows)


if __name__ == "__main__":
    main()

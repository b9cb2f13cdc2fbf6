"""ssik, built from iklab's DH table, is a trustworthy reference for bench/bench_ssik.py:
its FK is iklab's, and every branch it returns is exact and includes the one that made the pose.

Puma560 here (closed form, ~2 s on a fresh machine). Jaco, a general 6R arm, costs ssik about 90 s
of symbolic preparation the first time on a machine (then ~1 s from ~/.cache/ssik): a clean CI
machine would pay it on every run, so bench/bench_ssik.py makes the same checks on Jaco before
it times anything. No TensorFlow, no trained model."""

import numpy as np
import pytest
from ssik_reference import dh_targets, manipulator, matched, pose_errors, solve_one, ssik_fk

from iklab.core.kinematics import fk, load_robot

ROBOTS = ["puma560"]
EXACT = 1e-9  # metres, radians, and joint-space agreement of FK: machine precision, not a tolerance
CONTAINS_RAD = 1e-6  # the sampled joints among the branches: every joint, modulo 2*pi


@pytest.fixture(scope="module", params=ROBOTS)
def arm(request):
    robot = load_robot(request.param)
    return robot, manipulator(robot)


def sampled_joints(robot, n, seed):
    return np.random.default_rng(seed).uniform(robot.qlim[0], robot.qlim[1], size=(n, 6))


def test_ssik_fk_is_iklab_fk(arm):
    robot, ssik_arm = arm
    q = sampled_joints(robot, 100, seed=7)
    assert np.abs(ssik_fk(robot, ssik_arm, q) - fk(robot, q)).max() <= EXACT


def test_every_ssik_branch_is_exact_and_covers_the_sampled_one(arm):
    robot, ssik_arm = arm
    q = sampled_joints(robot, 50, seed=8)
    poses = fk(robot, q)
    targets = dh_targets(robot, poses)
    for pose, target, sampled in zip(poses, targets, q, strict=True):
        branches = solve_one(robot, ssik_arm, target)
        assert len(branches) >= 1
        position_m, rotation_rad = pose_errors(fk(robot, branches), np.repeat(pose[None], len(branches), axis=0))
        assert position_m.max() <= EXACT and rotation_rad.max() <= EXACT, (sampled, branches)
        assert matched(branches, sampled[None], CONTAINS_RAD)[0], (sampled, branches)

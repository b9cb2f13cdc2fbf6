"""Robot-time cost: the ratios against ik_LM, the budget's verdicts, a measured solver."""

import time
from pathlib import Path

import numpy as np
import pytest

from iklab.learning.robot_cost import RobotBudget, RobotCost, measure_cost, measuring_poses
from iklab.robot.solver import IKSolver

FIXTURE_MODEL = Path(__file__).parent / "fixtures" / "model-72cf481"


def test_ratios_and_the_budgets_verdicts():
    budget = RobotBudget()  # the default: one pose no slower than ik_LM, a batch at least 20x
    within = RobotCost(one_pose_us=60.0, batch_us=4.0, ik_lm_us=80.0, batch_rows=10_000, refined=True)
    assert within.one_pose_vs_ik_lm == pytest.approx(0.75) and within.batch_vs_ik_lm == pytest.approx(20.0)
    assert within.over(budget) is None and within.over(None) is None
    assert RobotCost(120.0, 4.5, 100.0, 10_000, False).over(budget, 1.25) is None  # within the margin
    assert RobotCost(130.0, 4.0, 100.0, 10_000, False).over(budget, 1.25).startswith("one pose 130 us is 1.30x")
    slow_pose = RobotCost(90.0, 4.0, 80.0, 10_000, True)
    assert slow_pose.over(budget) == "one pose 90 us is 1.12x ik_LM's 80 us (budget 1x)"
    slow_batch = RobotCost(60.0, 8.0, 80.0, 10_000, True)
    assert slow_batch.over(budget) == "a 10,000-pose batch is 10.0x ik_LM's throughput (budget at least 20x)"
    both = RobotCost(90.0, 8.0, 80.0, 10_000, True).over(budget)
    assert both.count(";") == 1 and both.startswith("one pose") and "10.0x" in both
    assert within.metrics()["robot/batch_vs_ik_lm"] == pytest.approx(20.0)
    assert RobotCost.from_dict(within.to_dict()) == within
    assert RobotBudget(batch_vs_ik_lm=5.0).describe().endswith("at least 5x its throughput")


@pytest.fixture(scope="module")
def solver():
    return IKSolver.load(str(FIXTURE_MODEL))


def test_a_measured_solver_against_ik_lm(solver):
    poses = measuring_poses(solver.robot, solver.region, 300)
    again = measuring_poses(solver.robot, solver.region, 300)
    np.testing.assert_array_equal(poses, again)  # every trial is timed on the same poses
    cost = measure_cost(solver, poses, rounds=2, calls=20)
    assert cost.batch_rows == 300 and cost.refined
    for value in (cost.one_pose_us, cost.batch_us, cost.ik_lm_us):
        assert 0.1 < value < 1e5  # microseconds per pose: measured, not zero, not stuck
    assert cost.one_pose_vs_ik_lm == cost.one_pose_us / cost.ik_lm_us  # no verdict on speed: a loaded machine


def test_a_slower_solver_is_over_budget(solver):
    class Slowed:  # 5 ms added to every call: far past ik_LM's ~0.1 ms per pose on any machine
        robot, region = solver.robot, solver.region

        def solve(self, poses, **options):
            time.sleep(0.005)
            return solver.solve(poses, **options)

    cost = measure_cost(Slowed(), measuring_poses(solver.robot, solver.region, 100), rounds=1, calls=10)
    assert cost.one_pose_us > 5000 and cost.one_pose_vs_ik_lm > 1
    assert cost.over(RobotBudget()).startswith("one pose")

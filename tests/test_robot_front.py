"""The champion's trial within the robot budget, the accuracy-cost front: table, summary, figure."""

import optuna
from optuna.distributions import IntDistribution
from optuna.trial import TrialState, create_trial

from iklab.learning.robot_cost import RobotBudget, RobotCost
from iklab.studies import robot_front
from iklab.studies.robot_front import COST_KEY, REFUSED_KEY, WITHIN_KEY


def _trial(value, one_pose_us, batch_us, within, depth):
    cost = RobotCost(one_pose_us, batch_us, 80.0, 10_000, True)
    return create_trial(
        value=value,
        params={"model.depth": depth},
        distributions={"model.depth": IntDistribution(3, 6)},
        user_attrs={COST_KEY: cost.to_dict(), WITHIN_KEY: within},
    )


def study_with_costs():
    study = optuna.create_study(direction="minimize")
    study.add_trial(_trial(3.0, 120.0, 10.0, False, 6))  # most accurate, over budget
    study.add_trial(_trial(3.5, 70.0, 3.5, True, 4))  # the champion's: most accurate within
    study.add_trial(_trial(5.0, 50.0, 2.0, True, 3))  # less accurate, faster: on the front
    study.add_trial(_trial(6.0, 75.0, 4.0, True, 4))  # beaten on all three by the second
    refused = create_trial(
        state=TrialState.PRUNED,
        params={"model.depth": 6},
        distributions={"model.depth": IntDistribution(3, 6)},
        user_attrs={REFUSED_KEY: True},
    )
    study.add_trial(refused)
    return study


def test_the_champion_is_the_most_accurate_within_budget():
    study = study_with_costs()
    assert study.best_trial.number == 0  # Optuna's best ignores the budget
    assert robot_front.chosen_trial(study).number == 1
    empty = optuna.create_study()
    empty.add_trial(_trial(3.0, 120.0, 10.0, False, 6))
    assert robot_front.chosen_trial(empty) is None


def test_the_front_table_and_its_summary():
    table = robot_front.front_table(study_with_costs())
    assert table.trial.tolist() == [0, 1, 2, 3]  # most accurate first; the refused one has no error
    assert table.on_front.tolist() == [True, True, True, False]
    assert table.one_pose_vs_ik_lm.tolist() == [1.5, 0.875, 0.625, 0.9375]
    lines = robot_front.front_markdown(table, RobotBudget())
    assert len(lines) == 2 + 3 and lines[2].startswith("| 0 | 3.00 | 120 | 1.50 | 8.0 | no |")
    assert lines[3] == "| 1 | 3.50 | 70 | 0.88 | 22.9 | yes |"


def test_the_front_figure():
    figure = robot_front.front_figure(study_with_costs(), RobotBudget(), title="s")
    left, right = figure.axes
    assert "4 trained trials; 1 configurations over budget before training" in figure._suptitle.get_text()
    within = next(c for c in left.collections if c.get_gid() == "within budget")
    assert len(within.get_offsets()) == 3
    budget_line = next(line for line in right.lines if line.get_gid() == "budget")
    assert budget_line.get_xdata()[0] == 20.0
    empty = robot_front.front_figure(optuna.create_study(), None)
    assert any(t.get_gid() == "message" for t in empty.texts)

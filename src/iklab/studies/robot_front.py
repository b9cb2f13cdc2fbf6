"""Accuracy against robot-time cost for a study: which trial is the champion's (the most accurate
within the robot budget), the front of the trials no other beats on both, as a table and a figure.

Reads what the search's objective leaves on each trial (``iklab.studies.search_study``): the
trained network's cost under :data:`COST_KEY` (an ``iklab.learning.robot_cost.RobotCost`` as a
dict) and :data:`WITHIN_KEY`; a trial measured without a budget counts as within.
"""

from __future__ import annotations

import math

import optuna
import pandas as pd
from matplotlib.figure import Figure
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from iklab.learning.robot_cost import RobotBudget, RobotCost

# Trial attributes: the trained network's RobotCost (as a dict), and whether it is within the budget.
COST_KEY, WITHIN_KEY = "robot_cost", "within_robot_budget"
BEFORE_TRAINING_KEY = "robot_cost_before_training"  # the untrained network's lower bound
REFUSED_KEY = "over_robot_budget_before_training"  # True: pruned before training for it
ERROR_LABEL = "validation median position error (mm)"


def chosen_trial(study: optuna.Study) -> FrozenTrial | None:
    """The champion's trial: the most accurate complete trial within the robot budget, or None."""
    within = [t for t in _complete(study) if t.user_attrs.get(WITHIN_KEY, True)]
    best = max if study.direction == StudyDirection.MAXIMIZE else min
    return best(within, key=lambda t: t.value, default=None)


def refused_before_training(trial: FrozenTrial) -> bool:
    """A configuration pruned over the robot budget before any training."""
    return trial.state == TrialState.PRUNED and trial.user_attrs.get(REFUSED_KEY, False)


def front_table(study: optuna.Study) -> pd.DataFrame:
    """One row per complete trial with a measured cost, most accurate first: its error, one-pose
    and batch figures against ik_LM, within budget, and whether it is on the front (no other
    trial is as accurate, as fast for one pose and as fast in batches, and better in one)."""
    rows = []
    for trial in _complete(study):
        raw = trial.user_attrs.get(COST_KEY)
        if raw is None:
            continue
        cost = RobotCost.from_dict(raw)
        rows.append(
            {
                "trial": trial.number,
                "val_median_mm": trial.value,
                "one_pose_us": cost.one_pose_us,
                "one_pose_vs_ik_lm": cost.one_pose_vs_ik_lm,
                "batch_vs_ik_lm": cost.batch_vs_ik_lm,
                "within_budget": bool(trial.user_attrs.get(WITHIN_KEY, True)),
            }
        )
    table = pd.DataFrame(
        rows,
        columns=["trial", "val_median_mm", "one_pose_us", "one_pose_vs_ik_lm", "batch_vs_ik_lm", "within_budget"],
    )
    table["on_front"] = [_on_front(row, table) for row in table.itertuples()]
    return table.sort_values("val_median_mm", ignore_index=True)


def _on_front(row: object, table: pd.DataFrame) -> bool:
    """No other row at least as good on all three (error, one-pose ratio, batch speed-up) and better on one."""
    no_worse = (
        (table.val_median_mm <= row.val_median_mm)
        & (table.one_pose_vs_ik_lm <= row.one_pose_vs_ik_lm)
        & (table.batch_vs_ik_lm >= row.batch_vs_ik_lm)
    )
    better = (
        (table.val_median_mm < row.val_median_mm)
        | (table.one_pose_vs_ik_lm < row.one_pose_vs_ik_lm)
        | (table.batch_vs_ik_lm > row.batch_vs_ik_lm)
    )
    return not bool((no_worse & better).any())


def front_markdown(table: pd.DataFrame, budget: RobotBudget | None) -> list[str]:
    """The front's rows as a markdown table (the study's summary)."""
    front = table[table.on_front]
    if front.empty:
        return []
    lines = [
        "| trial | val median mm | one pose us | one pose / ik_LM | batch x ik_LM | within budget |",
        "|---:|---:|---:|---:|---:|:---|",
    ]
    for row in front.itertuples():
        within = "yes" if row.within_budget else "no"
        lines.append(
            f"| {row.trial} | {row.val_median_mm:.2f} | {row.one_pose_us:.0f} | {row.one_pose_vs_ik_lm:.2f} "
            f"| {row.batch_vs_ik_lm:.1f} | {within if budget is not None else '(no budget)'} |"
        )
    return lines


def front_figure(study: optuna.Study, budget: RobotBudget | None, title: str = "") -> Figure:
    """Two panels, error against one-pose time and against batch speed (both over ik_LM's): the
    trials within budget in blue, over it in grey, the front joined, the champion's trial a red
    star, the budget a dashed line; the configurations refused before training counted in the title."""
    table = front_table(study)
    refused = sum(map(refused_before_training, study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))))
    figure = Figure(figsize=(10, 4.2), layout="constrained")
    notes = [title, f"{len(table)} trained trials; {refused} configurations over budget before training"]
    if table.empty:
        figure.text(0.5, 0.5, "No trained trial with a measured cost yet.", ha="center", va="center", gid="message")
        figure.suptitle("\n".join(filter(None, notes)))
        return figure
    chosen = chosen_trial(study)
    panels = (
        ("one_pose_vs_ik_lm", "one-pose solve time / ik_LM's (lower is faster)", "one_pose_vs_ik_lm", True),
        ("batch_vs_ik_lm", f"batch throughput / ik_LM's ({_rows(study)} poses per call)", "batch_vs_ik_lm", False),
    )
    for ax, (column, label, limit, lower_better) in zip(figure.subplots(1, 2), panels, strict=True):
        for within, color, name in ((True, "tab:blue", "within budget"), (False, "0.6", "over budget")):
            part = table[table.within_budget == within]
            if not part.empty:
                ax.scatter(part[column], part.val_median_mm, s=22, color=color, label=name, gid=name)
        front = table[table.on_front].sort_values(column)
        ax.plot(front[column], front.val_median_mm, color="tab:blue", alpha=0.4, lw=1, gid="front")
        if chosen is not None:
            row = table[table.trial == chosen.number]
            ax.scatter(row[column], row.val_median_mm, s=90, marker="*", color="tab:red", zorder=3, label="champion")
        if budget is not None:
            ax.axvline(getattr(budget, limit), color="tab:red", ls="--", lw=1, label="budget", gid="budget")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel(ERROR_LABEL)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8, loc="upper right" if lower_better else "upper left")
    figure.suptitle("\n".join(filter(None, notes)))
    return figure


def _rows(study: optuna.Study) -> str:
    for trial in _complete(study):
        if COST_KEY in trial.user_attrs:
            return f"{trial.user_attrs[COST_KEY]['batch_rows']:,}"
    return "?"


def _complete(study: optuna.Study) -> list[FrozenTrial]:
    return [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.value is not None and math.isfinite(t.value)
    ]

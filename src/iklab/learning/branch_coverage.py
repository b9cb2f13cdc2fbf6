"""A model's solution sets on test poses against multi-start numerical IK (``test/solutions/*``).

For each pose: the distinct exact solutions :meth:`IKSolver.solve_all` finds (every answer of
the network refined) and those of multi-start IK from ``reference_starts`` random joint vectors
(the reference). Coverage is the share of reference solutions the model also found (within
1 deg, modulo 2*pi); extra are exact solutions it found that the reference missed; wrong are
returned solutions an independent FK check rejects (must be 0).

Speed: the fewest multi-start IK starts per pose (another seed than the reference's) whose
coverage of the reference reaches the model's, at the iteration cap per start where that is
cheapest (:func:`cheapest_match`: a random start refined for at most 20, 30 or 100 steps); its
time against solve_all's.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass

import numpy as np

from iklab.core.kinematics import Robot
from iklab.core.refine import verify
from iklab.core.solution_sets import cheapest_match, compare_sets, distinct, multi_start
from iklab.learning import metric_names as M
from iklab.learning.metric_names import SOLUTIONS
from iklab.robot.solver import IKSolver

PREFIX = SOLUTIONS


@dataclass(frozen=True)
class SolutionSetReport:
    metrics: dict[str, float]  # PREFIX + name -> value
    found_counts: np.ndarray  # (N,) distinct exact solutions the model found per pose
    reference_counts: np.ndarray  # (N,) the reference's
    ladder: list[tuple[int, float, float]]  # the matching cap's budgets tried (starts per pose, coverage, seconds)


def evaluate_solution_sets(
    solver: IKSolver, poses: np.ndarray, *, reference_starts: int = 256, seed: int = 0
) -> SolutionSetReport:
    """``poses`` ``(N, 4, 4)`` reachable targets (e.g. FK of test joints)."""
    robot, lower, upper = solver.robot, solver.robot.qlim[0], solver.robot.qlim[1]
    solver.warm_up()
    started = time.perf_counter()
    found = [r.q for r in solver.solve_all(poses)]
    model_seconds = time.perf_counter() - started
    every = np.concatenate(found) if any(len(f) for f in found) else np.zeros((0, 6))
    owners = np.repeat(np.arange(len(poses)), [len(f) for f in found])
    check = verify(
        robot, every, poses[owners, :3, :3], poses[owners, :3, 3], 1e-5, math.radians(0.01), lower=lower, upper=upper
    )
    wrong = int((~check.success).sum())

    started = time.perf_counter()
    reference = multi_start(robot, poses, reference_starts, seed=seed + 1)
    reference_seconds = time.perf_counter() - started
    comparison = compare_sets(found, reference)

    match = cheapest_match(robot, poses, reference, comparison.coverage, reference_starts, seed=seed + 2)
    matching = match.ladder[-1] if match.matched else None
    n = len(poses)
    reference_counts = np.array([len(r) for r in reference])
    found_counts = np.array([len(f) for f in found])
    metrics = {
        "coverage": comparison.coverage,
        "poses": float(n),
        "reference_solutions_per_pose": float(reference_counts.mean()),
        "found_solutions_per_pose": float(found_counts.mean()),
        "extra_solutions_per_pose": comparison.extra / n,
        "wrong_solutions": float(wrong),
        "poses_fully_covered_fraction": comparison.poses_fully_covered / n,
        "poses_with_none_fraction": float(np.mean(found_counts == 0)),
        "solve_all_ms_per_pose": 1000 * model_seconds / n,
        "reference_ms_per_pose": 1000 * reference_seconds / n,
        "reference_starts": float(reference_starts),
        # the multi-start budget that first matched the model's coverage (NaN: none up to the reference's)
        "multistart_matching_starts": float(matching[0]) if matching else math.nan,
        "multistart_matching_max_iterations": float(match.max_iterations) if matching else math.nan,
        "multistart_matching_ms_per_pose": 1000 * matching[2] / n if matching else math.nan,
        "speedup_vs_multistart": matching[2] / model_seconds if matching else math.nan,
    }
    return SolutionSetReport({PREFIX + k: v for k, v in metrics.items()}, found_counts, reference_counts, match.ladder)


def solution_set_figure(report: SolutionSetReport, title: str) -> object:
    """Two panels: solutions per pose (model against reference), and multi-start's coverage
    against its time per pose, with the model's point."""
    import matplotlib.pyplot as plt

    figure, (counts, cost) = plt.subplots(1, 2, figsize=(11, 4))
    top = int(max(report.reference_counts.max(initial=0), report.found_counts.max(initial=0)))
    bins = np.arange(-0.5, top + 1.5)
    counts.hist([report.reference_counts, report.found_counts], bins=bins, label=["multi-start reference", "model"])
    counts.set_xlabel("distinct exact solutions per pose")
    counts.set_ylabel("poses")
    counts.legend()
    n = len(report.found_counts)
    m = report.metrics
    cap = m[PREFIX + "multistart_matching_max_iterations"]
    steps = f"<= {cap:.0f} steps each" if math.isfinite(cap) else "none matched"
    starts, coverage, seconds = zip(*report.ladder, strict=True)
    label = f"multi-start (starts per pose, {steps})"
    cost.plot(1000 * np.array(seconds) / n, 100 * np.array(coverage), "o-", label=label)
    for s, c, t in report.ladder:
        cost.annotate(str(s), (1000 * t / n, 100 * c), textcoords="offset points", xytext=(4, -10), fontsize=8)
    cost.plot([m[PREFIX + "solve_all_ms_per_pose"]], [100 * m[PREFIX + "coverage"]], "r*", ms=14, label="model")
    cost.set_xscale("log")
    cost.set_xlabel("ms per pose")
    cost.set_ylabel("coverage of the reference (%)")
    cost.legend()
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def puma560_closed_form_sets(robot: Robot, poses: np.ndarray) -> list[np.ndarray]:
    """Every IK solution of each Puma560 pose in ``poses`` (N, 4, 4) from roboticstoolbox's
    closed form (``ikine_a``, its 8 configurations): those inside ``robot``'s joint limits whose
    FK (ours) reaches the pose within 1e-6, deduplicated as the solution sets are. A second
    reference beside multi-start (tests, bench/bench_solve_all.py)."""
    import roboticstoolbox as rtb  # the train extra's

    if robot.name != "puma560":
        raise ValueError(f"the closed form is Puma560's, not {robot.name}'s")
    puma = rtb.models.DH.Puma560()
    sets = []
    for pose in poses:
        found = [puma.ikine_a(pose, config="".join(c)) for c in itertools.product("lr", "ud", "nf")]
        q = np.array([s.q for s in found if s.success]).reshape(-1, 6)
        target_r, target_p = np.repeat(pose[None, :3, :3], len(q), 0), np.repeat(pose[None, :3, 3], len(q), 0)
        check = verify(robot, q, target_r, target_p, 1e-6, 1e-6, lower=robot.qlim[0], upper=robot.qlim[1])
        exact = check.q[check.success]
        sets.append(exact[distinct(exact)])
    return sets


def branch_figures(metrics: dict[str, float], mixture: bool) -> dict[str, float]:
    """A run's ``branches/*`` figures from its test metrics (``M.BRANCHES``): the same names on a
    single-answer run and a mixture's, for the UI's side-by-side comparison."""
    raw = M.TEST_BEST_COMPONENT if mixture else M.TEST  # a mixture's raw answer: its best component
    figures = {
        M.BRANCHES_RAW_POSITION: metrics[raw + M.POSITION_MEDIAN],
        M.BRANCHES_RAW_ROTATION: metrics[raw + M.ROTATION_MEDIAN],
    }
    if M.SOLUTION_COVERAGE in metrics:  # solution sets measured (a mixture's default)
        figures[M.BRANCHES_COVERAGE] = metrics[M.SOLUTION_COVERAGE]
        figures[M.BRANCHES_SOLUTIONS] = metrics[SOLUTIONS + "found_solutions_per_pose"]
    return figures


def branches_tag(mixture: bool, components: int, region: str) -> str:
    """The run's ``branches`` tag: which model gives every branch, in words."""
    if mixture:
        return f"every: a mixture of {components} answers over region {region}, solve_all"
    return f"one: a single answer over region {region}"


def branches_line(metrics: dict[str, float], tag: str) -> str:
    """One line of markdown for a study's summary: the champion's branches/* figures."""
    line = (
        f"**Branches:** {tag}; raw median {metrics[M.BRANCHES_RAW_POSITION]:.2f} mm, "
        f"{metrics[M.BRANCHES_RAW_ROTATION]:.2f} deg"
    )
    if M.BRANCHES_COVERAGE in metrics:
        line += (
            f"; coverage {metrics[M.BRANCHES_COVERAGE]:.1%} of multi-start IK's branches "
            f"({metrics[M.BRANCHES_SOLUTIONS]:.2f} solutions per pose)"
        )
    return line + "."

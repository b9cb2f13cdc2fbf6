"""Every IK branch: solution sets, the multi-start reference against Puma560's closed form, and
a small mixture model trained through iklab.train whose solve_all returns exact, distinct
solutions (never a wrong one) and whose seeded solve picks the nearest."""

import math

import numpy as np
import pytest
import roboticstoolbox as rtb

from iklab.core.encodings import decode_outputs
from iklab.core.kinematics import fk, load_robot, wrap_angle
from iklab.core.regions import region_preset
from iklab.core.solution_sets import (
    DISTINCT_RAD,
    EXACT_DISTINCT_RAD,
    cheapest_match,
    compare_sets,
    distinct,
    distinct_mask,
    multi_start,
    starts_to_match,
)
from iklab.learning import metric_names as M
from iklab.learning.branch_coverage import puma560_closed_form_sets
from iklab.learning.config import experiment_from_dict
from iklab.learning.diagnostics import R2_MEAN, evaluate_flags, fit_metrics
from iklab.learning.task_loss import pose_targets
from iklab.learning.training import nearest_component_decoder, train
from iklab.robot.model_metadata import ModelMetadata
from iklab.robot.network import NumpyNetwork
from iklab.robot.solver import IKSolver, joint_distance


@pytest.fixture(scope="module")
def puma():
    return load_robot("puma560")


def test_distinct_keeps_one_row_per_solution_modulo_2pi():
    base = np.radians([10.0, 20, 30, 40, 50, 60])
    q = np.array(
        [
            base,
            base + np.radians(0.5),  # within 1 deg on every joint: the same solution
            base + [2 * math.pi, 0, 0, 0, 0, 0],  # the same angle a turn away
            base + [0, 0, 0, 0, 0, np.radians(1.5)],  # one joint 1.5 deg away: another solution
            base + [0, math.pi, 0, 0, 0, 0],
        ]
    )
    assert distinct(q).tolist() == [0, 3, 4]
    assert distinct(q, tolerance_rad=np.radians(2.0)).tolist() == [0, 4]
    assert distinct(np.zeros((0, 6))).tolist() == []


def test_distinct_mask_keeps_each_poses_exact_candidates_as_distinct_does():
    rng = np.random.default_rng(0)
    base = rng.uniform(-4, 4, size=(200, 4, 6))
    near = base[:, :3] + rng.normal(0, 0.01, size=(200, 3, 6)) + 2 * math.pi * rng.integers(-1, 2, size=(200, 3, 6))
    q = np.concatenate([base, near, rng.uniform(-4, 4, size=(200, 5, 6))], axis=1)  # (200, 12, 6)
    success = rng.random((200, 12)) < 0.7
    keep = distinct_mask(q, success)
    for pose in range(200):  # in order: an exact candidate is kept unless a kept one is within 1 deg
        kept = []
        for j in np.flatnonzero(success[pose]):
            if all(np.abs(wrap_angle(q[pose, j] - q[pose, i])).max() > DISTINCT_RAD for i in kept):
                kept.append(j)
        assert np.flatnonzero(keep[pose]).tolist() == kept
    assert 0 < keep.sum() < success.sum()  # the near-duplicates were dropped, not everything
    with pytest.raises(ValueError, match="candidates"):
        distinct_mask(q[0], success[0])


def test_distinct_mask_compares_a_pair_with_the_larger_of_their_radii():
    base = np.radians([10.0, 20, 30, 40, 50, 60])
    q = np.array([[base, base + np.radians(0.5), base + np.radians(0.5) + 2e-4]])  # 0.5 deg, then 2e-4 rad
    success = np.ones((1, 3), dtype=bool)
    both_exact = np.full((1, 3), 1e-3)
    assert distinct_mask(q, success, both_exact).tolist() == [[True, True, False]]
    one_imprecise = np.array([[1e-3, DISTINCT_RAD, 1e-3]])  # row 1 only to 1 deg: one solution with row 0
    assert distinct_mask(q, success, one_imprecise).tolist() == [[True, False, True]]
    assert distinct_mask(q, success).tolist() == [[True, False, False]]  # one radius, 1 deg: one solution


def test_compare_sets_counts_matches_extras_and_full_poses():
    a, b, c = np.zeros(6), np.full(6, 1.0), np.full(6, -1.0)
    found = [np.array([a + 0.001, c]), np.zeros((0, 6))]
    reference = [np.array([a, b]), np.array([b])]
    result = compare_sets(found, reference)
    assert (result.reference, result.matched, result.found, result.extra) == (3, 1, 2, 1)
    assert result.poses_fully_covered == 0 and result.coverage == pytest.approx(1 / 3)
    assert compare_sets(reference, reference).poses_fully_covered == 2
    with pytest.raises(ValueError, match="2 found sets against 1"):
        compare_sets(found, reference[:1])


def test_multi_start_finds_every_closed_form_solution_of_the_puma560(puma):
    poses = fk(puma, np.random.default_rng(0).uniform(puma.qlim[0], puma.qlim[1], size=(30, 6)))
    reference = puma560_closed_form_sets(puma, poses)
    counts = [len(r) for r in reference]
    assert min(counts) >= 1 and max(counts) >= 6  # several branches inside the limits
    found = multi_start(puma, poses, 256, seed=1)
    comparison = compare_sets(found, reference)
    assert comparison.coverage == 1.0 and comparison.extra == 0  # the reference is complete and exact
    few = compare_sets(multi_start(puma, poses, 4, seed=1), reference)
    assert few.coverage < 0.9  # four starts miss branches: coverage measures something
    # the fewest starts that reach 90%: doubling, then bisection; one start fewer fell short
    ladder = starts_to_match(puma, poses, reference, 0.9, 256, seed=2)
    tried = {starts: coverage for starts, coverage, _ in ladder}
    (starts, coverage, seconds), short = ladder[-1], tried.get(ladder[-1][0] - 1, 0.0)
    assert coverage >= 0.9 > short and 4 < starts < 256 and seconds > 0
    assert [s for s in tried if s & (s - 1) == 0][:3] == [1, 2, 4]  # powers of two first
    never = starts_to_match(puma, poses, reference, 1.01, 8, seed=2)
    assert [s for s, _, _ in never] == [1, 2, 4, 8]  # up to the cap, none enough
    # starts refined for at most 3 steps rarely converge: they never reach 90% in 64 starts, so
    # the cheapest multi-start that does is the 100-step one, with the same ladder's answer
    short_steps = starts_to_match(puma, poses, reference, 0.9, 64, seed=2, max_iterations=3)
    assert short_steps[-1][1] < 0.9
    match = cheapest_match(puma, poses, reference, 0.9, 64, seed=2, caps=(3, 100))
    assert match.matched and match.max_iterations == 100 and match.starts == starts
    assert match.ladder[-1][1] >= 0.9 and match.seconds > 0


# A mixture on Puma560's whole joint range, trained in ~30 s: too short to be accurate, long
# enough for its components to spread over several branches.
PUMA_MIXTURE = {
    "name": "puma_mixture_tiny",
    "data": {"robot": "puma560", "region": "full", "rows": 40000, "seed": 0},
    "model": {"depth": 3, "width": 128, "mixture_components": 8},
    "optimizer": {"learning_rate": 2e-3},
    "training": {"epochs": 5, "batch_size": 256, "early_stopping_patience": 0},
    "diagnostics": {"probe_rows": 512},
    "evaluation": {"knn_rows": 5000, "test_rows": 1000, "solution_set_poses": 60, "reference_starts": 64},
}
PUMA_MIXTURE["data"].update({"input_encoding": "xyz_rotmat_wrist", "output_encoding": "mixture"})


@pytest.fixture(scope="module")
def trained(module_mlflow_store):
    result = train(experiment_from_dict(PUMA_MIXTURE))
    assert result.status == "finished", result.reason
    return result, module_mlflow_store


@pytest.mark.slow
def test_a_mixture_run_logs_components_per_epoch_and_solution_sets(trained):
    result, store = trained
    metrics = store.get_run(result.run_id).data.metrics
    history = store.get_metric_history(result.run_id, M.MIXTURE + "effective_components_mean")
    assert len(history) == 5 and all(1.0 <= h.value <= 8.0 for h in history)
    assert metrics[M.TEST_EFFECTIVE_COMPONENTS] > 1.5  # several components in use: not collapsed
    assert "collapsed_mixture" not in result.flags and "ambiguous_data" not in result.flags
    # R^2 judged on the component nearest each probe target's pose: a learning mixture is not collapsed
    r2 = store.get_metric_history(result.run_id, "r2_mean")
    assert len(r2) == 5 and r2[-1].value > 0.3 and "collapsed_to_mean" not in result.flags  # threshold 0.05
    # the best component is nearer than the most probable one, and both are finite
    best, top = metrics[M.TEST_BEST_COMPONENT + M.POSITION_MEDIAN], metrics[M.TEST_POSITION_MEDIAN]
    assert 0 < best < top < 1e4
    solutions = {k.removeprefix("test/solutions/"): v for k, v in metrics.items() if k.startswith("test/solutions/")}
    assert solutions["wrong_solutions"] == 0
    assert solutions["found_solutions_per_pose"] > 1.5  # more than one branch per pose
    assert 0.3 < solutions["coverage"] <= 1.0
    assert solutions["reference_solutions_per_pose"] > 3.0  # Puma560: 4.6 inside its limits
    artifacts = {a.path for a in store.list_artifacts(result.run_id, "plots")}
    assert "plots/solution_sets.png" in artifacts
    # the UI's side-by-side names: the same branches/* as a single-answer run, from the mixture's own figures
    assert metrics[M.BRANCHES_RAW_POSITION] == best and metrics[M.BRANCHES_COVERAGE] == solutions["coverage"]
    assert metrics[M.BRANCHES_RAW_ROTATION] == metrics[M.TEST_BEST_COMPONENT + M.ROTATION_MEDIAN]
    assert metrics[M.BRANCHES_SOLUTIONS] == solutions["found_solutions_per_pose"]
    tag = store.get_run(result.run_id).data.tags[M.BRANCHES_TAG]
    assert tag == "every: a mixture of 8 answers over region full, solve_all"


@pytest.mark.slow
def test_solve_all_returns_exact_distinct_solutions_and_seeds_pick_the_nearest(trained, puma):
    result, _ = trained
    solver = IKSolver.load(result.model_uri)  # the logged model, through its numpy export
    q_true = np.random.default_rng(7).uniform(puma.qlim[0], puma.qlim[1], size=(40, 6))
    poses = fk(puma, q_true)
    sets = solver.solve_all(poses)
    assert len(sets) == 40
    counts = [len(s.q) for s in sets]
    assert sum(counts) >= 60 and max(counts) >= 3
    rtb_puma = rtb.models.DH.Puma560()
    for pose, found in zip(poses, sets, strict=True):
        for q in found.q:  # every returned solution reaches the pose (roboticstoolbox's FK) inside the limits
            reached = rtb_puma.fkine(q).A
            assert np.linalg.norm(reached[:3, 3] - pose[:3, 3]) < 2e-5
            assert np.all((q >= puma.qlim[0] - 1e-9) & (q <= puma.qlim[1] + 1e-9))
        assert found.success.all()
        if len(found.q) > 1:  # distinct: 1 deg apart, or 1e-3 rad where both are exact to 1e-10
            gaps = np.abs(wrap_angle(found.q[:, None] - found.q[None])).max(axis=2)
            gaps[np.eye(len(found.q), dtype=bool)] = np.inf
            exact = (found.position_error_m <= 1e-10) & (found.rotation_error_rad <= 1e-10)
            close = gaps <= DISTINCT_RAD
            assert gaps.min() > EXACT_DISTINCT_RAD and np.all(exact[np.any(close, axis=1)])
    # seeded: start 0.3 rad from the second solution of a pose; the answer is exact and at least
    # as near the seed as every solution solve_all found (up to 1e-3 rad: one solution, refined
    # to the 0.01 deg tolerance from two starts, lands ~1e-5 rad apart; branches lie > 1 deg apart)
    rows = [i for i, s in enumerate(sets) if len(s.q) >= 2]
    seeds = np.array([sets[i].q[1] for i in rows]) + np.random.default_rng(1).uniform(-0.3, 0.3, (len(rows), 6))
    seeded = solver.solve(poses[rows], q_seed=seeds)
    assert seeded.success.all()
    nearest = np.array(
        [joint_distance(sets[i].q, np.tile(s, (len(sets[i].q), 1))).min() for i, s in zip(rows, seeds, strict=True)]
    )
    assert np.all(joint_distance(seeded.q, seeds) <= nearest + 1e-3)
    # unseeded: the most probable answer, refined; exact where any component converged
    plain = solver.solve(poses)
    assert np.all(plain.success[np.array(counts) > 0])


def test_a_mixture_is_judged_by_its_nearest_component_not_its_heaviest(puma):
    """Half the rows' heaviest component is a wrong answer, another component the right one:
    R^2 of the heaviest component says collapsed (the search pruned a learning mixture so),
    R^2 of the component nearest each target says learned."""
    rng = np.random.default_rng(0)
    n, k = 1000, 3
    q_true = rng.uniform(puma.qlim[0], puma.qlim[1], size=(n, 6))
    mu = rng.uniform(-math.pi, math.pi, size=(n, k, 6))
    right = rng.integers(0, k, size=n)
    mu[np.arange(n), right] = q_true
    logits = np.zeros((n, k))
    logits[np.arange(n), right] = 3.0  # the right component is the heaviest ...
    logits[: n // 2] = 0.0
    logits[np.arange(n // 2), (right[: n // 2] + 1) % k] = 3.0  # ... except on half the rows
    raw = np.concatenate([logits, np.cos(mu).reshape(n, -1), np.sin(mu).reshape(n, -1), np.zeros((n, k * 6))], 1)
    nearest = nearest_component_decoder(puma, q_true)(raw)
    np.testing.assert_allclose(wrap_angle(nearest - q_true), 0.0, atol=1e-9)
    targets = pose_targets(puma, q_true)
    heaviest = fit_metrics(pose_targets(puma, decode_outputs(raw, "mixture")), targets, False)[R2_MEAN]
    assert heaviest < 0.6
    assert fit_metrics(pose_targets(puma, nearest), targets, False)[R2_MEAN] > 0.999


def test_mixture_flags_collapse_on_ambiguous_data_and_stay_quiet_on_a_healthy_mixture():
    collapsed = evaluate_flags([], ambiguity=0.99, effective_components=1.05)
    assert [f.name for f in collapsed] == ["collapsed_mixture"]
    assert evaluate_flags([], ambiguity=0.99, effective_components=3.2) == []
    assert evaluate_flags([], ambiguity=0.001, effective_components=1.0) == []  # one branch: one component is right
    assert [f.name for f in evaluate_flags([], ambiguity=0.99)] == ["ambiguous_data"]  # a regressor on it


class _GivenAnswers(IKSolver):
    """solve_all with a stand-in for the network (none runs): given answers ``(N, 6)``, one per
    pose, or ``(N, K, 6)`` components with their ``weights`` ``(N, K)``, heaviest first."""

    def __init__(self, robot, answers, weights=None):
        metadata = ModelMetadata(robot, region_preset(robot, "full"), "xyz_quat", "angles")
        super().__init__(NumpyNetwork.__new__(NumpyNetwork), metadata)
        self.given = answers if answers.ndim == 3 else answers[:, None]
        self.weights = np.ones(self.given.shape[:2]) if weights is None else weights

    def _candidates(self, poses):
        return self.weights, self.given


def test_solve_all_refines_only_the_components_of_some_weight(puma):
    """Each pose's components are its closed-form solutions, the first of weight 0.9, the others
    1e-4: below solve_all's default min_weight (1e-3) they are not refined, so only the first
    is returned; min_weight=0 refines them all and returns every solution. A pose whose every
    component weighs less still gets its heaviest refined."""
    poses = fk(puma, np.random.default_rng(5).uniform(puma.qlim[0], puma.qlim[1], size=(30, 6)))
    reference = puma560_closed_form_sets(puma, poses)
    k = max(len(r) for r in reference)
    answers = np.stack([np.concatenate([r, np.repeat(r[:1], k - len(r), axis=0)]) for r in reference])
    weights = np.full((len(poses), k), 1e-4)
    weights[:, 0] = 0.9
    weights[0] = 1e-5  # every component light
    solver = _GivenAnswers(puma, answers, weights)
    assert sum(len(r) for r in reference) >= 3 * len(poses)  # something to drop
    heaviest = solver.solve_all(poses)
    assert [len(r.q) for r in heaviest] == [1] * len(poses)
    for result, r in zip(heaviest, reference, strict=True):
        np.testing.assert_allclose(result.q[0], r[0], atol=1e-8)
    every = solver.solve_all(poses, min_weight=0.0)
    assert compare_sets([r.q for r in every], reference).coverage == 1.0
    assert [len(r.q) for r in every] == [len(r) for r in reference]
    for bad in (1.0, -0.1, float("nan"), "0.1"):
        with pytest.raises(ValueError, match="min_weight must be a number in \\[0, 1\\)"):
            solver.solve_all(poses, min_weight=bad)


def test_solve_all_seeks_the_missing_twin_of_an_odd_solution_count():
    """Jaco turns fully in every joint, so a pose's solutions come in pairs: given one exact
    answer per pose (an odd count), solve_all seeks the missing one next to it. Every row it
    adds is exact by FK, inside the limits and distinct."""
    jaco = load_robot("jaco")
    q_true = np.random.default_rng(3).uniform(jaco.qlim[0], jaco.qlim[1], size=(200, 6))
    poses = fk(jaco, q_true)
    solver = _GivenAnswers(jaco, q_true)
    alone = solver.solve_all(poses, complete_pairs=False)
    assert [len(r.q) for r in alone] == [1] * 200
    paired = solver.solve_all(poses)
    counts = np.array([len(r.q) for r in paired])
    assert (counts >= 2).mean() >= 0.5, np.bincount(counts)  # measured: 59.5% (seed 3; 40.5% keep one)
    for pose, result, q in zip(poses, paired, q_true, strict=True):
        np.testing.assert_allclose(result.q[0], q)  # the network's answer first
        reached = fk(jaco, result.q)
        assert np.linalg.norm(reached[:, :3, 3] - pose[:3, 3], axis=1).max() <= 1e-5 and result.success.all()
        assert np.all((result.q >= jaco.qlim[0]) & (result.q <= jaco.qlim[1]))
        if len(result.q) > 1:
            gaps = np.abs(wrap_angle(result.q[:, None] - result.q[None])).max(axis=2)
            assert gaps[~np.eye(len(result.q), dtype=bool)].min() > 1e-3
    puma = load_robot("puma560")  # limits narrower than a turn: any count is possible, nothing sought
    q_puma = np.random.default_rng(4).uniform(puma.qlim[0], puma.qlim[1], size=(20, 6))
    assert [len(r.q) for r in _GivenAnswers(puma, q_puma).solve_all(fk(puma, q_puma))] == [1] * 20

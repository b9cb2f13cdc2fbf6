"""IKSolver on a tiny model trained in the test (seconds), judged by FK."""

import math

import mlflow
import numpy as np
import pytest
from spatialmath import SE3

from helpers import CENTER, tiny_experiment
from iklab.config import experiment_from_dict
from iklab.kinematics import fk, load_robot
from iklab.solver import IKSolver
from iklab.train import train

pytestmark = pytest.mark.slow

TINY = tiny_experiment("tiny-solver", rows=20000, model={"width": 128},
                       optimizer={"learning_rate": 3e-3, "schedule": "cosine"},
                       training={"epochs": 8, "batch_size": 256}, diagnostics={"probe_rows": 512},
                       evaluation={"knn_rows": 2000, "test_rows": 500})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("solver")
    mp = pytest.MonkeyPatch()
    uri = f"sqlite:///{tmp}/mlflow.db"
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    mp.delenv("MLFLOW_RUN_ID", raising=False)
    mp.chdir(tmp)
    mlflow.set_tracking_uri(uri)
    result = train(experiment_from_dict(TINY))
    assert result.status == "finished"
    yield result
    mlflow.set_tracking_uri(None)
    mp.undo()


def _targets(n, seed=1):
    rng = np.random.default_rng(seed)
    q = rng.uniform(CENTER - 0.25, CENTER + 0.25, size=(n, 6))
    return q, fk(load_robot("jaco"), q)


def test_solve_refines_to_tolerance_in_the_trained_branch(trained):
    solver = IKSolver.load(trained.model_uri, robot="jaco")
    q_true, poses = _targets(300)
    raw = solver.solve(poses, refine=False)
    assert np.median(raw.position_error_m) > 1e-4  # the network alone is millimetres off
    result = solver.solve(poses)
    assert result.success.mean() >= 0.99
    ok = result.success
    assert result.position_error_m[ok].max() <= 1e-5 and result.rotation_error_rad[ok].max() <= math.radians(0.01)
    # errors are FK-verified, not the solver's word
    check = fk(solver.robot, result.q)
    np.testing.assert_allclose(np.linalg.norm(check[:, :3, 3] - poses[:, :3, 3], axis=1),
                               result.position_error_m, atol=1e-12)
    same_branch = np.max(np.abs((result.q - q_true + np.pi) % (2 * np.pi) - np.pi), axis=1) < math.radians(1)
    assert same_branch.mean() >= 0.99 and result.within_region[ok].mean() >= 0.95
    assert result.iterations.max() <= 50


def test_each_input_type_and_local_path(trained, tmp_path):
    local = mlflow.artifacts.download_artifacts(trained.model_uri, dst_path=str(tmp_path))
    solver = IKSolver.load(local)
    _, poses = _targets(3)
    batch = solver.solve(poses)
    single = solver.solve(poses[0])
    assert single.q.shape == (1, 6)
    np.testing.assert_allclose(single.q[0], batch.q[0], atol=1e-9)
    one = solver.solve(SE3(poses[1], check=False))
    many = solver.solve(SE3([SE3(p, check=False) for p in poses]))
    np.testing.assert_allclose(one.q[0], batch.q[1], atol=1e-9)
    np.testing.assert_allclose(many.q, batch.q, atol=1e-9)


def test_bad_input_names_rows_and_unreachable_is_reported(trained):
    solver = IKSolver.load(trained.model_uri)
    _, poses = _targets(4)
    nan = poses.copy()
    nan[2, 0, 3] = np.nan
    with pytest.raises(ValueError, match=r"non-finite values in rows \[2\]"):
        solver.solve(nan)
    skew = poses.copy()
    skew[1, :3, :3] *= 1.1
    with pytest.raises(ValueError, match=r"rows \[1\].*not orthonormal"):
        solver.solve(skew)
    with pytest.raises(ValueError, match="shape"):
        solver.solve(np.zeros((2, 3, 4)))
    far = poses.copy()
    far[0, :3, 3] += 5.0  # 5 m away: out of reach
    result = solver.solve(far)
    assert not result.success[0] and result.position_error_m[0] > 3.0
    assert result.success[1:].all()


def test_load_errors(trained, tmp_path):
    with pytest.raises(ValueError, match="trained for robot 'jaco', not 'ur5'"):
        IKSolver.load(trained.model_uri, robot="ur5")
    with pytest.raises(ValueError, match="cannot load an MLflow model"):
        IKSolver.load(str(tmp_path / "nothing-here"))
    with pytest.raises(ValueError, match="metadata is incomplete"):
        IKSolver(None, {"robot": {"name": "jaco"}})

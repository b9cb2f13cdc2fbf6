"""IKSolver on a tiny model trained in the test (seconds), judged by FK."""

import json
import math
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from helpers import CENTER, HEALTHY, tiny_experiment
from mlflow.exceptions import MlflowException
from robot_venv import robot_venv
from spatialmath import SE3

from iklab.core.encodings import encode_pose_matrices
from iklab.core.kinematics import fk, load_robot, matrix_to_quaternion
from iklab.core.refine import refine
from iklab.learning.config import experiment_from_dict
from iklab.learning.training import train
from iklab.robot.model_metadata import NETWORK_ARTIFACT, NUMPY_NETWORK_FILE
from iklab.robot.serving import POSE_COLUMNS
from iklab.robot.solver import IKSolver, joint_distance, predict_joints
from iklab.studies.services import stop_group


@pytest.fixture(scope="module")
def trained(module_mlflow_store):
    result = train(experiment_from_dict(HEALTHY))
    assert result.status == "finished" and result.flags == []  # healthy: no diagnosis flag
    return result


def _targets(n, seed=1):
    rng = np.random.default_rng(seed)
    q = rng.uniform(CENTER - 0.25, CENTER + 0.25, size=(n, 6))
    return q, fk(load_robot("jaco"), q)


@pytest.mark.slow
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
    np.testing.assert_allclose(
        np.linalg.norm(check[:, :3, 3] - poses[:, :3, 3], axis=1), result.position_error_m, atol=1e-12
    )
    same_branch = np.max(np.abs((result.q - q_true + np.pi) % (2 * np.pi) - np.pi), axis=1) < math.radians(1)
    assert same_branch.mean() >= 0.99 and result.within_region[ok].mean() >= 0.95
    assert result.iterations.max() <= 50
    # onnxruntime runs the network here (the test extra has it); the numpy export answers the same
    assert type(solver.network).__name__ == "OnnxNetwork"
    numpy_solver = IKSolver.load(trained.model_uri, runtime="numpy")
    assert type(numpy_solver.network).__name__ == "NumpyNetwork"
    features = np.random.default_rng(5).normal(size=(64, solver.network.n_inputs)).astype(np.float32)
    np.testing.assert_allclose(solver.network(features), numpy_solver.network(features), rtol=1e-4, atol=1e-5)
    again = numpy_solver.solve(poses)
    assert (again.success == result.success).mean() >= 0.99
    np.testing.assert_allclose(again.q[ok & again.success], result.q[ok & again.success], atol=1e-6)
    with pytest.raises(ValueError, match="runtime must be 'auto' or 'numpy'"):
        IKSolver.load(trained.model_uri, runtime="torch")


@pytest.mark.slow
def test_every_answer_lies_inside_the_joint_limits(trained):
    """10k poses over Jaco's whole joint range (the network knows one small box) plus 1k out of
    reach: refinement wanders far (it treats a 2*pi-wide joint as free), yet every returned
    angle is inside [-pi, pi], with or without refinement, and errors are FK-verified there."""
    solver = IKSolver.load(trained.model_uri)
    low, high = solver.robot.qlim
    rng = np.random.default_rng(7)
    poses = fk(solver.robot, rng.uniform(low, high, size=(10_000, 6)))
    far = poses[:1000].copy()
    far[:, :3, 3] += 3.0  # 5 m away along (1, 1, 1): out of a 1 m reach
    poses = np.concatenate([poses, far])
    for refined in (True, False):
        result = solver.solve(poses, refine=refined)
        assert np.all((result.q >= low) & (result.q <= high)), np.abs(result.q).max()
        reached = fk(solver.robot, result.q)
        np.testing.assert_allclose(
            np.linalg.norm(reached[:, :3, 3] - poses[:, :3, 3], axis=1), result.position_error_m, atol=1e-12
        )
        assert not result.success[10_000:].any()
    assert result.success.sum() == 0  # refine=False: the network alone reaches no pose to 0.01 mm


def _second_solution(robot, q_true, pose, rng):
    """Another exact IK solution of ``pose`` (FK of ``q_true``), at least 20 deg away from it."""
    for _ in range(50):
        start = rng.uniform(robot.qlim[0], robot.qlim[1], size=(1, 6))
        out = refine(robot, start, pose[None], lower=robot.qlim[0], upper=robot.qlim[1], max_iterations=200)
        if out.success[0] and joint_distance(out.q, q_true[None])[0] > math.radians(20):
            return out.q[0]
    raise AssertionError("no second solution found")


@pytest.mark.slow
def test_seeded_solve_returns_the_solution_nearest_the_seed(trained):
    solver = IKSolver.load(trained.model_uri)
    rng = np.random.default_rng(3)
    q_true, poses = _targets(3, seed=5)
    others = np.array([_second_solution(solver.robot, q, p, rng) for q, p in zip(q_true, poses, strict=True)])
    for expected in (q_true, others):
        seed = expected + rng.normal(scale=math.radians(3), size=expected.shape)  # a few degrees off
        result = solver.solve(poses, q_seed=seed, max_joint_step=math.radians(10))
        assert result.success.all()
        assert np.all(joint_distance(result.q, expected) < math.radians(0.1))  # that solution, not the other
        reached = fk(solver.robot, result.q)
        np.testing.assert_allclose(
            np.linalg.norm(reached[:, :3, 3] - poses[:, :3, 3], axis=1), result.position_error_m, atol=1e-12
        )
    # one seed for all rows, (6,), works; an answer farther than max_joint_step is not a success
    result = solver.solve(poses, q_seed=others[0], max_joint_step=math.radians(1))
    far = joint_distance(result.q, np.broadcast_to(others[0], (3, 6))) > math.radians(1)
    assert far[1:].all() and not result.success[far].any()
    assert result.success[0]  # row 0's seed is one of its solutions


@pytest.mark.slow
def test_bad_seeds_are_refused(trained):
    solver = IKSolver.load(trained.model_uri)
    _, poses = _targets(2)
    with pytest.raises(ValueError, match=r"q_seed must have shape \(6,\) or \(2, 6\)"):
        solver.solve(poses, q_seed=np.zeros(5))
    seed = np.zeros((2, 6))
    seed[1, 3] = np.nan
    with pytest.raises(ValueError, match=r"q_seed has NaN or infinite values in rows \[1\]"):
        solver.solve(poses, q_seed=seed)
    with pytest.raises(ValueError, match="max_joint_step needs q_seed"):
        solver.solve(poses, max_joint_step=0.1)
    # issue 27: our words, naming the argument, not numpy's
    for bad in ([[0.0] * 6, [0.0] * 5], "zeros"):
        with pytest.raises(ValueError, match=r"q_seed must be joint angles in radians, \(6,\) or \(N, 6\) numbers"):
            solver.solve(poses, q_seed=bad)
    for bad in ("0.1", np.array([0.1, 0.2]), True, -1.0, math.nan):
        with pytest.raises(ValueError, match=r"max_joint_step must be a number > 0 \(radians\)"):
            solver.solve(poses, q_seed=np.zeros(6), max_joint_step=bad)
    # a start a full turn away is the same start (Jaco's limits are a full turn wide: any angle fits)
    near, _ = _targets(3)
    a, b = (
        solver.solve_path(fk(solver.robot, near), CENTER),
        solver.solve_path(fk(solver.robot, near), CENTER + 2 * np.pi),
    )
    np.testing.assert_array_equal(a.q, b.q)
    # a start no turn brings inside narrower limits is refused in one line
    import dataclasses

    narrow = dataclasses.replace(solver.robot, qlim=np.array([CENTER - 1.0, CENTER + 1.0]))
    boxed = IKSolver(solver.network, dataclasses.replace(solver.metadata, robot=narrow))
    with pytest.raises(ValueError, match=r"q_start is outside the joint limits in joints \[2\]: no path starts there"):
        boxed.solve_path(fk(solver.robot, near), np.where(np.arange(6) == 2, CENTER + 2.0, CENTER))


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_load_errors(trained, tmp_path):
    with pytest.raises(ValueError, match="trained for robot 'jaco', not 'ur5'"):
        IKSolver.load(trained.model_uri, robot="ur5")
    with pytest.raises(ValueError, match="cannot load an MLflow model"):
        IKSolver.load(str(tmp_path / "nothing-here"))
    with pytest.raises(ValueError, match="metadata is incomplete"):
        IKSolver(None, {"robot": {"name": "jaco"}})
    # a damaged model directory says what is wrong with it (issue 27)
    local = Path(mlflow.artifacts.download_artifacts(trained.model_uri, dst_path=str(tmp_path / "copy")))
    onnx_file = local / "artifacts" / "network.onnx"
    onnx_file.write_bytes(os.urandom(4096))
    with pytest.raises(ValueError, match=r"network.onnx: not an ONNX network onnxruntime can run"):
        IKSolver.load(str(local))
    onnx_file.unlink()  # the numpy export runs instead
    assert type(IKSolver.load(str(local)).network).__name__ == "NumpyNetwork"
    network = local / "artifacts" / NUMPY_NETWORK_FILE
    network.write_bytes(os.urandom(4096))
    with pytest.raises(ValueError, match=r"network.npz: not a NumpyNetwork export \(not an .npz archive\)$"):
        IKSolver.load(str(local), runtime="numpy")
    network.unlink()  # the Keras copy is still there: no silent fallback to it
    with pytest.raises(ValueError, match=r"artifacts/network.npz is missing from the model directory .*incomplete"):
        IKSolver.load(str(local), runtime="numpy")


# --- registry, README example, pyfunc and HTTP serving -----------------------------


@pytest.fixture(scope="module")
def champion(trained):
    """The tiny model registered as ik-jaco@champion in the test's tracking store."""
    version = mlflow.register_model(trained.model_uri, "ik-jaco").version
    mlflow.MlflowClient().set_registered_model_alias("ik-jaco", "champion", version)
    return f"models:/ik-jaco/{version}"


@pytest.mark.slow
def test_registry_uris_and_the_bare_network(trained, champion, tmp_path):
    _, poses = _targets(5)
    # the numpy export: the bare Keras network below runs as one too (onnxruntime's answers differ
    # by float32 rounding: tests/test_solver.py, test_solve_refines_to_tolerance_in_the_trained_branch)
    expected = IKSolver.load(trained.model_uri, runtime="numpy").solve(poses, refine=False).q
    for uri in (champion, "models:/ik-jaco@champion"):
        np.testing.assert_allclose(
            IKSolver.load(uri, runtime="numpy").solve(poses, refine=False).q, expected, atol=1e-9
        )
    # the Keras network inside the pyfunc carries the metadata too (what iklab logged before the wrapper)
    local = mlflow.artifacts.download_artifacts(trained.model_uri, dst_path=str(tmp_path))
    network = IKSolver.load(f"{local}/artifacts/{NETWORK_ARTIFACT}")
    np.testing.assert_allclose(network.solve(poses, refine=False).q, expected, atol=1e-9)


@pytest.mark.slow
def test_readme_robot_example_runs(champion, capsys):
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = re.search(r"<!-- robot-example -->\n```python\n(.*?)```", readme, re.S)
    assert block, "README lost its robot-code example"
    namespace = {}
    exec(compile(block.group(1), "README.md robot example", "exec"), namespace)
    result = namespace["result"]
    assert len(result.q) == 100 and result.success.mean() >= 0.95
    assert result.position_error_m[result.success].max() <= 1e-5
    assert namespace["q_for_robot"].shape == (result.success.sum(), 6)
    assert "within 0.01 mm and 0.01 deg" in capsys.readouterr().out


def _pose_rows(poses) -> pd.DataFrame:
    return pd.DataFrame(np.hstack([poses[:, :3, 3], matrix_to_quaternion(poses[:, :3, :3])]), columns=POSE_COLUMNS)


@pytest.mark.slow
def test_pyfunc_predicts_joints_and_refuses_bad_rows(trained):
    model = mlflow.pyfunc.load_model(trained.model_uri)
    _, poses = _targets(50)
    rows = _pose_rows(poses)
    rows.iloc[::2, 3:] *= -1  # q and -q are the same rotation
    out = model.predict(rows)
    assert list(out.columns) == [f"q{i}" for i in range(6)] + [
        "position_error_m",
        "rotation_error_rad",
        "success",
        "within_region",
        "iterations",
    ]
    assert out["success"].mean() >= 0.95 and out["position_error_m"][out["success"]].max() <= 1e-5
    check = fk(load_robot("jaco"), out[[f"q{i}" for i in range(6)]].to_numpy())
    np.testing.assert_allclose(
        np.linalg.norm(check[:, :3, 3] - poses[:, :3, 3], axis=1), out["position_error_m"], atol=1e-12
    )
    raw = model.predict(rows, params={"refine": False})
    assert (raw["iterations"] == 0).all() and raw["position_error_m"].median() > 1e-4
    bad = rows.copy()
    bad.loc[3, "qx"] += 0.5
    with pytest.raises(MlflowException, match=r"rows \[3\].*not unit length"):
        model.predict(bad)
    bad = rows.copy()
    bad.loc[7, "z"] = np.inf
    with pytest.raises(MlflowException, match=r"rows \[7\].*NaN or infinite"):
        model.predict(bad)


def test_load_refuses_a_model_without_iklab_metadata(tmp_path):
    mlflow.pyfunc.save_model(str(tmp_path / "other"), python_model=_Echo(), pip_requirements=["mlflow"])
    with pytest.raises(ValueError, match="has no iklab metadata"):
        IKSolver.load(str(tmp_path / "other"))


class _Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return model_input


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_served_champion_answers_over_http(champion, tmp_path):
    port = _free_port()
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    log = open(tmp_path / "serve.log", "w+")  # noqa: SIM115 (outlives the block: closed after the server stops)
    server = subprocess.Popen(
        [
            str(mlflow_cli),
            "models",
            "serve",
            "-m",
            "models:/ik-jaco@champion",
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        # the server execs `uvicorn` from PATH: the venv's, as under `make`
        env={**os.environ, "PATH": f"{mlflow_cli.parent}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, f"mlflow models serve exited: {(tmp_path / 'serve.log').read_text()}"
            try:
                with urllib.request.urlopen(f"{base}/ping", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "server did not answer /ping within 180 s"
            time.sleep(1)
        _, poses = _targets(20)
        rows = _pose_rows(poses)
        status, body = _post(
            f"{base}/invocations",
            {
                "dataframe_split": {"columns": POSE_COLUMNS, "data": rows.to_numpy().tolist()},
                "params": {"refine": True},
            },
        )
        assert status == 200, body
        answers = pd.DataFrame(body["predictions"])
        assert len(answers) == 20 and answers["success"].mean() >= 0.95
        q = answers[[f"q{i}" for i in range(6)]].to_numpy()
        assert np.all(np.abs(q) <= np.pi)  # Jaco's limits
        reached = fk(load_robot("jaco"), q)
        assert np.linalg.norm(reached[:, :3, 3] - poses[:, :3, 3], axis=1)[answers["success"]].max() <= 1e-5
        # seed columns: each row's answer is the exact solution nearest its seed
        q_true, _ = _targets(20)
        seeds = pd.DataFrame(q_true + math.radians(2), columns=[f"seed_q{i}" for i in range(6)])
        seeded = pd.concat([rows, seeds], axis=1)
        status, body = _post(
            f"{base}/invocations",
            {"dataframe_split": {"columns": list(seeded.columns), "data": seeded.to_numpy().tolist()}},
        )
        assert status == 200, body
        answers = pd.DataFrame(body["predictions"])
        assert answers["success"].all()
        assert joint_distance(answers[[f"q{i}" for i in range(6)]].to_numpy(), q_true).max() < math.radians(0.1)
        # 50 requests at once (the server runs them on its threads): every one answered, as serially
        batches = [_pose_rows(_targets(100, seed=100 + i)[1]) for i in range(50)]
        requests = [{"dataframe_split": {"columns": POSE_COLUMNS, "data": b.to_numpy().tolist()}} for b in batches]
        serial = _post(f"{base}/invocations", requests[0])
        with ThreadPoolExecutor(50) as pool:
            answers = list(pool.map(lambda body: _post(f"{base}/invocations", body), requests))
        assert [status for status, _ in answers] == [200] * 50, [body for _, body in answers if "message" in body][:1]
        assert answers[0][1] == serial[1]
        for (_, body), batch in zip(answers, batches, strict=True):
            answer = pd.DataFrame(body["predictions"])
            assert len(answer) == 100 and answer["success"].mean() >= 0.95
            q = answer[[f"q{i}" for i in range(6)]].to_numpy()[answer["success"]]
            target = batch.to_numpy()[answer["success"], :3]
            assert np.linalg.norm(fk(load_robot("jaco"), q)[:, :3, 3] - target, axis=1).max() <= 1e-5
        assert server.poll() is None
        # an empty request answers with no rows; a null param is refused in one line, no traceback
        status, body = _post(f"{base}/invocations", {"dataframe_split": {"columns": POSE_COLUMNS, "data": []}})
        assert status == 200 and body["predictions"] == [], body
        status, body = _post(
            f"{base}/invocations",
            {
                "dataframe_split": {"columns": POSE_COLUMNS, "data": rows.to_numpy().tolist()},
                "params": {"refine": None},
            },
        )
        assert status == 400 and "refine must be true or false" in body["message"], body
        assert "Traceback" not in json.dumps(body), body
        rows.loc[4, "qw"] = 3.0
        status, body = _post(
            f"{base}/invocations", {"dataframe_split": {"columns": POSE_COLUMNS, "data": rows.to_numpy().tolist()}}
        )
        assert status == 400 and "rows [4]" in body["message"], body
    finally:
        _stop(server)
        log.close()


def _stop(server: subprocess.Popen) -> None:
    """SIGTERM the server's process group (uvicorn and its worker), SIGKILL after 30 s."""
    stop_group(server.pid)
    server.wait(timeout=30)


@pytest.mark.slow
def test_angle_output_models_load_without_their_custom_loss(module_mlflow_store):
    # `angles` outputs train with iklab's wrapped_angle_loss; loading for inference must not need it
    result = train(
        experiment_from_dict(tiny_experiment("tiny-angles", data={"output_encoding": "angles"}, training={"epochs": 2}))
    )
    assert result.status == "finished"
    _, poses = _targets(20)
    solver = IKSolver.load(result.model_uri, runtime="numpy")  # as the pyfunc runs it
    assert solver.output_encoding == "angles"
    expected = solver.solve(poses, refine=False).q
    served = mlflow.pyfunc.load_model(result.model_uri).predict(_pose_rows(poses), params={"refine": False})
    np.testing.assert_allclose(served[[f"q{i}" for i in range(6)]].to_numpy(), expected, atol=1e-9)


# --- no TensorFlow at robot time, paths, seeds over HTTP ------------------------------


@pytest.mark.slow
def test_the_numpy_export_matches_the_keras_network(trained, tmp_path):
    """The logged model carries the network's numpy export; the solver runs it. Its raw answers
    equal the Keras network's (float32 rounding), so do the refined ones."""
    local = mlflow.artifacts.download_artifacts(trained.model_uri, dst_path=str(tmp_path))
    keras_solver = IKSolver.load(f"{local}/artifacts/{NETWORK_ARTIFACT}")  # the tensorflow flavor
    keras_model = mlflow.tensorflow.load_model(f"{local}/artifacts/{NETWORK_ARTIFACT}")
    solver = IKSolver.load(trained.model_uri)
    assert (Path(local) / "artifacts" / NUMPY_NETWORK_FILE).is_file()
    _, poses = _targets(500)
    features = encode_pose_matrices(poses, solver.input_encoding, solver.robot)
    np.testing.assert_allclose(solver.network(features), keras_model(features, training=False), atol=1e-5)
    raw = solver.predict(poses)
    np.testing.assert_allclose(raw, predict_joints(keras_model, features, solver.output_encoding), atol=1e-5)
    a, b = solver.solve(poses), keras_solver.solve(poses)
    assert a.success.mean() >= 0.99 and np.array_equal(a.success, b.success)
    assert joint_distance(a.q, b.q)[a.success].max() < 1e-4


_ROBOT_SCRIPT = """
import importlib.util, json, sys
import numpy as np
from iklab.robot.solver import IKSolver
solver = IKSolver.load(sys.argv[1])
poses = np.load(sys.argv[2])
result = solver.solve(poses)
path = solver.solve_path(poses[:20], result.q[0], max_joint_step=1.0)
np.save(sys.argv[3], np.stack([result.q, solver.predict(poses)]))
print(json.dumps({
    "tensorflow_installed": importlib.util.find_spec("tensorflow") is not None,
    "loaded": sorted(m for m in ("tensorflow", "keras", "pandas", "pyarrow") if m in sys.modules),
    "success": float(result.success.mean()),
    "path_steps": len(path.q),
}))
"""


@pytest.mark.slow
def test_the_solver_runs_in_a_venv_without_tensorflow(trained, tmp_path):
    import sysconfig

    _, poses = _targets(200)
    solver = IKSolver.load(trained.model_uri)  # here, with TensorFlow installed: the answers to match
    expected, raw_expected = solver.solve(poses).q, solver.predict(poses)
    solver.solve_path(poses[:20], expected[0], max_joint_step=1.0)  # every kernel the robot script runs, compiled
    root = Path(__file__).resolve().parents[1]
    venv = tmp_path / "robot-venv"
    python, site, linked = robot_venv(root, venv)
    # the base install resolves to none of them, and none is in the venv's site-packages
    absent = {"tensorflow", "keras", "pandas", "pyarrow"}
    assert {"numpy", "scipy", "numba", "mlflow-skinny"} <= linked and not linked & absent, sorted(linked)
    entries = {p.name.split("-")[0].lower() for p in site.iterdir()}
    assert not entries & absent, sorted(entries & absent)
    assert not (site / "iklab").is_symlink() and (site / "iklab" / "robot" / "solver.py").is_file()
    np.save(tmp_path / "poses.npy", poses)
    # after the robot script: where every module came from, as this process saw it
    provenance = """
import iklab
print(json.dumps({
    "importable": sorted(m for m in ("tensorflow", "keras", "pandas", "pyarrow") if importlib.util.find_spec(m)),
    "sys_path": sys.path,
    "files": sorted({m.__file__ for m in list(sys.modules.values()) if getattr(m, "__file__", None)}),
    "iklab": iklab.__file__,
}))
"""
    (tmp_path / "robot.py").write_text(_ROBOT_SCRIPT + provenance)
    out = subprocess.run(
        [
            str(python),
            "-I",  # no PYTHONPATH, user site-packages or script folder on sys.path
            str(tmp_path / "robot.py"),
            trained.model_uri,
            str(tmp_path / "poses.npy"),
            str(tmp_path / "q"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,  # not the repository: the installed package, not src/
        env={**os.environ, "MLFLOW_TRACKING_URI": mlflow.get_tracking_uri()},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    *_, line, origin = out.stdout.strip().splitlines()
    report, origin = json.loads(line), json.loads(origin)
    assert report == {"tensorflow_installed": False, "loaded": [], "success": report["success"], "path_steps": 20}
    assert report["success"] >= 0.99
    assert origin["importable"] == []
    # every path and module is the robot venv's or the interpreter's standard library: not this
    # venv's site-packages, not the repository's src/
    stdlib = Path(sysconfig.get_path("stdlib")).parent  # lib/: python3.11/ and python311.zip

    def outside(path: str) -> bool:
        path = Path(path)
        if path.is_relative_to(venv) or path.is_relative_to(venv.resolve()):
            return False
        return not path.is_relative_to(stdlib) or "site-packages" in path.relative_to(stdlib).parts

    assert not [p for p in origin["sys_path"] if outside(p)], origin["sys_path"]
    assert not [f for f in origin["files"] if outside(f) and f != str(tmp_path / "robot.py")]
    assert Path(origin["iklab"]) == site / "iklab" / "__init__.py"
    q_robot, raw_robot = np.load(tmp_path / "q.npy")
    np.testing.assert_allclose(raw_robot, raw_expected, atol=1e-6)
    np.testing.assert_allclose(q_robot, expected, atol=1e-9)


def _circle(solver, q_center, radius=0.06, steps=600):
    """A circle of poses in the plane through FK(q_center), orientation held."""
    center = fk(solver.robot, q_center[None])[0]
    angle = np.linspace(0.0, 2 * np.pi, steps)
    poses = np.repeat(center[None], steps, axis=0)
    poses[:, 0, 3] += radius * (np.cos(angle) - 1.0)
    poses[:, 1, 3] += radius * np.sin(angle)
    return poses


@pytest.mark.slow
def test_solve_path_tracks_a_circle_on_one_branch(trained):
    solver = IKSolver.load(trained.model_uri)
    q_start = CENTER.copy()
    poses = _circle(solver, q_start)
    path = solver.solve_path(poses, q_start, max_joint_step=math.radians(2))
    assert path.q.shape == (600, 6) and path.success.all()
    assert path.position_error_m.max() <= 1e-5 and path.rotation_error_rad.max() <= math.radians(0.01)
    assert path.worst_joint_step <= math.radians(2)
    before = np.vstack([q_start, path.q[:-1]])
    np.testing.assert_allclose(path.joint_step, joint_distance(path.q, before), atol=0)
    # the circle closes: the last answer is the first pose's, on the same branch
    assert joint_distance(path.q[-1:], path.q[:1])[0] < math.radians(0.1)
    # a jump the path cannot make in one step is reported on that step, not hidden
    jumpy = poses.copy()
    jumpy[300:, 2, 3] += 0.05  # 5 cm up at step 300
    path = solver.solve_path(jumpy, q_start, max_joint_step=math.radians(2))
    assert path.success[:300].all() and not path.success[300]
    assert path.joint_step[300] > math.radians(2)
    with pytest.raises(ValueError, match=r"q_start must have shape \(6,\)"):
        solver.solve_path(poses, np.zeros(5))


@pytest.mark.slow
def test_concurrent_calls_from_threads_give_the_serial_answers(trained):
    """Robot stacks call IK from many threads: 8 threads x 200 poses through solve, solve_all and
    solve_path (batches big enough for the parallel kernels) return exactly the serial answers."""
    solver = IKSolver.load(trained.model_uri)
    batches = [_targets(200, seed=10 + i)[1] for i in range(8)]
    circle = _circle(solver, CENTER.copy())[:200]

    def work(i):
        return (
            solver.solve(batches[i]),
            solver.solve_all(batches[i][:100]),
            solver.solve_path(circle, CENTER, max_joint_step=math.radians(2)),
        )

    serial = [work(i) for i in range(8)]
    start = threading.Barrier(8)

    def together(i):
        start.wait(timeout=60)
        return work(i)

    with ThreadPoolExecutor(8) as pool:
        concurrent = list(pool.map(together, range(8)))
    for (one, many, path), (one_c, many_c, path_c) in zip(serial, concurrent, strict=True):
        assert one.success.mean() >= 0.99
        np.testing.assert_array_equal(one_c.q, one.q)
        np.testing.assert_array_equal(one_c.success, one.success)
        assert len(many_c) == len(many) == 100
        for a, b in zip(many, many_c, strict=True):
            np.testing.assert_array_equal(b.q, a.q)
        np.testing.assert_array_equal(path_c.q, path.q)
        np.testing.assert_array_equal(path_c.joint_step, path.joint_step)


@pytest.mark.slow
def test_pyfunc_seed_columns_pick_the_nearest_solution(trained):
    model = mlflow.pyfunc.load_model(trained.model_uri)
    solver = IKSolver.load(trained.model_uri)
    rng = np.random.default_rng(3)
    q_true, poses = _targets(3, seed=5)
    others = np.array([_second_solution(solver.robot, q, p, rng) for q, p in zip(q_true, poses, strict=True)])
    rows = _pose_rows(poses)
    seeded = rows.copy()
    for i in range(6):
        seeded[f"seed_q{i}"] = others[:, i] + math.radians(2)
    seeded.loc[2, [f"seed_q{i}" for i in range(6)]] = np.nan  # no seed for row 2
    out = model.predict(seeded)
    q = out[[f"q{i}" for i in range(6)]].to_numpy()
    assert out["success"].all()
    assert np.all(joint_distance(q[:2], others[:2]) < math.radians(0.1))
    assert joint_distance(q[2:], q_true[2:])[0] < math.radians(1)  # unseeded: the network's branch
    out = model.predict(seeded, params={"max_joint_step": math.radians(1)})
    assert not out["success"][:2].any() and out["success"][2]  # 2 deg from their seeds
    partial = seeded.drop(columns=["seed_q5"])
    with pytest.raises(MlflowException, match="seed columns come as all of"):
        model.predict(partial)
    seeded.loc[1, "seed_q3"] = np.nan
    with pytest.raises(MlflowException, match=r"rows \[1\].*some seed columns but not all six"):
        model.predict(seeded)


def test_a_model_logged_before_the_layer_folders_still_loads():
    """tests/fixtures/model-72cf481 was logged when the modules sat in one flat folder."""
    solver = IKSolver.load(str(Path(__file__).parent / "fixtures" / "model-72cf481"), robot="jaco")
    q_true, poses = _targets(200, seed=7)
    result = solver.solve(poses)
    assert result.success.mean() >= 0.99
    reached = fk(load_robot("jaco"), result.q[result.success])
    assert np.linalg.norm(reached[:, :3, 3] - poses[result.success, :3, 3], axis=1).max() <= 1e-5
    raw = solver.solve(poses, refine=False)
    assert np.median(np.linalg.norm(fk(load_robot("jaco"), raw.q)[:, :3, 3] - poses[:, :3, 3], axis=1)) < 0.03
    # and it still serves: its pyfunc code imports the wrapper from iklab.serving, the old path
    served = mlflow.pyfunc.load_model(str(Path(__file__).parent / "fixtures" / "model-72cf481"))
    answer = served.predict(_pose_rows(poses[:20]))
    same = answer["success"].to_numpy() & result.success[:20]
    assert same.mean() >= 0.95
    served_q = answer[[f"q{i}" for i in range(6)]].to_numpy()
    np.testing.assert_allclose(served_q[same], result.q[:20][same], atol=1e-9)


@pytest.mark.slow
def test_edge_inputs_of_solve_all_and_solve_path(trained):
    """Issue 27: an empty batch gives no solution sets; distinct_rad must be a positive finite
    angle; after a failed path step the next one's jump is measured from the last success."""
    solver = IKSolver.load(trained.model_uri)
    assert solver.solve_all(np.zeros((0, 4, 4))) == []
    _, poses = _targets(20, seed=4)
    for bad in (0, -0.1, math.nan, math.inf, "1"):
        with pytest.raises(ValueError, match="distinct_rad must be a finite number > 0"):
            solver.solve_all(poses, distinct_rad=bad)
    empty = solver.solve_path(np.zeros((0, 4, 4)), CENTER)
    assert empty.q.shape == (0, 6) and empty.joint_step.shape == (0,) and empty.worst_joint_step == 0.0
    line = _circle(solver, CENTER.copy(), steps=40)[:20]
    line[10, 0, 3] += 5.0  # 5 m away: unreachable
    path = solver.solve_path(line, CENTER, max_joint_step=math.radians(5))
    assert not path.success[10] and path.success[np.arange(20) != 10].all()
    np.testing.assert_allclose(path.joint_step[11], joint_distance(path.q[11:12], path.q[9:10])[0], atol=0)
    assert path.joint_step[11] < math.radians(5)  # the real step from row 9, not from the failed answer
    assert path.worst_joint_step == path.joint_step[10] > math.radians(5)  # the failed row's own jump


@pytest.mark.slow
def test_pyfunc_params_and_empty_requests(trained):
    """Issue 27: a null or wrong param is refused in one line naming it (never silently off), a
    huge value is not echoed back whole, max_joint_step without seeds is refused, an empty request
    answers with no rows."""
    model = mlflow.pyfunc.load_model(trained.model_uri)
    _, poses = _targets(3)
    rows = _pose_rows(poses)
    empty = model.predict(rows.iloc[:0])
    assert len(empty) == 0 and list(empty.columns)[:6] == [f"q{i}" for i in range(6)]
    for params, words in (
        ({"max_joint_step": None}, "max_joint_step must be a number >= 0 radians (0: none), got None"),
        ({"max_iterations": None}, "max_iterations must be an integer >= 0, got None"),
        ({"refine": None}, "refine must be true or false, got None"),
        ({"max_joint_step": 0.1}, "max_joint_step needs the seed columns seed_q0..seed_q5"),
    ):
        with pytest.raises(MlflowException, match=re.escape(words)):
            model.predict(rows, params=params)
    from iklab.core.refine import shown

    assert len(shown("x" * 50_000_000)) <= 80 and "50,000,002 characters" in shown("x" * 50_000_000)

"""iklab's lean HTTP server (`python -m iklab.serve`): MLflow's formats, the solver's answers,
bad requests in our words, concurrent requests, stopped by its process id. No TensorFlow."""

import json
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from iklab.core.kinematics import fk, matrix_to_quaternion
from iklab.robot.solver import IKSolver

MODEL = Path(__file__).parent / "fixtures" / "model-72cf481"
COLUMNS = ["x", "y", "z", "qw", "qx", "qy", "qz"]


@pytest.fixture(scope="module")
def served():
    server = subprocess.Popen(
        [sys.executable, "-m", "iklab.serve", "--model", str(MODEL), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    line = server.stdout.readline()
    match = re.search(r"on http://127.0.0.1:(\d+)/invocations", line)
    assert match, line
    yield server, f"http://127.0.0.1:{match.group(1)}"
    if server.poll() is None:
        server.kill()
        server.wait()


def post(base, payload, path="/invocations"):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    request = urllib.request.Request(base + path, body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def rows_of(poses):
    return np.hstack([poses[:, :3, 3], matrix_to_quaternion(poses[:, :3, :3])]).tolist()


@pytest.fixture(scope="module")
def targets():
    solver = IKSolver.load(str(MODEL))
    q = np.random.default_rng(3).uniform(solver.region.lower, solver.region.upper, size=(40, 6))
    poses = fk(solver.robot, q)
    return solver, poses, q


def test_answers_as_the_solver_does(served, targets):
    _, base = served
    solver, poses, q = targets
    status, answer = post(base, {"dataframe_split": {"columns": COLUMNS, "data": rows_of(poses[:10])}})
    assert status == 200 and len(answer["predictions"]) == 10
    first = answer["predictions"][0]
    assert list(first) == [f"q{i}" for i in range(6)] + [
        "position_error_m",
        "rotation_error_rad",
        "success",
        "within_region",
        "iterations",
    ]
    expected = solver.solve(poses[:10])
    served_q = np.array([[p[f"q{i}"] for i in range(6)] for p in answer["predictions"]])
    np.testing.assert_allclose(served_q, expected.q, atol=1e-9)
    assert [p["success"] for p in answer["predictions"]] == expected.success.tolist()
    # records, with a seed on one row and none (null) on the other: the seeded row keeps its branch
    records = [dict(zip(COLUMNS, row, strict=True)) for row in rows_of(poses[:2])]
    records[0].update({f"seed_q{i}": float(q[0, i]) for i in range(6)})
    records[1].update({f"seed_q{i}": None for i in range(6)})
    status, answer = post(base, {"dataframe_records": records, "params": {"max_iterations": 30}})
    assert status == 200 and all(p["success"] for p in answer["predictions"])
    np.testing.assert_allclose([answer["predictions"][0][f"q{i}"] for i in range(6)], q[0], atol=1e-6)
    assert post(base, {"dataframe_split": {"columns": COLUMNS, "data": []}}) == (200, {"predictions": []})


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        ({"dataframe_split": {"columns": ["x"], "data": [[1.0]]}}, "pose rows need columns"),
        ({"dataframe_split": {"columns": COLUMNS, "data": [[0, 0, 0, 2, 0, 0, 0]]}}, "not unit length"),
        ({"dataframe_split": {"columns": COLUMNS, "data": [["a"] * 7]}}, "every value must be a number"),
        ({"dataframe_split": {"columns": COLUMNS, "data": [[0] * 6]}}, "rows of 7 values"),
        ({"inputs": [1]}, "needs dataframe_split or dataframe_records"),
        ({"dataframe_records": [dict.fromkeys(COLUMNS, 0.5)], "params": {"max_iterations": None}}, "got None"),
        ({"dataframe_records": [dict.fromkeys(COLUMNS, 0.5)], "params": {"max_joint_step": 0.1}}, "needs the seed"),
        ({"dataframe_records": [{**dict.fromkeys(COLUMNS, 0.5), "seed_q0": 1.0}]}, "seed columns come as all of"),
        (b"{not json", "Expecting property name"),
        ({"dataframe_records": [dict.fromkeys(COLUMNS, 0.5)], "params": {"refine": "x" * 100_000}}, "characters)"),
    ],
)
def test_a_bad_request_is_a_400_in_our_words(served, payload, words):
    _, base = served
    status, answer = post(base, payload)
    assert status == 400 and answer["error_code"] == "INVALID_PARAMETER_VALUE"
    assert words in answer["message"] and len(answer["message"]) < 400


def test_concurrent_requests_get_the_serial_answers(served, targets):
    _, base = served
    _, poses, _ = targets
    payloads = [{"dataframe_split": {"columns": COLUMNS, "data": rows_of(poses[i : i + 4])}} for i in range(0, 40, 4)]
    serial = [post(base, p) for p in payloads]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda p: post(base, p), payloads * 3))
    assert together == serial * 3 and all(status == 200 for status, _ in together)


def test_health_unknown_paths_and_stopping_by_its_id(served):
    server, base = served
    with urllib.request.urlopen(base + "/ping", timeout=10) as response:
        assert response.status == 200
    status, answer = post(base, {}, path="/nope")
    assert status == 404 and "no such endpoint" in answer["message"]
    server.send_signal(signal.SIGTERM)
    assert server.wait(timeout=30) == 0 and "stopped" in server.stdout.read()


def test_a_model_that_does_not_load_is_one_line(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "iklab.serve", "--model", str(tmp_path / "none")], capture_output=True, text=True
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert done.stderr.startswith("iklab.serve: error: cannot load")

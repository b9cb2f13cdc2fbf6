import contextlib
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def jaco():
    from iklab.core.kinematics import load_robot

    return load_robot("jaco")


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@contextlib.contextmanager
def _throwaway_store(directory, monkeypatch):
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{directory}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.chdir(directory)
    mlflow.set_tracking_uri(uri)
    try:
        yield MlflowClient(uri)
    finally:
        mlflow.set_tracking_uri(None)


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch):
    """A throw-away MLflow store and working directory (datasets land in tmp_path/data)."""
    with _throwaway_store(tmp_path, monkeypatch) as client:
        yield client


@pytest.fixture(scope="module")
def module_mlflow_store(tmp_path_factory):
    """The same, shared by one test module (for a model trained once per module)."""
    monkeypatch = pytest.MonkeyPatch()
    try:
        with _throwaway_store(tmp_path_factory.mktemp("store"), monkeypatch) as client:
            yield client
    finally:
        monkeypatch.undo()


# `make test` runs files in two processes (pytest-xdist, --dist loadfile), handing out files in
# collection order. The longest files go first, so the short ones fill the end and both processes
# finish together (longest processing time first). Seconds: the 120 slowest test phases of one
# local run summed per file (2026-12-06), less what that day's cuts took out; a file not listed
# keeps its place after them.
LONGEST_FIRST = [
    "test_services.py",  # 144
    "test_experiments.py",  # 141, ~125 since
    "test_search.py",  # 125
    "test_bad_inputs.py",  # 143, ~115 since
    "test_search_workers.py",  # 148, ~100 since
    "test_ablations.py",  # 54 (+18 for the Puma560 file)
    "test_solver.py",  # 55
    "test_cases.py",  # 52
    "test_bad_inputs_data_gen.py",  # 46
    "test_train.py",  # 45
    "test_onnx.py",  # 25
    "test_stream.py",  # 23
    "test_generate.py",  # 18
    "test_task_loss.py",  # 17
]


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: order within a file kept

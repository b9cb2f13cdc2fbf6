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
# finish together (longest processing time first). Seconds: every test phase of one local run
# (--durations=0) summed per file (2026-12-06, 517 tests in 462 s); a file not listed keeps its
# place after them.
LONGEST_FIRST = [
    "test_services.py",  # 117
    "test_experiments.py",  # 105
    "test_ablations.py",  # 88
    "test_search.py",  # 87
    "test_bad_inputs.py",  # 59
    "test_solver.py",  # 50
    "test_search_workers.py",  # 48
    "test_cases.py",  # 43
    "test_train.py",  # 40
    "test_stream.py",  # 23
    "test_onnx.py",  # 18
    "test_generate.py",  # 16
    "test_bad_inputs_data_gen.py",  # 12
    "test_task_loss.py",  # 11
]


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: order within a file kept

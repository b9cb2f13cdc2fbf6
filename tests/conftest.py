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

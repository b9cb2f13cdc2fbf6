import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def jaco():
    from iklab.kinematics import load_robot

    return load_robot("jaco")


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch):
    """A throw-away MLflow store and working directory (datasets land in tmp_path/data)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(uri)
    yield MlflowClient(uri)
    mlflow.set_tracking_uri(None)

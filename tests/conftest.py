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

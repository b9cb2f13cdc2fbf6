import math
import os
import subprocess
import sys

import numpy as np
import pytest

from iklab.core import encodings as E
from iklab.core.kinematics import fk, matrix_to_quaternion, matrix_to_rpy, quaternion_to_matrix, rot6d_to_matrix
from iklab.core.regions import region_preset
from iklab.learning import datasets as D
from iklab.learning.config import DataConfig


@pytest.fixture(scope="module")
def split(jaco):
    q = np.random.default_rng(0).uniform(-math.pi, math.pi, size=(500, 6))
    poses = fk(jaco, q)
    return D.Split(q, poses[:, :3, 3], matrix_to_quaternion(poses[:, :3, :3]))


def test_input_encodings_round_trip_to_the_pose(split, jaco):
    rotation = quaternion_to_matrix(split.quat)
    xyz_rpy = E.encode_inputs(split.position, split.quat, "xyz_rpy").astype(np.float64)
    np.testing.assert_allclose(xyz_rpy[:, 3:], matrix_to_rpy(rotation), atol=1e-6)  # float32
    xyz_quat = E.encode_inputs(split.position, split.quat, "xyz_quat")
    np.testing.assert_allclose(quaternion_to_matrix(xyz_quat[:, 3:].astype(np.float64)), rotation, atol=1e-6)
    rot6d = E.encode_inputs(split.position, split.quat, "xyz_rot6d").astype(np.float64)
    np.testing.assert_allclose(rot6d_to_matrix(rot6d[:, 3:]), rotation, atol=1e-6)
    for kind, columns in E.INPUT_ENCODINGS.items():
        features = E.encode_inputs(split.position, split.quat, kind, jaco)
        assert features.shape == (500, len(columns)) and features.dtype == np.float32
        np.testing.assert_allclose(features[:, :3], split.position, atol=1e-6)


def test_split_poses_are_the_forward_kinematics_of_its_joints(split, jaco):
    np.testing.assert_allclose(split.poses(), fk(jaco, split.q), atol=1e-12)


@pytest.mark.parametrize("kind", ["angles", "sincos"])
def test_output_encodings_round_trip(split, kind):
    targets = E.encode_targets(split.q, kind)
    assert targets.shape == (500, len(E.OUTPUT_ENCODINGS[kind]))
    decoded = E.decode_outputs(targets, kind)
    error = np.abs((decoded - split.q + math.pi) % (2 * math.pi) - math.pi)
    assert error.max() < 1e-6  # float32 targets


def test_unknown_encodings(split):
    with pytest.raises(ValueError, match="unknown input encoding 'xyz'"):
        E.encode_inputs(split.position, split.quat, "xyz")
    with pytest.raises(ValueError, match="'xyz_rotmat_wrist' needs the robot"):
        E.encode_inputs(split.position, split.quat, "xyz_rotmat_wrist")
    with pytest.raises(ValueError, match="unknown output encoding"):
        E.encode_targets(split.q, "degrees")


def test_ensure_dataset_generates_once_and_checks_identity(tmp_path, monkeypatch, jaco):
    monkeypatch.chdir(tmp_path)
    cfg = DataConfig(rows=3000, seed=2)
    path = D.ensure_dataset(cfg)
    assert (
        path == tmp_path / "data" / "jaco-working-3000-s2"
        or path.resolve() == (tmp_path / "data" / "jaco-working-3000-s2").resolve()
    )
    dataset = D.load_dataset(path)
    assert len(dataset.train) + len(dataset.val) + len(dataset.test) == 3000
    assert dataset.ambiguity is not None and 0.0 <= dataset.ambiguity <= 1.0
    assert dataset.region.name == "working" and dataset.robot.name == "jaco"
    np.testing.assert_allclose(dataset.train.poses(), fk(jaco, dataset.train.q), atol=1e-12)
    assert not list(path.parent.glob(".*.lock"))  # the generation lock goes with the generation
    mtime = (path / "card.json").stat().st_mtime
    assert D.ensure_dataset(cfg) == path and (path / "card.json").stat().st_mtime == mtime
    with pytest.raises(ValueError, match="holds a different dataset"):
        D.ensure_dataset(DataConfig(rows=3000, seed=2, region="full", path=str(path)))


def test_custom_region_config(jaco):
    cfg = DataConfig(region="custom", lower=(0,) * 6, upper=(0.5,) * 6)
    assert D.config_region(cfg, jaco).upper.tolist() == [0.5] * 6
    assert "custom-" in str(D.dataset_path(cfg))
    with pytest.raises(ValueError, match="set data.lower and data.upper"):
        D.config_region(DataConfig(region="custom"), jaco)
    with pytest.raises(ValueError, match="need data.region: custom"):
        D.config_region(DataConfig(lower=(0,) * 6), jaco)
    assert D.config_region(DataConfig(region="full"), jaco).name == region_preset(jaco, "full").name


_ENSURE_SCRIPT = """
import os, sys
import iklab.learning.datasets as D
from iklab.learning.config import DataConfig

original = D.generate

def generate(*args, **kwargs):
    open(f"generated-by-{os.getpid()}", "w").close()
    return original(*args, **kwargs)

D.generate = generate
path = D.ensure_dataset(DataConfig(rows=20000, seed=3), progress=False)
D.load_dataset(path)  # complete and verified (sha256)
print(path)
"""


@pytest.mark.slow
def test_workers_started_together_on_a_missing_dataset_generate_it_once(tmp_path):
    (tmp_path / "ensure.py").write_text(_ENSURE_SCRIPT)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    workers = [
        subprocess.Popen(
            [sys.executable, "ensure.py"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        for _ in range(3)
    ]
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0, 0], outputs
    assert len(list(tmp_path.glob("generated-by-*"))) == 1, outputs
    assert {out.strip().splitlines()[-1] for out in outputs} == {"data/jaco-working-20000-s3"}
    assert not list((tmp_path / "data").glob(".jaco-working-20000-s3.tmp-*"))
    assert not list((tmp_path / "data").glob(".*.lock"))  # no empty lock file left beside it


def test_a_waiter_on_a_deleted_lock_file_starts_over(tmp_path):
    import threading

    path = tmp_path / "data" / "d"
    order = []
    holding = threading.Event()

    def first():
        with D._generation_lock(path):
            holding.set()
            order.append("first in")
            threading.Event().wait(0.3)  # the second asks meanwhile
            order.append("first out")

    thread = threading.Thread(target=first)
    thread.start()
    holding.wait()
    with D._generation_lock(path):  # waits, then gets the lock of the deleted file: starts over
        order.append("second in")
        assert (tmp_path / "data" / ".d.lock").exists()
    thread.join()
    assert order == ["first in", "first out", "second in"]
    assert not list((tmp_path / "data").glob(".*.lock"))

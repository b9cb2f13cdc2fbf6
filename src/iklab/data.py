"""Datasets for training: find or generate, load the splits.

The one module of `iklab` that imports `data_gen` (to generate a missing dataset on first use
and to read its Parquet parts); encodings live in `iklab.encodings`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_gen.ambiguity import measure_ambiguity
from data_gen.dataset import iter_parts, read_card, verify
from data_gen.generate import generate

from .config import DataConfig
from .encodings import JOINT_COLUMNS, POSE_COLUMNS, poses_from_position_quat
from .kinematics import Robot, load_robot
from .regions import Region, custom_region, region_preset

# Ambiguity measured when a training run generates its dataset: enough poses to
# tell 1% from 99% in seconds (the CLI's `ambiguity` uses 2000 x 64 for figures).
_AUTO_AMBIGUITY = {"n_poses": 300, "n_starts": 32}


@dataclass(frozen=True)
class Split:
    q: np.ndarray  # (N, 6) radians
    position: np.ndarray  # (N, 3) metres
    quat: np.ndarray  # (N, 4) qw, qx, qy, qz

    def __len__(self) -> int:
        return len(self.q)

    def head(self, rows: int | None) -> Split:
        if rows is None or rows >= len(self):
            return self
        return Split(self.q[:rows], self.position[:rows], self.quat[:rows])

    def poses(self) -> np.ndarray:
        """``(N, 4, 4)`` target poses."""
        return poses_from_position_quat(self.position, self.quat)


@dataclass(frozen=True)
class Dataset:
    path: Path
    card: dict
    robot: Robot
    region: Region
    train: Split
    val: Split
    test: Split

    @property
    def digest(self) -> str:
        return self.card.get("content_sha256", "")

    @property
    def ambiguity(self) -> float | None:
        measured = self.card.get("ambiguity")
        return None if not measured else float(measured["ambiguous_fraction"])


def config_region(cfg: DataConfig, robot: Robot) -> Region:
    if cfg.region == "custom":
        if cfg.lower is None or cfg.upper is None:
            raise ValueError("data.region is 'custom': set data.lower and data.upper (radians)")
        return custom_region(robot, cfg.lower, cfg.upper)
    if cfg.lower is not None or cfg.upper is not None:
        raise ValueError("data.lower/data.upper need data.region: custom")
    return region_preset(robot, cfg.region)


def dataset_path(cfg: DataConfig) -> Path:
    if cfg.path:
        return Path(cfg.path)
    region = cfg.region
    if region == "custom":
        bounds = json.dumps([cfg.lower, cfg.upper])
        region = "custom-" + hashlib.sha256(bounds.encode()).hexdigest()[:8]
    return Path("data") / f"{cfg.robot}-{region}-{cfg.rows}-s{cfg.seed}"


@contextlib.contextmanager
def _generation_lock(path: Path) -> Iterator[None]:
    """One process at a time generates ``path``: several search workers started together on a
    missing dataset write it once (the others wait, then read it). An exclusive ``flock`` on a
    hidden file beside it; the kernel releases it if the holder dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another process that is generating {path} ...", flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_dataset(cfg: DataConfig, progress: bool | None = None) -> Path:
    """The dataset for ``cfg``, generated (with its ambiguity measured) if missing."""
    path = dataset_path(cfg)
    robot = load_robot(cfg.robot)
    region = config_region(cfg, robot)
    if not path.exists():
        with _generation_lock(path):
            if not path.exists():  # another worker may have written it while this one waited
                ambiguity = measure_ambiguity(robot, region, **_AUTO_AMBIGUITY).to_dict()
                generate(robot, region, cfg.rows, cfg.seed, path, ambiguity=ambiguity, progress=progress)
    card = read_card(path)
    expected = {"robot": cfg.robot, "region": region.name, "n": cfg.rows, "seed": cfg.seed}
    found = {"robot": card["robot"]["name"], "region": card["region"]["name"], "n": card["n"], "seed": card["seed"]}
    same_bounds = np.allclose(card["region"]["lower"], region.lower) and np.allclose(
        card["region"]["upper"], region.upper
    )
    if found != expected or not same_bounds:
        raise ValueError(
            f"{path} holds a different dataset ({found}) than the experiment asks for "
            f"({expected}); set data.path or remove the directory"
        )
    return path


def load_dataset(path: str | Path) -> Dataset:
    """Load and verify (sha256) a dataset directory into in-memory splits."""
    path = Path(path)
    card = verify(path)
    columns = JOINT_COLUMNS + POSE_COLUMNS
    values, labels = [], []
    for table in iter_parts(path, columns + ["split"], card):
        values.append(np.column_stack([table[c].to_numpy() for c in columns]))
        labels.append(table["split"].to_numpy(zero_copy_only=False).astype(str))
    data, split = np.concatenate(values), np.concatenate(labels)
    splits = {}
    for name in ("train", "val", "test"):
        rows = data[split == name]
        splits[name] = Split(rows[:, :6].copy(), rows[:, 6:9].copy(), rows[:, 9:13].copy())
    robot = Robot.from_dict(card["robot"])
    return Dataset(path, card, robot, Region.from_dict(card["region"]), **splits)

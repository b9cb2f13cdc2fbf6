"""Datasets for training: find or generate, load the splits.

The one module of `iklab` that imports `data_gen` (to generate a missing dataset on first use
and to read its Parquet parts); encodings live in `iklab.core.encodings`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from data_gen.ambiguity import measure_ambiguity
from data_gen.dataset import iter_parts, read_card, verify
from data_gen.generate import SPLITS, generate
from iklab.core.encodings import JOINT_COLUMNS, POSE_COLUMNS, poses_from_position_quat
from iklab.core.kinematics import Robot, load_robot
from iklab.core.regions import Region, custom_region, region_preset
from iklab.learning.config import DataConfig

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
    return Path("data") / f"{cfg.robot_name}-{region}-{cfg.rows}-s{cfg.seed}"


@contextlib.contextmanager
def _generation_lock(path: Path) -> Iterator[None]:
    """One process at a time generates ``path``: several search workers started together on a
    missing dataset write it once (the others wait, then read it). An exclusive ``flock`` on a
    hidden file beside it; the kernel releases it if the holder dies. The holder deletes the
    file before it lets go (no empty lock files left beside the datasets), so a waiter that then
    gets the lock of a deleted file starts over on a fresh one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.parent / f".{path.name}.lock"
    told = False
    while True:
        lock = open(lock_path, "a")  # noqa: SIM115 (closed below, after the unlink)
        try:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not told:
                    print(f"waiting for another process that is generating {path} ...", flush=True)
                    told = True
                fcntl.flock(lock, fcntl.LOCK_EX)
            if _same_file(lock, lock_path):
                try:
                    yield
                finally:
                    lock_path.unlink(missing_ok=True)  # while held: a newcomer makes a new one
                return
        finally:
            lock.close()  # releases the lock


def _same_file(opened: object, path: Path) -> bool:
    """Whether ``path`` still names the file ``opened`` (its holder may have deleted it)."""
    try:
        return os.stat(path).st_ino == os.fstat(opened.fileno()).st_ino
    except FileNotFoundError:
        return False


def ensure_dataset(cfg: DataConfig, progress: bool | None = None) -> Path:
    """The dataset for ``cfg``, generated (with its ambiguity measured) if missing."""
    path = dataset_path(cfg)
    robot = load_robot(cfg.robot, cfg.base_link, cfg.ee_link)
    region = config_region(cfg, robot)
    if not path.exists():
        with _generation_lock(path):
            if not path.exists():  # another worker may have written it while this one waited
                ambiguity = measure_ambiguity(robot, region, **_AUTO_AMBIGUITY).to_dict()
                generate(robot, region, cfg.rows, cfg.seed, path, ambiguity=ambiguity, progress=progress)
    card = read_card(path)
    expected = {"robot": robot.name, "region": region.name, "n": cfg.rows, "seed": cfg.seed}
    found = {"robot": card["robot"]["name"], "region": card["region"]["name"], "n": card["n"], "seed": card["seed"]}
    same_bounds = np.allclose(card["region"]["lower"], region.lower) and np.allclose(
        card["region"]["upper"], region.upper
    )
    if found != expected or not same_bounds or not _same_chain(card["robot"], robot):
        raise ValueError(
            f"{path} holds a different dataset ({found}) than the experiment asks for "
            f"({expected}); set data.path or remove the directory"
        )
    return path


def _same_chain(spec: dict, robot: Robot) -> bool:
    """Does a card's robot have ``robot``'s kinematics (one URDF file, other links: same name, other chain)?"""
    keys = ("d", "a", "alpha", "offset", "sign", "base", "tool")
    return all(np.allclose(spec[key], getattr(robot, key), rtol=0, atol=1e-12) for key in keys)


def _labels(table: pa.Table) -> np.ndarray:
    """A part's ``(N,)`` split labels."""
    return table["split"].to_numpy(zero_copy_only=False).astype(str)


def _part_rows(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """A part's ``(N, 13)`` joints + pose values and its ``(N,)`` split labels."""
    return np.column_stack([table[c].to_numpy() for c in JOINT_COLUMNS + POSE_COLUMNS]), _labels(table)


def _as_split(rows: np.ndarray) -> Split:
    return Split(rows[:, :6].copy(), rows[:, 6:9].copy(), rows[:, 9:13].copy())


def load_dataset(path: str | Path, limits: Mapping[str, int | None] | None = None) -> Dataset:
    """Load and verify (sha256) a dataset directory into in-memory splits.

    ``limits`` (split name -> rows): keep only the first rows of those splits; parts are read one
    at a time and no further than every limited split needs, so memory follows the limits, not
    the dataset (what a streamed training loads: samples of the training rows, validation and test).
    """
    path = Path(path)
    card = verify(path)
    limit = {name: (limits or {}).get(name) for name in SPLITS}
    kept: dict[str, list[np.ndarray]] = {name: [] for name in SPLITS}
    held = dict.fromkeys(SPLITS, 0)
    for table in iter_parts(path, JOINT_COLUMNS + POSE_COLUMNS + ["split"], card):
        values, labels = _part_rows(table)
        for name in SPLITS:
            rows = values[labels == name]
            if limit[name] is not None:
                rows = rows[: limit[name] - held[name]]
            kept[name].append(rows)
            held[name] += len(rows)
        if all(limit[name] is not None and held[name] >= limit[name] for name in SPLITS):
            break
    splits = {name: _as_split(np.concatenate(kept[name])) for name in SPLITS}
    robot = Robot.from_dict(card["robot"])
    return Dataset(path, card, robot, Region.from_dict(card["region"]), **splits)


def split_rows_per_part(path: str | Path, split: str, card: dict | None = None) -> list[int]:
    """How many rows of ``split`` each part holds, in the card's order (reads the split column only)."""
    return [int(np.count_nonzero(_labels(table) == split)) for table in iter_parts(path, ["split"], card)]


def read_part(path: str | Path, card: dict, index: int, split: str) -> Split:
    """The rows of ``split`` in part ``index`` (file order), as a Split."""
    entry = {**card, "files": [card["files"][index]]}
    (table,) = iter_parts(path, JOINT_COLUMNS + POSE_COLUMNS + ["split"], entry)
    values, labels = _part_rows(table)
    return _as_split(values[labels == split])

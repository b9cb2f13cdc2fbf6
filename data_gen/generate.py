"""Write a forward-kinematics dataset: sample joints, batched FK, Parquet parts + card.json.

Reproducible: row i's joints are the i-th six draws of PCG64(seed), whatever
the part size, because each part jumps the generator to its first row. The
split column depends only on the row index (a Weyl sequence), so it too is
independent of how the rows are cut into parts.

Atomic: everything is written into a hidden temporary directory beside the
target, `card.json` last, then renamed into place. An interrupted run leaves
no directory under the target's name (a killed one may leave the hidden
temporary, which the next run removes).
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

import iklab
from iklab.encodings import JOINT_COLUMNS
from iklab.kinematics import Robot, fk_rotation_translation, matrix_to_quaternion
from iklab.regions import Region

CARD_NAME = "card.json"
FORMAT = "iklab-fk-dataset"
FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
DEFAULT_PART_ROWS = 500_000  # ~60 MB of columns per part: bounds memory, not the dataset size
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0  # Weyl-sequence step: evenly spread split labels
_HASH_BLOCK = 1 << 22


@dataclass(frozen=True)
class SplitFractions:
    train: float = 0.8
    val: float = 0.1
    test: float = 0.1

    def __post_init__(self):
        values = (self.train, self.val, self.test)
        if min(values) < 0 or not math.isclose(sum(values), 1.0, abs_tol=1e-9):
            raise ValueError(f"split fractions must be >= 0 and sum to 1, got {values}")

    def to_dict(self) -> dict:
        return {"train": self.train, "val": self.val, "test": self.test}


def sample_joints(region: Region, seed: int, start: int, count: int) -> np.ndarray:
    """Rows ``start .. start+count`` of the dataset's joint angles, ``(count, 6)`` radians."""
    bit_generator = np.random.PCG64(seed)
    bit_generator.advance(start * 6)  # one 64-bit draw per float64 uniform
    u = np.random.Generator(bit_generator).random((count, 6))
    return region.lower + u * region.width


def split_codes(start: int, count: int, fractions: SplitFractions) -> np.ndarray:
    """Split index per row (0 train, 1 val, 2 test) from the row index alone."""
    phase = np.mod((np.arange(start, start + count, dtype=np.float64) + 1.0) * _GOLDEN, 1.0)
    return (phase >= fractions.train).astype(np.int8) + (phase >= fractions.train + fractions.val)


def fk_table(robot: Robot, q: np.ndarray, splits: np.ndarray) -> pa.Table:
    """Joint angles and their FK poses as an Arrow table in the dataset's column layout."""
    rotation, position = fk_rotation_translation(robot, q)
    quat = matrix_to_quaternion(rotation)
    columns = {name: q[:, i] for i, name in enumerate(JOINT_COLUMNS)}
    columns.update({"x": position[:, 0], "y": position[:, 1], "z": position[:, 2]})
    columns.update({name: quat[:, i] for i, name in enumerate(["qw", "qx", "qy", "qz"])})
    arrays = [pa.array(np.ascontiguousarray(v)) for v in columns.values()]
    arrays.append(pa.DictionaryArray.from_arrays(pa.array(splits), pa.array(SPLITS)))
    return pa.Table.from_arrays(arrays, names=[*columns, "split"])


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def generate(
    robot: Robot,
    region: Region,
    n: int,
    seed: int,
    out: str | os.PathLike,
    *,
    part_rows: int = DEFAULT_PART_ROWS,
    fractions: SplitFractions = SplitFractions(),
    overwrite: bool = False,
    ambiguity: dict | None = None,
    progress: bool | None = None,
) -> Path:
    """Generate ``n`` rows into directory ``out`` atomically; returns ``out``."""
    if n < 1:
        raise ValueError(f"--n must be at least 1, got {n}")
    if part_rows < 1:
        raise ValueError(f"part rows must be at least 1, got {part_rows}")
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(out)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        files, counts = _write_parts(robot, region, n, seed, tmp, part_rows, fractions, progress)
        card = _card(robot, region, n, seed, part_rows, fractions, files, counts, ambiguity)
        write_card(tmp, card)
        _replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _write_parts(robot, region, n, seed, tmp, part_rows, fractions, progress):
    show = sys.stderr.isatty() if progress is None else progress
    files, counts = [], np.zeros(3, dtype=np.int64)
    n_parts = math.ceil(n / part_rows)
    with tqdm(total=n, unit="rows", unit_scale=True, desc="generate", disable=not show) as bar:
        for index in range(n_parts):
            start = index * part_rows
            count = min(part_rows, n - start)
            splits = split_codes(start, count, fractions)
            counts += np.bincount(splits, minlength=3)
            table = fk_table(robot, sample_joints(region, seed, start, count), splits)
            name = f"part-{index:05d}.parquet"
            pq.write_table(table, tmp / name, compression="none")
            files.append({"name": name, "rows": count, "sha256": file_sha256(tmp / name)})
            bar.update(count)
    return files, counts


def _card(robot, region, n, seed, part_rows, fractions, files, counts, ambiguity) -> dict:
    units = {c: "rad" for c in JOINT_COLUMNS} | {c: "m" for c in ("x", "y", "z")}
    units |= {c: "unit quaternion (qw >= 0)" for c in ("qw", "qx", "qy", "qz")}
    units["split"] = "/".join(SPLITS)
    content_hash = hashlib.sha256("".join(f["sha256"] for f in files).encode()).hexdigest()
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "generator": {"package": "data_gen", "version": iklab.__version__},
        "robot": robot.to_dict(),
        "region": region.to_dict(),
        "n": n,
        "seed": seed,
        "sampling": "uniform in the region box; row i = draws 6i..6i+5 of numpy PCG64(seed)",
        "part_rows": part_rows,
        "columns": units,
        "splits": {"fractions": fractions.to_dict(), "counts": dict(zip(SPLITS, (int(c) for c in counts)))},
        "files": files,
        "content_sha256": content_hash,
        "ambiguity": ambiguity,
    }


def write_card(directory: Path, card: dict) -> None:
    import json

    tmp = directory / f".{CARD_NAME}.tmp"
    tmp.write_text(json.dumps(card, indent=2) + "\n")
    os.replace(tmp, directory / CARD_NAME)


def _replace(tmp: Path, out: Path) -> None:
    if not out.exists():
        os.rename(tmp, out)
        return
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    os.rename(out, old)
    os.rename(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def _remove_stale_temporaries(out: Path) -> None:
    """Remove temporaries of killed earlier runs for the same target (their PID is gone)."""
    for path in out.parent.glob(f".{out.name}.tmp-*"):
        pid = path.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

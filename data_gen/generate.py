"""Write a forward-kinematics dataset: sample joints, batched FK, Parquet parts + card.json.

Reproducible: row i's joints are the i-th six draws of PCG64(seed), whatever
the part size, because each part jumps the generator to its first row. The
split column depends only on the row index (a Weyl sequence), so it too is
independent of how the rows are cut into parts.

Atomic: everything is written into a hidden temporary directory beside the
target, `card.json` last, then renamed into place. An interrupted or failed
run leaves no directory under the target's name (a killed one may leave the
hidden temporary, which the next run removes). `overwrite` replaces only an
iklab dataset or an empty directory, never anything else a user keeps there.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

import iklab
from iklab.core.encodings import JOINT_COLUMNS
from iklab.core.kinematics import Robot, fk_rotation_translation, matrix_to_quaternion
from iklab.core.processes import process_alive
from iklab.core.regions import Region

CARD_NAME = "card.json"
FORMAT = "iklab-fk-dataset"
FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
DEFAULT_PART_ROWS = 500_000  # ~60 MB of columns per part: bounds memory, not the dataset size
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0  # Weyl-sequence step: evenly spread split labels
_HASH_BLOCK = 1 << 22
# OS errors that mean "this machine ran out of something", not "the user chose a bad path"
_RESOURCE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG, errno.ENOMEM}


class OutputError(OSError):
    """The output could not be written; names the user's path, not a hidden temporary."""

    def __init__(self, path: str | os.PathLike, cause: OSError):
        reason = os.strerror(cause.errno) if cause.errno else str(cause).splitlines()[0]
        super().__init__(cause.errno, reason, str(path))

    @property
    def user_mistake(self) -> bool:
        """True for a path that cannot be written (permissions, read-only, not a directory)."""
        return self.errno not in _RESOURCE_ERRNOS

    def __str__(self) -> str:
        return f"cannot write {self.filename}: {self.strerror}"

    @staticmethod
    def raised_by_writing(exc: BaseException) -> bool:
        """An OS error of the write (with an errno) that is not yet an OutputError."""
        return isinstance(exc, OSError) and exc.errno is not None and not isinstance(exc, OutputError)


@dataclass(frozen=True)
class SplitFractions:
    train: float = 0.8
    val: float = 0.1
    test: float = 0.1

    def __post_init__(self):
        values = (self.train, self.val, self.test)
        if not all(math.isfinite(v) and v >= 0 for v in values) or not math.isclose(sum(values), 1.0, abs_tol=1e-9):
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
        raise ValueError(f"--part-rows must be at least 1, got {part_rows}")
    if seed < 0:
        raise ValueError(f"--seed must be at least 0, got {seed}")
    out = Path(out)
    if out.name in ("", ".", ".."):
        out = Path(os.path.abspath(out))
    if not out.name:
        raise ValueError(f"--out {out}: give a directory to create, e.g. data/jaco-5M")
    check_replaceable(out, overwrite)
    check_writable(out)
    created = _missing_ancestors(out)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(out)
        _remove_tree(tmp)
        tmp.mkdir()
        files, counts = _write_parts(robot, region, n, seed, tmp, part_rows, fractions, progress)
        card = _card(robot, region, n, seed, part_rows, fractions, files, counts, ambiguity)
        write_card(tmp, card)
        _replace(tmp, out, overwrite)
    except BaseException as exc:
        _remove_tree(tmp)  # a failing clean-up must not hide why the run failed
        for directory in created:
            _quietly(directory.rmdir)
        if OutputError.raised_by_writing(exc):
            raise OutputError(out, exc) from exc
        raise
    return out


def check_replaceable(out: Path, overwrite: bool) -> None:
    """Refuse (FileExistsError) an existing ``out`` unless ``overwrite`` may replace it.

    Only an iklab dataset (a card of this format plus its parts, nothing else) or an
    empty directory may be replaced: anything else may be a user's own files.
    """
    if not os.path.lexists(out):
        return
    if not overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite to replace it")
    refusal = _not_a_dataset(out)
    if refusal:
        raise FileExistsError(
            f"{out} {refusal}; --overwrite replaces only an iklab dataset "
            "or an empty directory: choose another --out or remove it yourself"
        )


def check_writable(out: Path) -> None:
    """OutputError now, not after minutes of work, when ``out``'s directory cannot be written.

    Creates and removes an empty directory in the nearest existing ancestor of ``out``.
    """
    nearest = next((p for p in Path(os.path.abspath(out)).parents if os.path.lexists(p)), Path("/"))
    if not nearest.is_dir():
        raise ValueError(f"cannot write {out}: {nearest} is not a directory")
    probe = nearest / f".{out.name}.probe-{os.getpid()}"
    try:
        probe.mkdir()
    except OSError as exc:
        raise OutputError(out, exc) from exc
    _quietly(probe.rmdir)


def _not_a_dataset(out: Path) -> str | None:
    """Why ``out`` is neither an iklab dataset nor an empty directory; None if it is one."""
    if out.is_symlink():
        return "is a symbolic link"
    if not out.is_dir():
        return "is not a directory"
    try:
        names = {entry.name for entry in os.scandir(out)}
        if not names:
            return None
        card = json.loads((out / CARD_NAME).read_text()) if CARD_NAME in names else None
    except (OSError, ValueError):
        card = None
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        return f"is not an iklab dataset (no {CARD_NAME} of format {FORMAT!r})"
    foreign = sorted(
        name
        for name in names
        if not (out / name).is_file() or (name != CARD_NAME and not re.fullmatch(r"part-\d+\.parquet", name))
    )
    return f"holds {foreign[0]!r}, which is not part of a dataset" if foreign else None


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
        "splits": {
            "fractions": fractions.to_dict(),
            "counts": dict(zip(SPLITS, (int(c) for c in counts), strict=True)),
        },
        "files": files,
        "content_sha256": content_hash,
        "ambiguity": ambiguity,
    }


def write_card(directory: Path, card: dict) -> None:
    tmp = directory / f".{CARD_NAME}.tmp"
    tmp.write_text(json.dumps(card, indent=2) + "\n")
    os.replace(tmp, directory / CARD_NAME)


def _replace(tmp: Path, out: Path, overwrite: bool) -> None:
    check_replaceable(out, overwrite)  # again: the user may have put files there meanwhile
    if not os.path.lexists(out):
        os.rename(tmp, out)
        return
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    os.rename(out, old)
    try:
        os.rename(tmp, out)
    except BaseException:
        os.rename(old, out)
        raise
    _remove_tree(old)


def _remove_stale_temporaries(out: Path) -> None:
    """Remove temporaries of killed earlier runs for the same target (their PID is gone)."""
    for pattern in (f".{out.name}.tmp-*", f".{out.name}.old-*"):
        for path in out.parent.glob(pattern):
            pid = path.name.rsplit("-", 1)[-1]
            if pid.isdigit() and not process_alive(int(pid)):
                _remove_tree(path)


def _remove_tree(path: Path) -> None:
    """Remove a temporary of ours, file or directory; never raises."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        _quietly(path.unlink)


def _quietly(action) -> None:
    with contextlib.suppress(OSError):
        action()


def _missing_ancestors(out: Path) -> list[Path]:
    """Ancestors of ``out`` that do not exist yet, deepest first (removed again on failure)."""
    missing = []
    for parent in out.absolute().parents:
        if os.path.lexists(parent):
            break
        missing.append(parent)
    return missing

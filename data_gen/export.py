"""Export a dataset to the CSV layout of the original question (questions/000).

Columns ``state0..state5`` are the joint angles (radians) and ``pose0..pose5``
are x, y, z (metres) and roll, pitch, yaw (radians, roboticstoolbox ``tr2rpy``
convention). The question read its file with ``pd.read_csv(path, names=[...])``,
so there is no header unless asked for.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv

from iklab.core.encodings import JOINT_COLUMNS
from iklab.core.kinematics import matrix_to_rpy, quaternion_to_matrix

from .dataset import iter_parts, read_card, verify
from .generate import OutputError

CSV_COLUMNS = [f"state{i}" for i in range(6)] + [f"pose{i}" for i in range(6)]


def export_csv(directory: str | Path, out: str | os.PathLike, *, header: bool = False, overwrite: bool = False) -> int:
    """Write ``out`` (atomically) and return the number of rows written.

    Nothing is left at ``out`` or beside it when writing fails; OS errors become an
    OutputError that names ``out``.
    """
    out = Path(out)
    _check_target(Path(directory), out, overwrite)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    rows = 0
    try:
        with pa.OSFile(str(tmp), "wb") as sink:  # opened first: an unwritable out fails fast
            card = verify(directory, read_card(directory))
            if header:  # written by hand: Arrow would quote every name
                sink.write((",".join(CSV_COLUMNS) + "\n").encode())
            for table in iter_parts(directory, card=card):
                sink.write(_csv_bytes(table))
                rows += table.num_rows
        os.replace(tmp, out)
    except BaseException as exc:
        with contextlib.suppress(OSError):  # a failing clean-up must not hide the first error
            tmp.unlink(missing_ok=True)
        if OutputError.raised_by_writing(exc):
            raise OutputError(out, exc) from exc
        raise
    return rows


def _check_target(directory: Path, out: Path, overwrite: bool) -> None:
    """Refuse, before any work, a CSV target that cannot or must not be written."""
    if os.path.lexists(out):
        if out.is_dir():
            raise IsADirectoryError(f"{out} is a directory; give the CSV file's path, e.g. {out / 'data.csv'}")
        if not overwrite:
            raise FileExistsError(f"{out} already exists; pass --overwrite to replace it")
    parent = out.absolute().parent
    if not parent.is_dir():
        reason = "is not a directory" if os.path.lexists(parent) else "does not exist"
        raise FileNotFoundError(f"cannot write {out}: {parent} {reason}")
    if directory.is_dir() and out.absolute().parent.resolve() == directory.resolve():
        raise ValueError(f"{out} is inside the dataset {directory}; write the CSV elsewhere")


def _csv_bytes(table: pa.Table) -> bytes:
    quat = np.column_stack([table[c].to_numpy() for c in ("qw", "qx", "qy", "qz")])
    rpy = matrix_to_rpy(quaternion_to_matrix(quat))
    values = [table[c].to_numpy() for c in JOINT_COLUMNS]
    values += [table[c].to_numpy() for c in ("x", "y", "z")] + [rpy[:, i] for i in range(3)]
    out_table = pa.Table.from_arrays([pa.array(v) for v in values], names=CSV_COLUMNS)
    buffer = pa.BufferOutputStream()
    pcsv.write_csv(out_table, buffer, pcsv.WriteOptions(include_header=False))
    return buffer.getvalue().to_pybytes()

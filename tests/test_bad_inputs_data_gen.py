"""Bad inputs to `python -m data_gen`: one stderr line, the right exit code, nothing lost or left.

Each row of CASES runs the CLI inside its own directory ``{w}``: the rows of THROUGH_PYTHON_M
as the real `python -m data_gen` in a subprocess (its entry point, install check and exit
status), the others through ``data_gen.cli.main`` in this process, one after another (the same
parsing, checks and writers, without an interpreter and roboticstoolbox's import per row:
35 processes cost about 90 s of CPU).
``{ds}`` is a tiny valid dataset (3000 rows, 3 parts) that no row may change; ``{ro}`` a
read-only tmpfs and ``{full}`` a 64 KiB tmpfs, mounted where the test runs as root (rows that
need them are skipped elsewhere; the in-process tests below cover the same errors anyway).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers import main_in_this_process

from data_gen import export as E
from data_gen import generate as G
from data_gen.cli import main
from iklab.core.kinematics import known_robots, load_robot
from iklab.core.regions import region_preset

LOWER = "-1.5,0,-1,-0.5,-0.5,-0.5"
UPPER = "-1.0,0.5,-0.5,0.5,0.5,0.5"


@dataclass(frozen=True)
class Case:
    id: str
    args: str  # split on spaces after {w}, {ds}, {ro}, {full} are filled in
    code: int
    words: tuple[str, ...]  # all in the one stderr line (on success: in stdout)
    setup: Callable[[Path, Path], None] | None = None
    present: tuple[str, ...] = ()  # relative to {w}: must still exist
    absent: tuple[str, ...] = ()  # globs relative to {w}: must not exist
    unwanted: tuple[str, ...] = ()  # words the message must not contain
    needs: str = ""  # "ro" or "full": a tmpfs mount this row writes to
    check: Callable[[Path], None] | None = field(default=None, compare=False)


def user_folder(w, ds):
    (w / "user").mkdir()
    (w / "user" / "important.txt").write_text("mine")


def user_file(w, ds):
    (w / "notes.txt").write_text("mine")


def dataset_copy(w, ds):
    shutil.copytree(ds, w / "ds")


def dataset_with_user_file(w, ds):
    dataset_copy(w, ds)
    (w / "ds" / "important.txt").write_text("mine")


def dataset_link(w, ds):
    dataset_copy(w, ds)
    (w / "link").symlink_to(w / "ds")


def empty_folder(w, ds):
    (w / "empty").mkdir()


def edited_card(**changes):
    def setup(w, ds):
        dataset_copy(w, ds)
        card = json.loads((w / "ds" / "card.json").read_text())
        for key, value in changes.items():
            if key == "rows0":
                card["files"][0]["rows"] = value
            elif key == "file0":
                card["files"][0] = value
            else:
                card[key] = value
        (w / "ds" / "card.json").write_text(json.dumps(card))

    return setup


def card_n(expected):
    def check(w):
        assert json.loads((w / "ds" / "card.json").read_text())["n"] == expected

    return check


GEN = "generate --n 10 --out"
OVERWRITE_ONLY = ("--overwrite replaces only an iklab dataset or an empty directory",)
CASES = [
    # --overwrite never removes what the user owns
    Case(
        "overwrite-user-folder",
        f"{GEN} {{w}}/user --overwrite",
        2,
        ("user is not an iklab dataset", *OVERWRITE_ONLY),
        user_folder,
        present=("user/important.txt",),
        absent=(".user.*",),
    ),
    Case(
        "overwrite-plain-file",
        f"{GEN} {{w}}/notes.txt --overwrite",
        2,
        ("notes.txt is not a directory", *OVERWRITE_ONLY),
        user_file,
        present=("notes.txt",),
        absent=(".notes.txt.*",),
    ),
    Case(
        "overwrite-dataset-holding-a-user-file",
        f"{GEN} {{w}}/ds --overwrite",
        2,
        ("holds 'important.txt'", *OVERWRITE_ONLY),
        dataset_with_user_file,
        present=("ds/important.txt", "ds/part-00002.parquet"),
        check=card_n(3000),
    ),
    Case(
        "overwrite-symlink",
        f"{GEN} {{w}}/link --overwrite",
        2,
        ("is a symbolic link",),
        dataset_link,
        present=("link", "ds/card.json"),
    ),
    Case(
        "overwrite-dataset",
        f"{GEN} {{w}}/ds --overwrite",
        0,
        ("wrote 10 rows",),
        dataset_copy,
        present=("ds/card.json",),
        absent=(".ds.*", "ds/part-00001.parquet"),
        check=card_n(10),
    ),
    # also the plain form of negative bounds (argparse alone took "-1.5,..." for an option)
    Case(
        "overwrite-empty-folder",
        f"{GEN} {{w}}/empty --overwrite --lower {LOWER} --upper {UPPER}",
        0,
        ("wrote 10 rows",),
        empty_folder,
        present=("empty/card.json",),
        absent=(".empty.*",),
    ),
    Case(
        "existing-without-overwrite",
        f"{GEN} {{w}}/user",
        2,
        ("already exists; pass --overwrite",),
        user_folder,
        present=("user/important.txt",),
    ),
    # the card is checked against the parts
    Case(
        "card-rows-and-n-edited",
        "inspect {w}/ds",
        2,
        ("part-00000.parquet: holds 1000 rows, card says 1500",),
        edited_card(n=3500, rows0=1500),
    ),
    Case("card-n-edited", "inspect {w}/ds", 2, ("parts hold 3000 rows, card says 3500",), edited_card(n=3500)),
    Case(
        "card-files-a-string",
        "inspect {w}/ds",
        2,
        ("'files' must be a non-empty list",),
        edited_card(files="part-00000.parquet"),
    ),
    Case(
        "card-file-entry-a-path",
        "inspect {w}/ds",
        2,
        ("files[0] must be",),
        edited_card(file0={"name": "../x", "rows": 1000, "sha256": "0"}),
    ),
    Case("card-n-not-a-number", "inspect {w}/ds", 2, ("'n' must be a positive integer",), edited_card(n="3000")),
    Case(
        "export-edited-card",
        "export-csv {w}/ds {w}/out.csv",
        2,
        ("card says 1500",),
        edited_card(n=3500, rows0=1500),
        absent=("out.csv", ".out.csv.*"),
    ),
    # nonsensical numbers, each named
    Case("threshold-negative", "ambiguity --threshold-deg -5", 2, ("--threshold-deg must be greater than 0",)),
    Case("threshold-nan", "ambiguity --threshold-deg nan", 2, ("--threshold-deg",)),
    Case("threshold-half-turn", "ambiguity --threshold-deg 180", 2, ("--threshold-deg must be below 180",)),
    Case("poses-zero", "ambiguity --poses 0", 2, ("--poses must be at least 1",)),
    Case("starts-negative", "ambiguity --starts -4", 2, ("--starts must be at least 1",)),
    Case("ambiguity-seed-negative", "ambiguity --seed -1", 2, ("--seed must be at least 0",)),
    Case("seed-negative", f"{GEN} {{w}}/x --seed -1", 2, ("--seed must be at least 0",), absent=("x",)),
    Case("n-negative", "generate --n -7 --out {w}/x", 2, ("--n must be at least 1",), absent=("x",)),
    Case("part-rows-zero", f"{GEN} {{w}}/x --part-rows 0", 2, ("--part-rows must be at least 1",), absent=("x",)),
    Case(
        "split-negative",
        f"{GEN} {{w}}/x --split -0.1,0.6,0.5",
        2,
        ("--split: split fractions must be >= 0 and sum to 1",),
        absent=("x",),
    ),
    Case("split-nan", f"{GEN} {{w}}/x --split nan,0.5,0.5", 2, ("--split: split fractions",), absent=("x",)),
    # OS errors: one line naming the path, nothing partial left
    Case("generate-read-only-fs", f"{GEN} {{ro}}/x", 2, ("cannot write", "/x: Read-only file system"), needs="ro"),
    Case(
        "export-read-only-fs",
        "export-csv {ds} {ro}/a.csv",
        2,
        ("cannot write", "/a.csv: Read-only file system"),
        needs="ro",
    ),
    Case(
        "generate-full-disk",
        "generate --n 20000 --out {full}/x",
        1,
        ("cannot write", "/x: No space left on device"),
        needs="full",
    ),
    Case(
        "export-full-disk",
        "export-csv {ds} {full}/a.csv",
        1,
        ("cannot write", "/a.csv: No space left on device"),
        needs="full",
    ),
    Case(
        "generate-under-a-file",
        f"{GEN} {{w}}/notes.txt/x",
        2,
        ("notes.txt is not a directory",),
        user_file,
        present=("notes.txt",),
    ),
    Case(
        "export-onto-a-folder",
        "export-csv {ds} {w}/user --overwrite",
        2,
        ("user is a directory; give the CSV file's path",),
        user_folder,
        present=("user/important.txt",),
        absent=(".user.*",),
    ),
    Case(
        "export-into-missing-folder",
        "export-csv {ds} {w}/missing/a.csv",
        2,
        ("missing does not exist",),
        absent=("missing",),
    ),
    Case(
        "export-under-a-file",
        "export-csv {ds} {w}/notes.txt/a.csv",
        2,
        ("notes.txt is not a directory",),
        user_file,
        present=("notes.txt",),
    ),
    Case(
        "export-into-the-dataset",
        "export-csv {w}/ds {w}/ds/card.json --overwrite",
        2,
        ("is inside the dataset",),
        dataset_copy,
        check=card_n(3000),
    ),
    Case(
        "export-existing-without-overwrite",
        "export-csv {ds} {w}/notes.txt",
        2,
        ("already exists; pass --overwrite",),
        user_file,
        present=("notes.txt",),
    ),
    # small ones
    Case(
        "unknown-robot",
        f"{GEN} {{w}}/x --robot nao",
        2,
        ("unknown robot 'nao'; known robots: irb140, jaco, kr5, mico, puma560, ur10, ur3, ur5",),
        absent=("x",),
        unwanted=("panda", "sawyer", "lwr4", "stanford"),
    ),
]


# One row of each kind through the real entry point: an argparse-level refusal, a check of the
# command line, a robot loaded and refused, a dataset written, an OS error at the writer.
THROUGH_PYTHON_M = {"threshold-nan", "seed-negative", "unknown-robot", "overwrite-dataset", "generate-full-disk"}


def _mount_tmpfs(directory: Path, options: str) -> bool:
    directory.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(directory)], capture_output=True)
    return done.returncode == 0


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, jaco):
    out = tmp_path_factory.mktemp("valid") / "ds"
    G.generate(jaco, region_preset(jaco, "working"), 3000, 0, out, part_rows=1000)
    return out


@pytest.fixture(scope="module")
def results(tmp_path_factory, dataset):
    """Every row's (exit code, stdout, stderr, its directory), run concurrently."""
    root = tmp_path_factory.mktemp("rows")
    mounts = {name: root / name for name in ("ro", "full")}
    mounted = {"ro": _mount_tmpfs(mounts["ro"], "ro"), "full": _mount_tmpfs(mounts["full"], "size=64k")}
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}

    def prepare(case: Case) -> tuple[list[str], Path] | None:
        if case.needs and not mounted[case.needs]:
            return None
        w = root / case.id
        w.mkdir()
        if case.setup:
            case.setup(w, dataset)
        return case.args.format(w=w, ds=dataset, ro=mounts["ro"], full=mounts["full"]).split(" "), w

    def through_python_m(case: Case):
        if (prepared := prepare(case)) is None:
            return None
        args, w = prepared
        done = subprocess.run(
            [sys.executable, "-m", "data_gen", *args], capture_output=True, text=True, env=env, timeout=120
        )
        return done.returncode, done.stdout, done.stderr, w

    assert {c.id for c in CASES} >= THROUGH_PYTHON_M
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:  # the processes run while this one works
            futures = {c.id: pool.submit(through_python_m, c) for c in CASES if c.id in THROUGH_PYTHON_M}
            outcomes = {}
            for case in CASES:
                if case.id not in THROUGH_PYTHON_M:
                    prepared = prepare(case)
                    outcomes[case.id] = (
                        None if prepared is None else (*main_in_this_process(main, prepared[0]), prepared[1])
                    )
            outcomes.update({name: future.result() for name, future in futures.items()})
            yield outcomes
    finally:
        for name, path in mounts.items():
            if mounted[name]:
                subprocess.run(["umount", str(path)], check=False)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, results, dataset):
    if results[case.id] is None:
        pytest.skip(f"needs a {case.needs} tmpfs mount (root)")
    code, out, err, w = results[case.id]
    assert code == case.code, (out, err)
    if case.code == 0:
        message = out
        assert err.strip() == ""
    else:
        assert len(err.strip().splitlines()) == 1, err  # one line, never a traceback
        message = err
    for word in case.words:
        assert word in message, message
    assert not any(word in message for word in case.unwanted), message
    for name in case.present:
        assert os.path.lexists(w / name), f"{name} was removed"
    for pattern in case.absent:
        assert not list(w.glob(pattern)), f"{pattern} left behind: {list(w.glob(pattern))}"
    if (w / "user" / "important.txt").exists():
        assert (w / "user" / "important.txt").read_text() == "mine"
    if (w / "notes.txt").is_file():
        assert (w / "notes.txt").read_text() == "mine"
    if case.needs:  # the mount's rows have all finished: nothing partial may remain there
        assert list((w.parent / case.needs).iterdir()) == [], "partial output left behind"
    if case.check:
        case.check(w)
    assert not list(w.glob(".*tmp-*")) and not list(w.glob("*/.*tmp-*"))


def test_the_shared_dataset_was_not_touched(results, dataset):
    assert main(["inspect", str(dataset)]) == 0


def test_every_robot_the_message_lists_loads():
    for name in known_robots():
        assert load_robot(name).name == name


# In-process: an OS error raised by the writers themselves (any machine, root or not).


def _fail_with(number):
    def fail(*args, **kwargs):
        raise OSError(number, f"Error writing bytes to file. Detail: [errno {number}] {os.strerror(number)}")

    return fail


@pytest.mark.parametrize("number, code", [(errno.ENOSPC, 1), (errno.EACCES, 2), (errno.EROFS, 2)])
def test_generate_writer_os_error(number, code, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(G.pq, "write_table", _fail_with(number))
    assert main(["generate", "--n", "10", "--out", str(tmp_path / "new" / "ds")]) == code
    err = capsys.readouterr().err.strip()
    assert err == f"data_gen generate: error: cannot write {tmp_path / 'new' / 'ds'}: {os.strerror(number)}"
    assert list(tmp_path.iterdir()) == []  # no dataset, no temporary, no parent it created


class _FullDisk:
    """pa.OSFile whose second write fails with ENOSPC (after a partial file exists)."""

    def __init__(self, path, mode):
        self.handle, self.writes = open(path, mode), 0  # noqa: SIM115 (closed in __exit__)

    def write(self, data):
        self.writes += 1
        if self.writes > 1:
            raise OSError(errno.ENOSPC, "Error writing bytes to file")
        self.handle.write(data)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.close()


def test_export_full_disk_leaves_nothing(dataset, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(E.pa, "OSFile", _FullDisk)
    out = tmp_path / "a.csv"
    assert main(["export-csv", str(dataset), str(out), "--header"]) == 1
    assert capsys.readouterr().err.strip() == (
        f"data_gen export-csv: error: cannot write {out}: No space left on device"
    )
    assert list(tmp_path.iterdir()) == []


def test_export_clean_up_failure_does_not_hide_the_first_error(dataset, tmp_path, monkeypatch, capsys):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(E.pa, "OSFile", read_only)
    monkeypatch.setattr(Path, "unlink", read_only)
    assert main(["export-csv", str(dataset), str(tmp_path / "a.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"data_gen export-csv: error: cannot write {tmp_path / 'a.csv'}: Read-only file system"


def test_replacing_a_dataset_that_gains_a_user_file_meanwhile_is_refused(dataset, tmp_path, jaco, monkeypatch):
    out = tmp_path / "ds"
    shutil.copytree(dataset, out)
    real = G._write_parts

    def user_writes_meanwhile(*args):
        (out / "important.txt").write_text("mine")
        return real(*args)

    monkeypatch.setattr(G, "_write_parts", user_writes_meanwhile)
    with pytest.raises(FileExistsError, match="holds 'important.txt'"):
        G.generate(jaco, region_preset(jaco, "working"), 10, 0, out, overwrite=True)
    assert (out / "important.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_stale_old_directory_of_a_killed_run_is_removed(dataset, tmp_path, jaco):
    stale = tmp_path / ".ds.old-999999999"  # no such PID
    shutil.copytree(dataset, stale)
    G.generate(jaco, region_preset(jaco, "working"), 10, 0, tmp_path / "ds")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_measure_ambiguity_refuses_a_nonsensical_threshold(jaco):
    from data_gen.ambiguity import measure_ambiguity

    for threshold in (-5.0, 0.0, 180.0, float("nan")):
        with pytest.raises(ValueError, match="threshold_deg"):
            measure_ambiguity(jaco, region_preset(jaco, "working"), n_poses=1, n_starts=1, threshold_deg=threshold)

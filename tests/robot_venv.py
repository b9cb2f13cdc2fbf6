"""A venv holding what `pip install '<repo>[robot]'` installs, made in seconds without a download
(tests/test_solver.py runs the solver in it: no TensorFlow, the installed package, not src/)."""

import csv
import importlib.metadata
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from collections import defaultdict
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import iklab


def robot_venv(root: Path, directory: Path) -> tuple[Path, Path, set[str]]:
    """A venv holding what `pip install '<repo>[robot]'` installs, without downloading anything:
    iklab's wheel, built from a clean copy of the repository and unzipped (only the packages it
    really contains), and the distributions its requirements resolve to, linked from this venv.
    Returns its python, its site-packages and the names of the linked distributions."""

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(directory)], check=True, timeout=120)
    python = directory / "bin" / "python"
    where = subprocess.run(
        [str(python), "-I", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    site = Path(where.stdout.strip())
    # a clean copy: an in-tree build reuses build/lib, where files deleted from src/ live on
    source = directory.parent / "source"
    junk = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    top = {".git", ".venv", "build", "dist", "data", "mlruns", ".pytest_cache", ".ruff_cache", ".services"}
    shutil.copytree(
        root,
        source,
        ignore=lambda folder, names: junk(folder, names) | (top & set(names) if Path(folder) == root else set()),
    )
    # the build backend's PEP 517 hook, as `pip wheel --no-build-isolation` calls it
    backend = tomllib.loads((source / "pyproject.toml").read_text())["build-system"]["build-backend"]
    wheels = directory.parent / "wheels"
    wheels.mkdir()
    built = subprocess.run(
        [
            sys.executable,
            "-c",
            "import importlib, sys; print(importlib.import_module(sys.argv[1]).build_wheel(sys.argv[2]))",
            backend,
            str(wheels),
        ],
        cwd=source,
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    with zipfile.ZipFile(wheels / built.stdout.strip().splitlines()[-1]) as wheel:
        assert not [name for name in wheel.namelist() if ".data/" in name]  # nothing for scripts/ or headers/
        wheel.extractall(site)
    # numba's cache of the kernels this process compiled (beside src/iklab, an editable install), so
    # that the robot venv loads them instead of compiling for ~20 s: numba takes an entry only for
    # the same source (a content hash), bytecode and CPU, and compiles otherwise
    compiled = Path(iklab.__file__).parent
    for cached in compiled.glob("**/__pycache__/*.nb[ic]"):
        target = site / "iklab" / cached.relative_to(compiled)
        if target.parent.parent.is_dir():
            target.parent.mkdir(exist_ok=True)
            shutil.copy2(cached, target)
    (installed,) = importlib.metadata.distributions(name="iklab", path=[str(site)])
    return python, site, link_requirements(installed.requires or [], {"robot"}, site)


def link_requirements(requirements: list[str], extras: set[str], site: Path) -> set[str]:
    """Symlink into ``site`` the distributions of this venv that ``requirements`` (with ``extras``)
    resolve to, as pip resolves them: through each distribution's own requirements, extras and
    environment markers honoured. Every pin must hold for the version installed here. A folder
    shared with a distribution not chosen (google/, or mlflow/ with mlflow's) is made, not linked.
    Returns the names linked."""

    here = sorted({sysconfig.get_path("purelib"), sysconfig.get_path("platlib")})
    installed = {canonicalize_name(d.metadata["Name"]): d for d in importlib.metadata.distributions(path=here)}
    followed: dict[str, set[str]] = {}  # name -> extras whose requirements were followed ("" = the plain ones)
    todo = [(text, {""} | extras) for text in requirements]
    while todo:
        text, wanted_by = todo.pop()
        requirement = Requirement(text)
        if requirement.marker and not any(requirement.marker.evaluate({"extra": e}) for e in wanted_by):
            continue
        name = canonicalize_name(requirement.name)
        assert name in installed, f"{text}: not installed in {sys.prefix}, so it cannot be linked"
        dist = installed[name]
        assert requirement.specifier.contains(dist.version, prereleases=True), f"{text}: {dist.version} here"
        new = ({""} | {canonicalize_name(e) for e in requirement.extras}) - followed.setdefault(name, set())
        followed[name] |= new
        todo += [(r, new) for r in dist.requires or []] if new else []
    chosen = set(followed)
    # every distribution's files (its RECORD) as (folder, *parts): a path owned by chosen
    # distributions only is linked whole; in a folder shared with another, only what chosen ones own
    records = {name: dist.read_text("RECORD") for name, dist in installed.items()}
    assert all(records[name] for name in chosen), "a chosen distribution without a RECORD"
    files = []
    for name, dist in installed.items():
        base = str(dist.locate_file(""))
        for row in csv.reader((records[name] or "").splitlines()):
            parts = os.path.normpath(row[0]).split(os.sep)
            if parts[0] not in ("..", ""):  # not bin/ or share/, outside site-packages
                files.append((name, (base, *parts)))

    def by_prefix(entries: list, depth: int) -> dict:
        groups = defaultdict(list)
        for name, key in entries:
            if len(key) > depth:
                groups[key[: depth + 1]].append((name, key))
        return groups

    def link(key: tuple[str, ...], below: list) -> None:
        owners = {name for name, _ in below}
        source, target = Path(*key), site.joinpath(*key[1:])
        if not owners & chosen or not os.path.lexists(source):
            return
        if owners <= chosen or not source.is_dir():
            target.symlink_to(source)
            return
        target.mkdir()
        for child, group in by_prefix(below, len(key)).items():
            link(child, group)

    for key, group in by_prefix(files, 1).items():
        link(key, group)
    return chosen

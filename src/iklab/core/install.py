"""What each install set provides, so a command run without the packages it needs says so in one
line instead of a ModuleNotFoundError traceback. `pip install iklab` is the robot set (numpy,
numba, scipy, mlflow-skinny); training, searches, the cases and data_gen need `iklab[train]`."""

from __future__ import annotations

import importlib.util

# Top-level modules of the `train` extra that the commands import (pyproject.toml)
TRAIN_MODULES = ("tensorflow", "keras", "pandas", "pyarrow", "roboticstoolbox", "sklearn", "matplotlib", "tqdm", "onnx")
SEARCH_MODULES = (*TRAIN_MODULES, "optuna")


def missing(modules: tuple[str, ...]) -> list[str]:
    """The ``modules`` that cannot be imported here (found without importing them)."""
    absent = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # ValueError: blocked (None in sys.modules)
            found = False
        if not found:
            absent.append(name)
    return absent


def needs_train_extra(prog: str, modules: tuple[str, ...] = TRAIN_MODULES) -> str | None:
    """One line for ``prog`` when a module it needs is missing, else None."""
    absent = missing(modules)
    if not absent:
        return None
    return (
        f"{prog}: error: needs the training packages, and {', '.join(absent)} "
        f"{'is' if len(absent) == 1 else 'are'} not installed: pip install 'iklab[train]'"
    )

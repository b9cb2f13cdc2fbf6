"""The import rules of README "Development": imports point one way.

Read from the source (every import statement, function-level ones included), plus what
importing the robot-side modules really loads, in a fresh interpreter.
"""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IKLAB = ROOT / "src" / "iklab"
DATA_GEN = ROOT / "data_gen"
# iklab's numpy core: what data_gen may use, and what everything else builds on
CORE = {"iklab", "iklab.kinematics", "iklab.regions", "iklab.encodings"}
HEAVY = ("data_gen", "optuna", "pyarrow", "sklearn", "matplotlib")


def _module_name(path: Path) -> str:
    package = "iklab" if path.parent == IKLAB else "data_gen"
    return package if path.stem == "__init__" else f"{package}.{path.stem}"


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in the file, as absolute names."""
    package = "iklab" if path.parent == IKLAB else "data_gen"
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x, from .x import y
                base = f"{package}.{base}" if base else package
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _graph(directory: Path) -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in directory.glob("*.py")}
    graph = {}
    for name, path in modules.items():
        graph[name] = {m for m in _imports(path) if m in modules and m != name}
    return graph


def test_no_import_cycle_inside_iklab():
    graph = _graph(IKLAB)
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(node, trail):
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycle = trail[trail.index(target) :] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, trail + [target])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert len(graph) >= 20  # the parse found the package


def test_one_door_from_iklab_to_data_gen():
    importers = sorted(
        _module_name(p)
        for p in IKLAB.glob("*.py")
        if any(m == "data_gen" or m.startswith("data_gen.") for m in _imports(p))
    )
    assert importers == ["iklab.data"]


def test_data_gen_uses_only_iklab_core():
    used = {m for p in DATA_GEN.glob("*.py") for m in _imports(p) if m == "iklab" or m.startswith("iklab.")}
    modules = {m if m in CORE else m.rsplit(".", 1)[0] for m in used}  # from iklab.x import name -> iklab.x
    assert modules <= CORE, sorted(modules - CORE)


def test_search_imports_nothing_that_imports_it_back():
    graph = _graph(IKLAB)
    assert not {m for m in graph if "iklab.search" in graph[m]}


def _loaded_after_import(module: str) -> list[str]:
    code = (
        f"import sys, json, {module}; "
        f"print(json.dumps(sorted(m for m in {HEAVY + ('tensorflow', 'keras')!r} if m in sys.modules)))"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


ROBOT_SIDE = [
    "iklab.solver",
    "iklab.network",
    "iklab.refine",
    "iklab.refine_kernel",
    "iklab.pose_kernel",
    "iklab.kinematics",
    "iklab.regions",
    "iklab.encodings",
    "iklab.mixture",
    "iklab.solution_sets",
    "iklab.metadata",
]
# What `pip install iklab` (the `robot` set, no TensorFlow) provides to the robot side
ROBOT_PACKAGES = {"numpy", "numba", "scipy", "mlflow", "yaml"}
# Function-level imports of other packages, on paths a solver never takes
ROBOT_SIDE_EXCEPTIONS = {
    ("iklab.kinematics", "roboticstoolbox"),  # load_robot by name, to_rtb; a logged model carries its DH table
    ("iklab.kinematics", "spatialmath"),  # to_rtb (roboticstoolbox's own dependency)
}


@pytest.mark.parametrize("module", ROBOT_SIDE)
def test_robot_side_and_core_load_no_heavy_package(module):
    """The README's done-check: `import iklab.solver` loads none of data_gen, optuna, pyarrow,
    scikit-learn, matplotlib (nor TensorFlow: the loaded network brings it)."""
    assert _loaded_after_import(module) == []


def test_robot_side_imports_only_the_robot_install():
    """Every import in the robot-side modules, function-level ones included, is iklab's own
    robot side, the standard library, or a package of the base install (`iklab[robot]`);
    TYPE_CHECKING-only imports aside. tests/test_solver.py runs it in a venv without TensorFlow."""
    robot_side = set(ROBOT_SIDE)
    for module in ROBOT_SIDE:
        path = IKLAB / f"{module.split('.')[1]}.py"
        tree = ast.parse(path.read_text())
        type_checking = {
            id(n)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
            for n in ast.walk(node)
        }
        for node in ast.walk(tree):
            if id(node) in type_checking or not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            if isinstance(node, ast.ImportFrom) and node.level:
                names = [f"iklab.{node.module}"] if node.module else [f"iklab.{a.name}" for a in node.names]
            else:
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            for name in names:
                top = name.split(".")[0]
                ok = name in robot_side or top in ROBOT_PACKAGES or top in sys.stdlib_module_names
                ok = ok or name == "iklab" or top == "__future__" or (module, top) in ROBOT_SIDE_EXCEPTIONS
                assert ok, f"{module} imports {name}, which the robot install lacks"


def test_serving_loads_pyarrow_only_through_pandas():
    """The pyfunc wrapper needs pandas (MLflow's pyfunc does); pandas 3 imports pyarrow when it is
    installed. Nothing else heavy comes with it."""
    assert _loaded_after_import("iklab.serving") == ["pyarrow"]
    assert _loaded_after_import("pandas") == ["pyarrow"]


@pytest.mark.parametrize("module", ["iklab.train", "iklab.search", "iklab.cases", "iklab.services", "iklab.ui"])
def test_commands_check_their_arguments_before_tensorflow_loads(module):
    """The command-line modules are light: TensorFlow, MLflow and the data come after the checks."""
    loaded = _loaded_after_import(module)
    assert not {"tensorflow", "keras", "data_gen", "pyarrow", "matplotlib"} & set(loaded), loaded

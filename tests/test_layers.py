"""The import rules: layers as folders, imports point down (README "Layout and data flow").

Read from the source (every import statement, function-level ones included), plus what
importing the robot-side modules really loads, in a fresh interpreter. The map below names every
module's layer; a module missing from it fails, and so does any import of a layer that is not
below (or beside) its own. A test of the check plants an upward import in a copy of the tree.
"""

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = (ROOT / "src", ROOT)  # iklab lives under src/, data_gen at the top
PACKAGES = ("iklab", "data_gen")

# Each module's layer. A new module must be added here: the folder says the layer, this map is checked.
LAYER_OF = {
    "iklab": "package",
    "iklab.serving": "package",  # the old path of the pyfunc wrapper, for models logged before the folders
    **{
        f"iklab.core.{m}": "core"
        for m in (
            "__init__",
            "kinematics",
            "regions",
            "encodings",
            "pose_kernel",
            "mixture",
            "refine",
            "refine_kernel",
            "solution_sets",
            "install",
            "processes",
            "urdf",
        )
    },
    **{
        f"iklab.robot.{m}": "robot"
        for m in ("__init__", "solver", "network", "onnx_network", "serving", "model_metadata", "rows", "http_server")
    },
    **{
        f"iklab.learning.{m}": "learning"
        for m in (
            "__init__",
            "config",
            "console",
            "datasets",
            "streaming",
            "models",
            "mixture_loss",
            "task_loss",
            "diagnostics",
            "task_errors",
            "branch_coverage",
            "resume",
            "plots",
            "run_logging",
            "model_logging",
            "onnx_export",
            "training",
            "epoch_slots",
            "metric_names",
            "experiment_pages",
            "robot_cost",
        )
    },
    **{
        f"iklab.studies.{m}": "studies"
        for m in (
            "__init__",
            "search_file",
            "search_study",
            "study_plots",
            "robot_front",
            "registry",
            "services",
            "diagnosis_cases",
            "toy_problems",
            "ablations",
        )
    },
    **{f"iklab.{m}": "commands" for m in ("train", "search", "cases", "ui", "ablations", "services", "serve")},
    **{
        f"data_gen.{m}": "data_gen"
        for m in ("__init__", "__main__", "cli", "generate", "dataset", "ambiguity", "export", "region")
    },
}
# Which layers each layer may import (its own included). `iklab` itself (the package) anyone may.
MAY_IMPORT = {
    "core": {"core"},
    "robot": {"core", "robot"},
    "data_gen": {"core", "data_gen"},
    "learning": {"core", "robot", "data_gen", "learning"},
    "studies": {"core", "robot", "learning", "studies"},
    "commands": {"core", "robot", "learning", "studies"},
    "package": {"robot"},  # the lazy `from iklab import IKSolver`
}
DATA_GEN_DOOR = "iklab.learning.datasets"  # the one iklab module that reads data_gen
HEAVY = ("data_gen", "optuna", "pyarrow", "sklearn", "matplotlib")


def _module_files(root: Path) -> dict[str, Path]:
    """Every module of iklab and data_gen under ``root`` (a repository), by dotted name."""
    found = {}
    for package in PACKAGES:
        base = root / "src" if package == "iklab" else root
        for path in (base / package).rglob("*.py"):
            parts = path.relative_to(base).with_suffix("").parts
            name = ".".join(parts)
            found["iklab" if name == "iklab.__init__" else name] = path
    return found


def _imports(path: Path, name: str, modules: set[str]) -> set[str]:
    """The modules of ``modules`` that ``path`` imports, anywhere in the file, resolved to the
    module (``from iklab.core import kinematics`` and ``from iklab.core.kinematics import fk`` both
    name ``iklab.core.kinematics``; a package means its ``__init__``)."""
    package = name if path.stem == "__init__" else name.rsplit(".", 1)[0]

    def resolve(dotted: str) -> str | None:
        return next((m for m in (dotted, f"{dotted}.__init__") if m in modules), None)

    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(resolve(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x, from ..x import y
                anchor = package.removesuffix(".__init__").split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.update(resolve(f"{base}.{alias.name}") or resolve(base) for alias in node.names)
    found.discard(None)
    found.discard(name)
    return found


def layer_violations(root: Path) -> list[str]:
    """Every rule of the map broken in the tree at ``root``: modules missing from the map (or
    mapped but gone) and imports of a layer the importer may not use."""
    files = _module_files(root)
    problems = [f"{m}: not in LAYER_OF (tests/test_layers.py)" for m in sorted(set(files) - set(LAYER_OF))]
    problems += [f"{m}: in LAYER_OF but no such module" for m in sorted(set(LAYER_OF) - set(files))]
    for name, path in sorted(files.items()):
        layer = LAYER_OF.get(name)
        if layer is None:
            continue
        for target in sorted(_imports(path, name, set(files))):
            target_layer = LAYER_OF.get(target)
            if target == "iklab" or target_layer is None:
                continue
            if target_layer not in MAY_IMPORT[layer]:
                problems.append(f"{name} ({layer}) imports {target} ({target_layer}): upward")
            elif target_layer == "data_gen" and layer == "learning" and name != DATA_GEN_DOOR:
                problems.append(f"{name} imports {target}: only {DATA_GEN_DOOR} reads data_gen")
    return problems


def test_every_module_has_a_layer_and_imports_point_down():
    assert layer_violations(ROOT) == []
    assert len(_module_files(ROOT)) >= 50  # the walk found the packages


@pytest.mark.parametrize(
    ("module", "planted", "expected"),
    [
        ("src/iklab/core/kinematics.py", "from iklab.learning import training", "iklab.core.kinematics (core) imports"),
        (
            "src/iklab/robot/solver.py",
            "from iklab.learning.training import train",
            "iklab.robot.solver (robot) imports",
        ),
        ("data_gen/generate.py", "import iklab.robot.solver", "data_gen.generate (data_gen) imports"),
        ("src/iklab/learning/models.py", "from data_gen import generate", "only iklab.learning.datasets"),
        ("src/iklab/learning/training.py", "from ..studies import registry", "iklab.learning.training (learning)"),
    ],
)
def test_the_check_fails_on_a_planted_upward_import(tmp_path, module, planted, expected):
    """A copy of the tree with one upward import inside a function: the check names it."""
    for part in ("src", "data_gen"):
        shutil.copytree(ROOT / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__"))
    assert layer_violations(tmp_path) == []
    path = tmp_path / module
    path.write_text(path.read_text() + f"\n\ndef _planted():\n    {planted}\n")
    problems = layer_violations(tmp_path)
    assert len(problems) == 1 and expected in problems[0], problems


def test_the_check_fails_on_a_module_missing_from_the_map(tmp_path):
    shutil.copytree(ROOT / "src", tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "data_gen", tmp_path / "data_gen", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "src" / "iklab" / "core" / "helpers.py").write_text("X = 1\n")
    assert layer_violations(tmp_path) == ["iklab.core.helpers: not in LAYER_OF (tests/test_layers.py)"]


def test_no_import_cycle():
    files = _module_files(ROOT)
    graph = {name: _imports(path, name, set(files)) for name, path in files.items()}
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


def _loaded_after_import(module: str) -> list[str]:
    code = (
        f"import sys, json, {module}; "
        f"print(json.dumps(sorted(m for m in {HEAVY + ('tensorflow', 'keras')!r} if m in sys.modules)))"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


# The robot side: core and robot, but the HTTP wrapper (serving needs MLflow's pyfunc and pandas)
ROBOT_SIDE = sorted(m for m, layer in LAYER_OF.items() if layer in ("core", "robot") and m != "iklab.robot.serving")
# What `pip install iklab` (the `robot` set, no TensorFlow) provides to the robot side
ROBOT_PACKAGES = {"numpy", "numba", "scipy", "mlflow", "yaml"}
# Function-level imports of other packages, on paths a solver never takes
ROBOT_SIDE_EXCEPTIONS = {
    ("iklab.core.kinematics", "roboticstoolbox"),  # load_robot by name, to_rtb; a logged model carries its DH table
    ("iklab.core.kinematics", "spatialmath"),  # to_rtb (roboticstoolbox's own dependency)
    ("iklab.core.urdf", "xacrodoc"),  # reading a .xacro file; a logged model carries its DH table
    ("iklab.robot.onnx_network", "onnxruntime"),  # the `robot` extra's network runtime; numpy without it
}


def test_robot_side_and_core_load_no_heavy_package():
    """`from iklab import IKSolver` and every core and robot module load none of data_gen, optuna,
    pyarrow, scikit-learn, matplotlib, TensorFlow (one fresh interpreter for all of them: each
    import only adds)."""
    modules = ", ".join(m.removesuffix(".__init__") for m in ROBOT_SIDE)
    assert _loaded_after_import(f"{modules}; from iklab import IKSolver") == []


def test_robot_side_imports_only_the_robot_install():
    """Every import in the robot-side modules, function-level ones included, is iklab's own
    robot side, the standard library, or a package of the base install (`iklab[robot]`);
    TYPE_CHECKING-only imports aside. tests/test_solver.py runs it in a venv without TensorFlow."""
    files = _module_files(ROOT)
    robot_side = {m.removesuffix(".__init__") for m in ROBOT_SIDE}
    for module in ROBOT_SIDE:
        tree = ast.parse(files[module].read_text())
        type_checking = {
            id(n)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
            for n in ast.walk(node)
        }
        for node in ast.walk(tree):
            if id(node) in type_checking or not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            assert not (isinstance(node, ast.ImportFrom) and node.level), f"{module}: relative import"
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            for name in names:
                top = name.split(".")[0]
                ok = name in robot_side or top in ROBOT_PACKAGES or top in sys.stdlib_module_names
                ok = ok or name == "iklab" or top == "__future__" or (module, top) in ROBOT_SIDE_EXCEPTIONS
                assert ok, f"{module} imports {name}, which the robot install lacks"


def test_serving_loads_pyarrow_only_through_pandas():
    """The pyfunc wrapper needs pandas (MLflow's pyfunc does); pandas 3 imports pyarrow when it is
    installed. Nothing else heavy comes with it."""
    assert _loaded_after_import("iklab.robot.serving") == ["pyarrow"]
    assert _loaded_after_import("pandas") == ["pyarrow"]


def test_commands_check_their_arguments_before_tensorflow_loads():
    """The command-line modules are light: TensorFlow, MLflow's data and the datasets come after
    the checks."""
    for module in sorted(m for m, layer in LAYER_OF.items() if layer == "commands"):
        loaded = _loaded_after_import(module)
        assert not {"tensorflow", "keras", "data_gen", "pyarrow", "matplotlib"} & set(loaded), (module, loaded)

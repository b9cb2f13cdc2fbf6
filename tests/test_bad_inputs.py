"""Bad inputs to the training, search and cases commands: one line naming the option, key or
file, exit status 2, and nothing written (no MLflow store, no dataset, no Optuna database).
The data_gen command's table is tests/test_bad_inputs_data_gen.py.

The rows of THROUGH_PYTHON_M run the real `python -m` command in a fresh process; the others
call the same module's ``main`` in this process, one after another (the same parsing and
checks, without an interpreter's start per row). They are refused before TensorFlow loads,
so the table takes seconds.
"""

import importlib
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pytest
from helpers import main_in_this_process

from iklab.core.refine import validate_poses
from iklab.learning import console

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = str(ROOT / "experiments" / "jaco_mlp.yaml")
SEARCH = str(ROOT / "experiments" / "search_jaco.yaml")


def train(overrides: str) -> list[str]:
    return ["iklab.train", "--experiment", EXPERIMENT, "--overrides", overrides]


# (id, command after `python -m`, words the one stderr line must hold)
ROWS = [
    ("batch-size-0", train("training.batch_size=0"), "training.batch_size must be >= 1, got 0"),
    ("batch-size-negative", train("training.batch_size=-5"), "training.batch_size must be >= 1, got -5"),
    ("epochs-0", train("training.epochs=0"), "training.epochs must be >= 1, got 0"),
    ("epochs-negative", train("training.epochs=-1"), "training.epochs must be >= 1, got -1"),
    ("probe-rows-0", train("diagnostics.probe_rows=0"), "diagnostics.probe_rows must be >= 1"),
    ("data-rows-1", train("data.rows=1"), "data.rows must be >= 100, got 1"),
    ("data-rows-10", train("data.rows=10"), "data.rows must be >= 100, got 10"),
    ("knn-rows-0", train("evaluation.knn_rows=0"), "evaluation.knn_rows must be >= 1, got 0"),
    ("learning-rate-nan", train("optimizer.learning_rate=.nan"), "optimizer.learning_rate must be a finite number"),
    ("learning-rate-0", train("optimizer.learning_rate=0"), "optimizer.learning_rate must be > 0"),
    ("dropout-1", train("model.dropout=1.0"), "model.dropout must be in [0, 1)"),
    ("unclosed-quote", train("model.activation='relu"), "--overrides"),
    ("unknown-key", train("model.widht=3"), "unknown key model.widht"),
    ("missing-file", ["iklab.train", "--experiment", "no/such.yaml"], "no/such.yaml: file not found"),
    (
        "bad-yaml",
        ["iklab.train", "--experiment", str(ROOT / "tests" / "inputs" / "bad.yaml")],
        "bad.yaml: not valid YAML at line 3, column 1: expected ',' or '}', but got '<stream end>'",
    ),
    ("no-experiment", ["iklab.train"], "the following arguments are required: --experiment"),
    ("storage-bogus", ["iklab.search", "--experiment", SEARCH, "--storage", "bogus://x"], "study.storage 'bogus://x'"),
    (
        "storage-no-driver",
        ["iklab.search", "--experiment", SEARCH, "--storage", "postgresql+psycopg://u:secret@h/d"],
        "study.storage 'postgresql+psycopg://u:***@h/d' cannot be opened",
    ),
    ("n-trials-negative", ["iklab.search", "--experiment", SEARCH, "--n-trials", "-1"], "--n-trials: must be >= 0"),
    (
        "timeout-negative",
        ["iklab.search", "--experiment", SEARCH, "--timeout-minutes", "-1"],
        "--timeout-minutes: must be >= 0",
    ),
    (
        "dataset-rows-negative",
        ["iklab.search", "--experiment", SEARCH, "--dataset-rows", "-5"],
        "--dataset-rows: must be >= 0",
    ),
    (
        "dataset-rows-too-few",
        ["iklab.search", "--experiment", SEARCH, "--dataset-rows", "50"],
        "data.rows must be >= 100, got 50",
    ),
    ("search-file-missing", ["iklab.search", "--experiment", "no/such.yaml"], "no/such.yaml: file not found"),
    (
        "final-overrides-unknown-key",
        ["iklab.search", "--experiment", SEARCH, "--final-overrides", "training.bogus=1"],
        "unknown key training.bogus",
    ),
    (
        "final-budget-negative",
        ["iklab.search", "--experiment", SEARCH, "--final-overrides", "training.time_budget_minutes=-1"],
        "training.time_budget_minutes must be > 0, got -1.0",
    ),
    ("time-budget-0", train("training.time_budget_minutes=0"), "training.time_budget_minutes must be > 0, got 0"),
    (
        "ablation-unknown-row",
        ["iklab.ablations", "--file", str(ROOT / "experiments" / "ablations_jaco.yaml"), "--only", "nope"],
        "no row named 'nope'",
    ),
    (
        "ablation-budget-negative",
        ["iklab.ablations", "--file", str(ROOT / "experiments" / "ablations_jaco.yaml"), "--budget-minutes", "-2"],
        "budget_minutes must be > 0, got -2.0",
    ),
    (
        "unknown-case",
        ["iklab.cases", "--cases", "no_such_case", "--cases-dir", str(ROOT / "experiments" / "cases")],
        "unknown case 'no_such_case'",
    ),
    ("no-case-files", ["iklab.cases", "--cases-dir", "nowhere"], "no case files (*.yaml) in nowhere"),
]


# One row of each command through its real entry point (argparse's refusal among them).
THROUGH_PYTHON_M = {"batch-size-0", "no-experiment", "storage-bogus", "ablation-unknown-row", "unknown-case"}


def _where(command: list[str], folder: Path) -> Path:
    """From the repository for a search or ablations (its file's `base:` is relative to it, as
    in the README), else from ``folder``, the row's MLflow store's."""
    return ROOT if command[0] in ("iklab.search", "iklab.ablations") else folder


def _run(command: list[str], folder: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{folder}/mlflow.db"}
    env.pop("MLFLOW_RUN_ID", None)
    return subprocess.run(
        [sys.executable, "-m", *command],
        cwd=_where(command, folder),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _in_this_process(command: list[str], folder: Path, monkeypatch) -> subprocess.CompletedProcess:
    """The module's ``main`` as `python -m` runs it, with the same working directory and store."""
    with monkeypatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder}/mlflow.db")
        patch.delenv("MLFLOW_RUN_ID", raising=False)
        patch.chdir(_where(command, folder))
        code, out, err = main_in_this_process(importlib.import_module(command[0]).main, command[1:])
    return subprocess.CompletedProcess(command, code, out, err)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """Every row: {id: (result, its working directory)}; the processes run while this one works."""
    folders = {row[0]: tmp_path_factory.mktemp(row[0]) for row in ROWS}
    assert set(folders) >= THROUGH_PYTHON_M
    with ThreadPoolExecutor(2) as pool, pytest.MonkeyPatch.context() as monkeypatch:
        futures = {i: pool.submit(_run, command, folders[i]) for i, command, _ in ROWS if i in THROUGH_PYTHON_M}
        results = {i: _in_this_process(command, folders[i], monkeypatch) for i, command, _ in ROWS if i not in futures}
        results.update({i: future.result() for i, future in futures.items()})
    return {i: (results[i], folders[i]) for i, _, _ in ROWS}


@pytest.mark.parametrize("row_id, command, words", ROWS, ids=[row[0] for row in ROWS])
def test_bad_input_is_one_line_and_writes_nothing(outcomes, row_id, command, words):
    result, folder = outcomes[row_id]
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and words in lines[0], result.stderr
    assert lines[0].startswith(("iklab.", "python -m iklab.")), lines[0]
    assert list(folder.iterdir()) == []  # no mlflow.db, no data/, no optuna.db


def test_pose_whose_bottom_row_is_not_0001_is_refused(jaco):
    pose = np.eye(4)
    pose[3, 0] = 0.5
    with pytest.raises(ValueError, match=r"rows \[0\] \(1 row\) are not homogeneous"):
        validate_poses(pose[None])


def _wait_for(path: Path, text: str, process: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while text not in (path.read_text() if path.exists() else ""):
        assert process.poll() is None, path.read_text()
        assert time.monotonic() < deadline, f"no {text!r} within {seconds} s: {path.read_text()}"
        time.sleep(0.5)


TINY = (
    "name: tiny\ndata: {region: working, rows: 3000}\nmodel: {depth: 1, width: 16}\n"
    "training: {epochs: 500, batch_size: 32}\ndiagnostics: {probe_rows: 64}\n"
)


def _signal_after_two_epochs(tmp_path: Path, command: list[str], sig: signal.Signals) -> tuple[str, list]:
    """Run ``command`` in ``tmp_path``, send ``sig`` once it printed its second epoch; its output
    (exit status 143 checked) and the MLflow runs it left."""
    (tmp_path / "tiny.yaml").write_text(TINY)
    log = tmp_path / "out.txt"
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    env.pop("MLFLOW_RUN_ID", None)
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", *command], cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            _wait_for(log, "epoch   2/500", process, 180)
            process.send_signal(sig)
            assert process.wait(timeout=60) == 143, log.read_text()
        finally:
            process.kill()
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    return log.read_text(), client.search_runs([e.experiment_id for e in client.search_experiments()])


@pytest.mark.slow
def test_a_schedulers_signal_ends_the_training_run_as_killed(tmp_path):
    text, runs = _signal_after_two_epochs(tmp_path, ["iklab.train", "--experiment", "tiny.yaml"], signal.SIGTERM)
    assert "iklab.train: stopped (terminated by SIGTERM)" in text and "Traceback" not in text
    (run,) = runs
    assert run.info.status == "KILLED" and run.data.tags["failure_reason"] == "terminated by SIGTERM"


def test_a_closed_terminals_sighup_stops_a_command_as_sigterm_does(capsys):
    """SIGHUP takes SIGTERM's path (the end-to-end run above): the same Terminated, the same
    exit status and line. In this process, its handlers put back afterwards."""
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}

    def work() -> None:
        os.kill(os.getpid(), signal.SIGHUP)
        time.sleep(60)  # the handler raises in the main thread before this ends

    try:
        status, result = console.run_heavy("iklab.train", work, mistakes=(), runs="its MLflow runs")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        console._received.clear()
    assert status == 143 and result is None
    assert "iklab.train: stopped (terminated by SIGHUP); its MLflow runs marked KILLED" in capsys.readouterr().err


@pytest.mark.slow
def test_a_schedulers_signal_ends_a_search_its_trial_and_their_runs(tmp_path):
    (tmp_path / "search.yaml").write_text(
        f"name: s\nbase: tiny.yaml\nstudy: {{name: s, storage: 'sqlite:///{tmp_path}/optuna.db', n_trials: 2, "
        "pruner: none, diagnostic_pruning_epochs: 500}\n"
        "space: {model.width: {choices: [8, 16]}}\n"
    )
    text, runs = _signal_after_two_epochs(tmp_path, ["iklab.search", "--experiment", "search.yaml"], signal.SIGTERM)
    assert "iklab.search: stopped (terminated by SIGTERM)" in text and "Traceback" not in text
    assert len(runs) == 2  # the study's run and its first trial's
    assert {(r.info.status, r.data.tags["failure_reason"]) for r in runs} == {("KILLED", "terminated by SIGTERM")}
    (trial,) = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path}/optuna.db").trials
    assert trial.state == optuna.trial.TrialState.FAIL


# The base install (`pip install iklab`, the robot set) lacks the training packages: each
# command says so in one line. Simulated by blocking the modules (None in sys.modules).
_WITHOUT_TRAIN = """
import runpy, sys
for name in ("tensorflow", "keras", "pandas", "pyarrow", "optuna", "sklearn", "matplotlib", "tqdm", "roboticstoolbox"):
    sys.modules[name] = None
sys.argv = sys.argv[1:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize(
    ("command", "prog"),
    [
        (["data_gen", "inspect", "data/x"], "data_gen"),
        (["iklab.train", "--experiment", EXPERIMENT], "iklab.train"),
        (["iklab.search", "--experiment", SEARCH], "iklab.search"),
        (["iklab.cases"], "iklab.cases"),
        (["iklab.ablations"], "iklab.ablations"),
    ],
)
def test_a_command_without_the_train_extra_says_so_in_one_line(command, prog, tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", _WITHOUT_TRAIN, *command], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert out.returncode == 2, out.stderr
    absent = "tensorflow, keras, pandas, pyarrow, roboticstoolbox, sklearn, matplotlib, tqdm"
    absent += ", optuna" if prog == "iklab.search" else ""
    assert out.stderr == f"{prog}: error: needs the training packages, and {absent} are not installed: " + (
        "pip install 'iklab[train]'\n"
    )

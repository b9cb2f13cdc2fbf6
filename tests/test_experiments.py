"""Every file in experiments/ is built and run for one tiny step, as shipped (only its size
shrunk): a key renamed in the code, or a value it no longer accepts, fails here, not in a
user's 10-minute run. The case files run as shipped (their quick versions) in test_cases.py."""

import math
from dataclasses import replace
from pathlib import Path

import pytest

from iklab.cases import case_paths
from iklab.learning.config import load_experiment
from iklab.learning.training import train
from iklab.studies.search_file import load_search
from iklab.studies.search_study import run_search

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
TRAINING_FILES = sorted(p for p in EXPERIMENTS.glob("*.yaml") if "base:" not in p.read_text())
SEARCH_FILES = sorted(p for p in EXPERIMENTS.glob("*.yaml") if "\nstudy:" in p.read_text())
# (the ablations file, with `base:` and `ablations:`, is test_ablations.py's)
# The file's own settings with its size shrunk: a few thousand rows, one epoch.
TINY = {
    "data.rows": 3000,
    "training.epochs": 1,
    "training.time_budget_minutes": None,  # a final retraining's budget: one epoch instead
    "training.resume_dir": None,
    "diagnostics.probe_rows": 128,
    "evaluation.knn_rows": 1000,
    "evaluation.test_rows": 200,
}
# A mixture's solution sets (solve_all against a multi-start reference), shrunk the same way.
TINY_SOLUTION_SETS = {"evaluation.solution_set_poses": 20, "evaluation.reference_starts": 32}


def _tiny(tmp_path: Path) -> dict:
    return {**TINY, "data.path": str(tmp_path / "dataset")}


def test_every_kind_of_file_is_covered():
    assert len(TRAINING_FILES) >= 3 and len(SEARCH_FILES) >= 2 and len(case_paths(EXPERIMENTS / "cases")) >= 4
    assert {p.name for p in SEARCH_FILES} >= {"search_jaco.yaml", "search_jaco_long.yaml"}


@pytest.mark.slow
@pytest.mark.parametrize("path", TRAINING_FILES, ids=lambda p: p.stem)
def test_training_file_trains_one_epoch(path, tmp_path, mlflow_store, monkeypatch):
    monkeypatch.chdir(EXPERIMENTS.parent)  # data.robot: a URDF file's path is relative to the repository
    tiny = _tiny(tmp_path)
    if load_experiment(path).data.output_encoding == "mixture":
        tiny.update(TINY_SOLUTION_SETS)
    config = load_experiment(path, [f"{k}={'null' if v is None else v}" for k, v in tiny.items()])
    result = train(config, log_model=False)
    assert result.status == "finished", result.reason
    assert len(result.history) == 1 and math.isfinite(result.metrics["test/position_error_mm_median"])
    assert mlflow_store.get_run(result.run_id).info.status == "FINISHED"


@pytest.mark.slow
@pytest.mark.parametrize("path", SEARCH_FILES, ids=lambda p: p.stem)
def test_search_file_runs_one_trial_and_finalizes(path, tmp_path, mlflow_store, monkeypatch):
    monkeypatch.chdir(EXPERIMENTS.parent)  # `base:` is relative to the repository, like the README's commands
    config = load_search(
        path, {"n_trials": 1, "timeout_minutes": 5, "name": "tiny", "storage": f"sqlite:///{tmp_path / 'optuna.db'}"}
    )
    tiny = _tiny(tmp_path)
    shrunk = {k: v for k, v in TINY_SOLUTION_SETS.items() if k in config.trial_overrides}
    config = replace(
        config,
        trial_overrides={**config.trial_overrides, **tiny, **shrunk, "data.train_rows": None},
        final_overrides={**config.final_overrides, **tiny, **shrunk},
        # the file's budget is a timing on this machine: here the file's mechanics are under test
        # (tests/test_search.py holds budgets to verdicts no machine's timing can flip)
        robot_budget=None,
    )
    result = run_search(config)
    assert result.counts["complete"] == 1, result.counts
    assert result.champion.get("new_version") == 1, result.champion  # retrained and registered
    # the study's run carries its champion's branches/*: coverage where the file's models give every branch
    parent = mlflow_store.get_run(result.parent_run_id).data
    mixture = parent.tags["branches"].startswith("every:")
    assert mixture == (path.stem == "search_puma560_full")
    assert ("branches/coverage" in parent.metrics) == mixture
    assert "branches/raw_position_error_mm_median" in parent.metrics

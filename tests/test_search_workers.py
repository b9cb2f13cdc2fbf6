"""Search workers as separate processes (`python -m iklab.search`) on one SQLite study: sharing
it, killed and resumed, both finalizing. Apart from tests/test_search.py so the two run in
parallel (each file runs in one pytest-xdist process)."""

import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState
from test_search import write_search

from iklab.studies.search_file import load_search, make_study
from iklab.studies.search_study import run_search


def _worker(search_path, *extra):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.Popen(
        [sys.executable, "-m", "iklab.search", "--experiment", str(search_path), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


@pytest.mark.slow
def test_two_worker_processes_share_one_study_and_register_one_champion(mlflow_store, tmp_path):
    """Both workers run trials and may finalize; the claim (a companion study created
    atomically) lets one. (A later rerun of the finished study: test_search.py's no-op test.)"""
    path = write_search(tmp_path, {"model.width": {"choices": [8, 16, 32, 64]}}, {"name": "shared", "n_trials": 4})
    make_study(load_search(path))  # the study exists before either worker starts
    workers = [_worker(path), _worker(path)]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert all(w.returncode == 0 for w in workers), outputs
    study = optuna.load_study(study_name="shared", storage=f"sqlite:///{tmp_path}/optuna.db")
    trials = study.trials
    numbers = [t.number for t in trials]
    assert sorted(numbers) == list(range(len(trials)))  # nothing lost, nothing duplicated
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(done) == 4  # not one more: a trial asked for at the same moment as the last is not run
    surplus = [t for t in trials if t.state == TrialState.FAIL]
    assert all(t.user_attrs.get("surplus") for t in surplus) and len(trials) == 4 + len(surplus)
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    run_ids = [t.user_attrs["mlflow_run_id"] for t in done]
    assert len(set(run_ids)) == len(run_ids)
    assert all("[trial" in out for out in outputs)  # both did work
    # one champion decision: the other worker lost the claim or found the decision made
    assert len(mlflow_store.search_model_versions("name = 'ik-jaco'")) == 1, outputs
    assert sum("not finalized here: another worker" in out for out in outputs) == 1, outputs
    assert study.user_attrs["finalized"]["summary_line"].startswith("ik-jaco v1")


@pytest.mark.slow
def test_killed_study_resumes_and_marks_the_lost_trial_failed(mlflow_store, tmp_path):
    path = write_search(
        tmp_path, {"model.width": {"choices": [16, 32]}}, {"name": "resumable", "n_trials": 3, "finalize": False}
    )
    storage = f"sqlite:///{tmp_path}/optuna.db"
    worker = _worker(path)
    deadline = time.monotonic() + 300
    while True:  # kill it in the middle of its second trial
        assert time.monotonic() < deadline and worker.poll() is None
        try:
            trials = optuna.load_study(study_name="resumable", storage=storage).trials
        except KeyError:
            trials = []
        running = trials and trials[-1].state == TrialState.RUNNING
        if any(t.state == TrialState.COMPLETE for t in trials) and running and "mlflow_run_id" in trials[-1].user_attrs:
            break  # its MLflow run exists: training has begun
        time.sleep(0.2)
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)
    # rerun at once, within the grace period (2 x heartbeat of 2 s): the lost trial is not stale
    # yet; the rerun waits for it at its end instead of leaving it RUNNING
    result = run_search(load_search(path))
    trials = optuna.load_study(study_name="resumable", storage=storage).trials
    trials = [t for t in trials if not t.user_attrs.get("surplus")]  # asked while the lost one held a slot
    states = [t.state for t in trials]
    assert states.count(TrialState.FAIL) == 1 and states.count(TrialState.COMPLETE) == 3
    assert TrialState.RUNNING not in states
    assert result.counts == {"complete": 3, "pruned": 0, "failed": 1, "running": 0}
    # and the MLflow runs of the killed worker (its trial's run, its parent run) are FAILED, with why
    (lost,) = [t for t in trials if t.state == TrialState.FAIL]
    for key in ("mlflow_run_id", "mlflow_parent_run_id"):
        run = mlflow_store.get_run(lost.user_attrs[key])
        assert run.info.status == "FAILED" and "stopped sending heartbeats" in run.data.tags["failure_reason"]
    parents = {t.user_attrs["mlflow_parent_run_id"] for t in trials}
    assert len(parents) == 2 and result.parent_run_id in parents

"""Real services (docs/many-workers.md): PostgreSQL and an MLflow tracking server started in
the test on 127.0.0.1, three search workers, one killed with SIGKILL mid-trial, and the tracking
server killed and restarted mid-study. Every process started here is stopped by its id; every
wait is bounded."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import mlflow
import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool
from test_search import write_search

from iklab.studies import services
from iklab.studies.search_file import load_search, make_study


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def running_services():
    # not under pytest's tmp_path: its parents are private to root, and PostgreSQL runs as postgres
    root = Path(tempfile.mkdtemp(prefix="iklab-services-"))
    root.chmod(0o755)
    pg_port, mlflow_port = _free_port(), _free_port()
    try:
        services.start_postgres(root, pg_port)
        services.start_mlflow(root, pg_port, mlflow_port)
        yield root, pg_port, mlflow_port
    finally:
        services.stop_mlflow(root)
        services.stop_postgres(root)
        shutil.rmtree(root, ignore_errors=True)


def _worker(path, storage, tracking):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "MLFLOW_TRACKING_URI": tracking}
    command = [sys.executable, "-m", "iklab.search", "--experiment", str(path), "--storage", storage]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def _trials(url: str, name: str) -> list:
    """The study's trials through a storage that keeps no connection open afterwards: a poll every
    0.3 s through ``optuna.load_study(url)`` leaves each engine's pooled connection open until the
    garbage collector runs (measured: 40 loads, 10 connections), and with three workers and the
    tracking server beside it PostgreSQL's 100 connections ran out once in CI."""
    storage = optuna.storages.RDBStorage(url, engine_kwargs={"poolclass": NullPool})
    try:
        return optuna.load_study(study_name=name, storage=storage).trials
    finally:
        storage.engine.dispose()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_three_workers_on_real_services_one_killed_and_the_server_restarted(running_services, tmp_path, monkeypatch):
    root, pg_port, mlflow_port = running_services
    storage, tracking = services.optuna_uri(pg_port), services.tracking_uri(mlflow_port)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking)
    monkeypatch.chdir(tmp_path)
    path = write_search(
        tmp_path,
        {"model.width": {"choices": [8, 16, 32, 64]}, "optimizer.learning_rate": {"low": 1e-3, "high": 1e-2}},
        # (two workers logging the dataset at the same moment once failed a trial here: MLflow's
        # server broke its own unique key; run_logging.log_dataset_input now calls again)
        {"name": "on-postgres", "n_trials": 4, "storage": storage},
    )
    # all three start at once on a fresh database (Optuna's schema is created by whoever wins)
    workers = [_worker(path, storage, tracking) for _ in range(3)]
    try:
        deadline = time.monotonic() + 600
        while True:  # kill worker 0 once every worker is inside a trial whose MLflow run exists
            if workers[0].poll() is not None:  # ended before it could be killed: say why
                pytest.fail(f"worker 0 exited with {workers[0].returncode}:\n{workers[0].communicate()[0][-3000:]}")
            assert time.monotonic() < deadline, "the three workers were never in trials at once"
            try:
                trials = _trials(storage, "on-postgres")
            except (KeyError, SQLAlchemyError):  # no study yet; the workers are creating the schema
                trials = []
            running = [t for t in trials if t.state == TrialState.RUNNING and "mlflow_run_id" in t.user_attrs]
            if len(running) == 3:
                break
            time.sleep(0.3)
        workers[0].send_signal(signal.SIGKILL)
        # the tracking server blinks: killed with SIGKILL while two workers log, back 3 s later
        os.killpg(int((root / "mlflow.pid").read_text()), signal.SIGKILL)
        time.sleep(3)
        services.start_mlflow(root, pg_port, mlflow_port)
        outputs = [w.communicate(timeout=600)[0] for w in workers[1:]]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait(timeout=30)
    assert all(w.returncode == 0 for w in workers[1:]), outputs
    trials = _trials(storage, "on-postgres")
    assert sorted(t.number for t in trials) == list(range(len(trials)))  # every number once
    trials = [t for t in trials if not t.user_attrs.get("surplus")]  # asked for past n_trials: not run
    states = [t.state for t in trials]
    why = [(t.number, t.state.name, t.user_attrs.get("fail_reason")) for t in trials]
    tails = "\n\n".join(out[-4000:] for out in outputs)
    assert states.count(TrialState.FAIL) == 1 and TrialState.RUNNING not in states, f"{why}\n{tails}"
    params = [tuple(sorted(t.params.items())) for t in trials]
    assert len(set(params)) == len(params)  # no configuration sampled twice
    client = mlflow.MlflowClient(tracking)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, max_results=1000)
    assert runs and not [r.info.run_id for r in runs if r.info.status == "RUNNING"]
    # nothing the survivors logged was lost while the server was down: every epoch of every trial
    for trial in trials:
        if trial.state == TrialState.COMPLETE:
            run = client.get_run(trial.user_attrs["mlflow_run_id"])
            assert run.info.status == "FINISHED"
            assert len(client.get_metric_history(run.info.run_id, "val_loss")) == 2  # trial_overrides: 2 epochs
    (lost,) = [t for t in trials if t.state == TrialState.FAIL]
    assert client.get_run(lost.user_attrs["mlflow_run_id"]).info.status == "FAILED"
    assert len(client.search_model_versions("name = 'ik-jaco'")) == 1  # one champion for the study
    # last, once the end state is known good: a survivor printed no traceback (shown from its start)
    tracebacks = [out[max(0, out.index("Traceback") - 500) :][:4000] for out in outputs if "Traceback" in out]
    assert not tracebacks, "\n\n".join(tracebacks)


@pytest.fixture
def postgres_only():
    root = Path(tempfile.mkdtemp(prefix="iklab-postgres-"))
    root.chmod(0o755)
    port = _free_port()
    try:
        services.start_postgres(root, port)
        yield root, port
    finally:
        services.stop_postgres(root)
        shutil.rmtree(root, ignore_errors=True)


def _kill_postgres(root: Path) -> None:
    """SIGKILL the postmaster and every process it started (a crash, not a shutdown)."""
    postmaster = int((root / "pgdata" / "postmaster.pid").read_text().split()[0])
    children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True).stdout.split()
    for pid in [postmaster, *map(int, children)]:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() for pid in [postmaster, *map(int, children)]):
        assert time.monotonic() < deadline, "PostgreSQL did not die"
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_study_storage_rides_out_a_postgresql_restart(postgres_only, tmp_path, capsys):
    root, port = postgres_only
    storage = services.optuna_uri(port)
    config = load_search(
        write_search(tmp_path, {"model.width": {"choices": [8, 16]}}, {"name": "blink", "storage": storage})
    )
    study = make_study(config)
    trial = study.ask()
    trial.set_user_attr("before", 1)
    study._storage.record_heartbeat(trial._trial_id)
    _kill_postgres(root)
    # back 3 s later; meanwhile the calls below wait and retry instead of failing
    restart = threading.Timer(3.0, services.start_postgres, (root, port))
    restart.start()
    started = time.monotonic()
    trial.set_user_attr("during", 2)
    study._storage.record_heartbeat(trial._trial_id)
    study.tell(trial, 1.5)
    restart.join()
    assert time.monotonic() - started >= 2.5  # it did wait for the restart
    assert "study storage unreachable" in capsys.readouterr().out
    (stored,) = _trials(storage, "blink")
    assert stored.state == TrialState.COMPLETE and stored.value == 1.5
    assert stored.user_attrs == {"before": 1, "during": 2}

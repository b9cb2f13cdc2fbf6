import dataclasses
import json
import re
import subprocess
from pathlib import Path

import keras
import mlflow
import numpy as np
import pytest
from helpers import HEALTHY, StepClock, tiny_experiment

from iklab.core.encodings import decode_outputs
from iklab.core.kinematics import fk
from iklab.learning import metric_names as M
from iklab.learning import run_logging
from iklab.learning.config import experiment_from_dict
from iklab.learning.models import TimeBudget
from iklab.learning.training import train
from iklab.robot.model_metadata import MODEL_METADATA_KEY
from iklab.robot.solver import IKSolver
from iklab.train import main

TINY = tiny_experiment(optimizer={"learning_rate": 3e-3})


@pytest.mark.slow
def test_tiny_train_logs_metrics_artifacts_and_a_loadable_model(mlflow_store, jaco):
    result = train(experiment_from_dict(HEALTHY))
    assert result.status == "finished", result.reason
    run = mlflow_store.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert mlflow_store.get_experiment(run.info.experiment_id).name == "ik-jaco-train"
    metrics = run.data.metrics
    for key in (
        "test/position_error_mm_median",
        "test/rotation_error_deg_median",
        "test/joint_error_deg_j0",
        "baseline/knn/position_error_mm_median",
        "baseline/mean/position_error_mm_median",
        "best_val_loss",
        "best_epoch",
        "loss",
        "val_loss",
        "learning_rate",
        "r2_mean",
        "dead_fraction/act_1",
        "grad_norm/dense_1",
        "update_ratio/dense_2",
    ):
        assert key in metrics, key
    assert len(mlflow_store.get_metric_history(result.run_id, "dead_fraction/act_2")) == len(result.history) == 12
    # the network learned: far better than predicting the mean
    assert metrics["test/position_error_mm_median"] < 0.5 * metrics["baseline/mean/position_error_mm_median"]
    assert run.data.params["model.width"] == "128" and run.data.params["data.region"] == "custom"
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent)
    commit = run.data.tags["git_commit"]
    assert re.fullmatch(r"[0-9a-f]{40}", commit) and commit == head.stdout.strip()
    assert run.data.tags["dataset"].startswith("jaco-custom-")
    assert result.flags == [] and run.data.tags["flags"] == "none"  # a healthy run raises no flag
    # the UI's side-by-side names (a mixture's in test_solution_sets.py): one answer, no solution sets
    assert metrics["branches/raw_position_error_mm_median"] == metrics["test/position_error_mm_median"]
    assert metrics["branches/raw_rotation_error_deg_median"] == metrics["test/rotation_error_deg_median"]
    assert "branches/coverage" not in metrics and run.data.tags["branches"] == "one: a single answer over region custom"
    artifacts = {a.path for a in mlflow_store.list_artifacts(result.run_id)}
    artifacts |= {a.path for a in mlflow_store.list_artifacts(result.run_id, "plots")}
    assert {
        "config.yaml",
        "diagnosis.md",
        "plots/learning_curves.png",
        "plots/dead_units.png",
        "plots/error_histograms.png",
    } <= artifacts
    assert len(run.inputs.dataset_inputs) == 1

    assert "python_function" in mlflow.models.get_model_info(result.model_uri).flavors  # servable
    loaded = IKSolver.load(result.model_uri).network  # the numpy export the solver runs
    x = np.random.default_rng(0).normal(size=(5, 7)).astype("float32")
    np.testing.assert_allclose(loaded(x), result.model(x), atol=1e-5)
    info = mlflow.models.get_model_info(result.model_uri)
    meta = info.metadata[MODEL_METADATA_KEY]
    assert meta["robot"]["name"] == "jaco" and meta["output_encoding"] == "sincos"
    assert meta["input_columns"] == ["x", "y", "z", "qw", "qx", "qy", "qz"]
    q = decode_outputs(np.asarray(loaded(x)), meta["output_encoding"])
    assert np.all(np.isfinite(fk(jaco, q)))


@pytest.mark.slow
def test_nan_loss_fails_the_run_and_keeps_what_was_logged(mlflow_store):
    config = experiment_from_dict(
        {**TINY, "optimizer": {"name": "sgd", "learning_rate": 1e12}, "training": {"epochs": 3, "batch_size": 128}}
    )
    mlflow.set_experiment("diverged-child")
    with mlflow.start_run(run_name="parent") as parent:  # as under a study or a diagnosis case
        result = train(config, parent_run_id=parent.info.run_id)
        # the failed child ended itself, not its parent: the parent is still the active run
        assert mlflow.active_run().info.run_id == parent.info.run_id
    assert mlflow_store.get_run(parent.info.run_id).info.status == "FINISHED"
    assert result.status == "failed" and "NaN" in result.reason
    run = mlflow_store.get_run(result.run_id)
    assert run.info.status == "FAILED"
    assert "NaN" in run.data.tags["failure_reason"]
    assert "model.width" in run.data.params
    assert "diagnosis.md" in {a.path for a in mlflow_store.list_artifacts(result.run_id)}


def test_cli_reports_config_errors_in_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  widht: 3\n")
    assert main(["--experiment", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert "bad.yaml: unknown key model.widht" in err and len(err.splitlines()) == 1
    assert main(["--experiment", str(tmp_path / "missing.yaml")]) == 2
    assert main(["--experiment", str(bad), "--overrides", "model"]) == 2


class _Interrupt(keras.callbacks.Callback):
    """Ctrl-C at the end of an epoch, after the resume state of that epoch was saved."""

    def __init__(self, at_epoch: int) -> None:
        super().__init__()
        self.at_epoch = at_epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.at_epoch:
            raise KeyboardInterrupt


def test_a_time_budget_ends_on_time_and_an_interrupted_run_resumes_its_clock(
    mlflow_store, tmp_path, capsys, monkeypatch
):
    # training time in steps: 0.03 s a reading, ~290 batches in the budget, whatever the load
    monkeypatch.setattr(TimeBudget, "clock", staticmethod(StepClock(0.03)))
    resume_dir = tmp_path / "resume"
    budget = 0.15  # minutes
    config = experiment_from_dict(
        tiny_experiment(
            rows=3000,
            optimizer={"schedule": "cosine", "learning_rate": 3e-3},
            training={"time_budget_minutes": budget, "resume_dir": str(resume_dir), "early_stopping_patience": 0},
            mlflow={"log_model": False},
        )
    )
    with pytest.raises(KeyboardInterrupt):
        train(config, extra_callbacks=(_Interrupt(1),))
    elapsed = json.loads((resume_dir / "progress.json").read_text())["elapsed_seconds"]
    assert 0 < elapsed < budget * 60 and (resume_dir / "backup").is_dir()
    capsys.readouterr()
    result = train(config)
    assert "resuming from" in capsys.readouterr().out
    assert result.status == "finished" and not resume_dir.exists()  # a finished run clears its state
    history = result.history
    assert history[0]["epoch"] == 2 and history[0][M.ELAPSED_SECONDS] > elapsed  # epoch 3 on, the clock goes on
    seconds = [h["epoch_seconds"] for h in history]
    total = history[-1][M.ELAPSED_SECONDS]
    assert budget * 60 <= total <= budget * 60 + max(seconds) + 1.0  # ends at the first batch past the budget
    assert history[-1]["learning_rate"] < 0.1 * 3e-3 < history[0]["learning_rate"]  # cosine over the time
    assert result.metrics["test/position_error_mm_median"] < 200
    # another configuration's state in the directory (the search's best changed) is not restored
    with pytest.raises(KeyboardInterrupt):
        train(config, extra_callbacks=(_Interrupt(0),))
    wider = dataclasses.replace(config, model=dataclasses.replace(config.model, width=80))
    capsys.readouterr()
    assert train(wider).status == "finished"
    assert "holds another configuration's training state: starting afresh" in capsys.readouterr().out
    with pytest.raises(ValueError, match="time_budget_minutes needs optimizer.schedule"):
        train(
            experiment_from_dict(
                tiny_experiment(optimizer={"schedule": "exponential"}, training={"time_budget_minutes": 1})
            )
        )


def test_a_run_whose_process_is_gone_is_closed_by_the_next_command(mlflow_store):
    import os
    import socket

    from iklab.learning.run_logging import HOST_TAG, PID_TAG, training_run

    experiment = mlflow_store.create_experiment("reaped")
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid of this host that no longer runs: a `kill -9`ed training
    host = socket.gethostname()
    orphan = mlflow_store.create_run(experiment, tags={HOST_TAG: host, PID_TAG: str(gone.pid)})
    live = mlflow_store.create_run(experiment, tags={HOST_TAG: host, PID_TAG: str(os.getpid())})
    elsewhere = mlflow_store.create_run(experiment, tags={HOST_TAG: "another-host", PID_TAG: str(gone.pid)})
    trial = mlflow_store.create_run(experiment, tags={HOST_TAG: host, PID_TAG: str(gone.pid), "study": "s"})
    with training_run("next", "reaped") as run:
        tags = mlflow_store.get_run(run.info.run_id).data.tags
        assert tags[PID_TAG] == str(os.getpid()) and tags[HOST_TAG] == host
    closed = mlflow_store.get_run(orphan.info.run_id)
    assert closed.info.status == "KILLED" and closed.data.tags["state"] == "killed"
    assert closed.data.tags["failure_reason"].startswith(f"its process {gone.pid} on {host} is gone")
    assert mlflow_store.get_run(live.info.run_id).info.status == "RUNNING"  # its process runs
    assert mlflow_store.get_run(elsewhere.info.run_id).info.status == "RUNNING"  # cannot be told from here
    assert mlflow_store.get_run(trial.info.run_id).info.status == "RUNNING"  # its study's heartbeats end it
    assert mlflow_store.get_run(run.info.run_id).info.status == "FINISHED"


def test_logging_a_dataset_another_run_is_inserting_at_the_same_moment_is_retried(mlflow_store, monkeypatch):
    """Two workers logging one new dataset at once: MLflow's server lets one insert break its
    unique key (seen on PostgreSQL). The loser calls again and links the dataset then; any other
    tracking error is raised as it is."""
    real, calls = mlflow.log_input, []

    def racing(dataset, context=None):
        calls.append(context)
        if len(calls) == 1:
            raise mlflow.exceptions.MlflowException(
                "BAD_REQUEST: (psycopg.errors.UniqueViolation) duplicate key value violates unique "
                'constraint "dataset_pk"'
            )
        return real(dataset, context=context)

    monkeypatch.setattr(run_logging.mlflow, "log_input", racing)
    sample = mlflow.data.from_numpy(np.zeros((3, 2)), name="rows", digest="d" * 32)
    mlflow.set_experiment("dataset-race")  # in this test's store (another test may have set one of its own)
    with mlflow.start_run() as run:
        run_logging.log_dataset_input(sample)
    assert calls == ["training", "training"]
    (logged,) = mlflow_store.get_run(run.info.run_id).inputs.dataset_inputs
    assert logged.dataset.name == "rows"
    monkeypatch.setattr(
        run_logging.mlflow, "log_input", lambda *a, **k: (_ for _ in ()).throw(mlflow.exceptions.MlflowException("no"))
    )
    with mlflow.start_run(), pytest.raises(mlflow.exceptions.MlflowException, match="no"):
        run_logging.log_dataset_input(sample)

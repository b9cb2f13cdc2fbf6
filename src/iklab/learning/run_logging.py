"""MLflow side of a training run: the run itself, params, per-epoch metrics, results, model.

Kept apart from `train` so the training loop reads top to bottom. Everything a
person needs to reproduce a run from the UI is logged: the resolved config,
the dataset's digest and the git commit.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import keras
import mlflow
import numpy as np
from mlflow.data.dataset_source import DatasetSource
from mlflow.data.dataset_source_registry import get_dataset_source_from_json
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from iklab.core.processes import process_alive
from iklab.learning import metric_names as M
from iklab.learning.branch_coverage import SolutionSetReport, solution_set_figure
from iklab.learning.config import ExperimentConfig, flatten, to_yaml
from iklab.learning.console import raise_if_terminated
from iklab.learning.datasets import Dataset
from iklab.learning.diagnostics import Flag, dead_unit_heatmap, diagnosis_markdown
from iklab.learning.experiment_pages import describe_experiment
from iklab.learning.models import TimeBudget
from iklab.learning.plots import error_histograms, error_vs_time, learning_curves
from iklab.learning.task_errors import ErrorReport


@contextlib.contextmanager
def training_run(
    name: str, experiment: str, *, parent_run_id: str | None = None, tags: dict[str, str] | None = None
) -> Iterator[mlflow.ActiveRun]:
    """Start (or resume, under `mlflow run`) a run named ``name``; FAILED or KILLED if the body raises.

    A child of ``parent_run_id`` lands in its parent's experiment; else in ``experiment``.
    The run `mlflow run` created is resumed once (and renamed: not "youthful-stag-347"); its id
    leaves the environment, or every later start_run (a child's) would resume it instead.
    """
    if parent_run_id:
        experiment_id = MlflowClient().get_run(parent_run_id).info.experiment_id
        run = mlflow.start_run(
            experiment_id=experiment_id,
            parent_run_id=parent_run_id,
            run_name=name,
            tags=tags,
            nested=mlflow.active_run() is not None,
        )
    elif os.environ.get("MLFLOW_RUN_ID"):
        run = mlflow.start_run(run_id=os.environ.pop("MLFLOW_RUN_ID"), tags=tags)
        MlflowClient().update_run(run.info.run_id, name=name)
    else:
        _set_experiment(experiment)
        run = mlflow.start_run(run_name=name, tags=tags)
    mlflow.set_tags({HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())})
    if not parent_run_id:
        describe_experiment(run.info.experiment_id)
        reap_dead_runs(run.info.experiment_id)
    with _ending_run(run):
        yield run


# The process that runs a run: a later command closes the runs whose process is gone.
HOST_TAG, PID_TAG = "iklab.host", "iklab.pid"


def reap_dead_runs(experiment_id: str) -> list[str]:
    """End as KILLED, with the reason, the runs of ``experiment_id`` still RUNNING whose process
    on this host is gone (``kill -9``, a crash: nothing of theirs could end them). A run of
    another host, or whose process still runs, is left alone, and so is a study's (its trials'
    heartbeats end them FAILED, with the lost trial: `iklab.studies.search_file.fail_lost_runs`).
    Returns the ids it ended."""
    client, host = MlflowClient(), socket.gethostname()
    try:
        running = client.search_runs([experiment_id], "attributes.status = 'RUNNING'", max_results=1000)
    except MlflowException:
        return []
    ended = []
    for run in running:
        pid = run.data.tags.get(PID_TAG, "")
        if run.data.tags.get(HOST_TAG) != host or not pid.isdigit() or "study" in run.data.tags:
            continue
        if process_alive(int(pid)):
            continue
        reason = f"its process {pid} on {host} is gone (killed or crashed); closed by process {os.getpid()}"
        client.set_tag(run.info.run_id, "state", "killed")
        client.set_tag(run.info.run_id, "failure_reason", reason)
        client.set_terminated(run.info.run_id, "KILLED")
        ended.append(run.info.run_id)
    if ended:
        print(f"closed {len(ended)} run(s) left RUNNING by a process that is gone: {', '.join(ended)}", flush=True)
    return ended


def _set_experiment(name: str) -> None:
    """``mlflow.set_experiment``, tolerating workers that create the same experiment at once on
    a fresh tracking server (the losers get RESOURCE_ALREADY_EXISTS; a moment later it exists)."""
    for attempt in range(5):
        try:
            mlflow.set_experiment(name)
            return
        except MlflowException:
            if attempt == 4:
                raise
            time.sleep(0.2 + 0.3 * attempt)


@contextlib.contextmanager
def _ending_run(run: mlflow.ActiveRun) -> Iterator[mlflow.ActiveRun]:
    """End ``run`` when the body ends: FAILED or KILLED, with the reason, if it raised.

    Only ``run`` itself: if the body already ended it (log_failure), the active run is now its
    parent, which a bare ``mlflow.end_run()`` would end by mistake.
    """
    try:
        yield run
    except BaseException as exc:
        if _is_active(run):
            interrupted = isinstance(exc, KeyboardInterrupt)  # Ctrl-C, or iklab.learning.console.Terminated
            reason = (str(exc) or "interrupted") if interrupted else f"{type(exc).__name__}: {exc}"
            mlflow.set_tags({"state": "killed" if interrupted else "failed", "failure_reason": reason[:5000]})
            mlflow.end_run("KILLED" if interrupted else "FAILED")
        raise
    if _is_active(run):
        mlflow.end_run()


def _is_active(run: mlflow.ActiveRun) -> bool:
    active = mlflow.active_run()
    return active is not None and active.info.run_id == run.info.run_id


def log_config(config: object, n_parameters: int, train_rows: int) -> None:
    """Params: the flattened resolved config (any config dataclass), model size, training rows used."""
    params = {key: ("" if value is None else value) for key, value in flatten(config).items()}
    params["model.n_parameters"] = n_parameters
    params["data.train_rows_used"] = train_rows
    mlflow.log_params(params)
    mlflow.set_tag("git_commit", git_commit())


def log_setup(
    config: ExperimentConfig, dataset: Dataset, x_train: np.ndarray, train_rows: int, n_parameters: int
) -> None:
    """``x_train``: (a sample of) the encoded training inputs; ``train_rows``: rows per epoch."""
    log_config(config, n_parameters, train_rows)
    mlflow.set_tags(
        {
            "dataset": dataset.path.name,
            "dataset_digest": dataset.digest,
            "robot": dataset.robot.name,
            "region": dataset.region.name,
            "family": config.model.family,
            "experiment_file": config.name,
        }
    )
    sample = mlflow.data.from_numpy(
        x_train[:1000], source=local_dataset_source(dataset.path), name=dataset.path.name, digest=dataset.digest[:32]
    )
    log_dataset_input(sample)


# What the tracking store says when two runs log the same new dataset to one experiment at the
# same moment: MLflow's server looks the dataset up, then inserts it, and the second insert breaks
# its unique key (seen with three search workers on PostgreSQL: "duplicate key value violates
# unique constraint dataset_pk"; SQLite says "UNIQUE constraint failed"). Once the first insert
# has landed, the same call finds the dataset and only links it to the run.
_DATASET_RACE = ("unique constraint", "duplicate key", "duplicate entry")


def log_dataset_input(dataset: object) -> None:
    """``mlflow.log_input`` of the training rows, again (up to twice) when it lost that race."""
    for attempt in range(3):
        try:
            mlflow.log_input(dataset, context="training")
            return
        except MlflowException as exc:
            if attempt == 2 or not any(words in str(exc).lower() for words in _DATASET_RACE):
                raise
            time.sleep(0.2 * (attempt + 1))


def local_dataset_source(path: os.PathLike) -> DatasetSource:
    """MLflow's source for a local folder, built as the type it is; a path string resolves as two
    equal candidates (schemes "" and "file" each register one) and warns on every run."""
    uri = Path(path).resolve().as_uri()
    return get_dataset_source_from_json(json.dumps({"uri": uri}), source_type="local")


class EpochLogger(keras.callbacks.Callback):
    """Logs every epoch's metrics (diagnostics included) to MLflow and prints a progress line."""

    def __init__(self, run_id: str, epochs: int | None, elapsed: float = 0.0) -> None:
        """``epochs``: None when a time budget ends training (no count to show)."""
        super().__init__()
        self.run_id, self.epochs = run_id, epochs
        self.history: list[dict] = []
        self._client = MlflowClient()
        self._before = elapsed  # training seconds of an interrupted run this one resumes

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._train_started = TimeBudget.clock()  # training time as a time budget counts it

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._started = TimeBudget.clock()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        values = {k: float(v) for k, v in (logs or {}).items() if np.isscalar(v) or np.ndim(v) == 0}
        values["epoch_seconds"] = TimeBudget.clock() - self._started
        # wall time since training began (the x axis of error against compute), as a time budget counts it
        values[M.ELAPSED_SECONDS] = self._before + TimeBudget.clock() - self._train_started
        if logs is not None:
            logs[M.ELAPSED_SECONDS] = values[M.ELAPSED_SECONDS]  # for the callbacks after this one (resume)
        self.history.append({"epoch": epoch, **values})
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, epoch) for k, v in values.items() if np.isfinite(v)]
        self._client.log_batch(self.run_id, metrics=metrics)
        dead = max((v for k, v in values.items() if k.startswith(M.DEAD_FRACTION)), default=0.0)
        print(
            f"epoch {epoch + 1:3d}{f'/{self.epochs}' if self.epochs else ''}  loss {values.get('loss', np.nan):.4g}  "
            f"val_loss {values.get('val_loss', np.nan):.4g}  R2 {values.get(M.R2_MEAN, np.nan):+.3f}  "
            f"max dead {dead:.0%}  lr {values.get('learning_rate', np.nan):.2e}  "
            f"{values['epoch_seconds']:.1f} s",
            flush=True,
        )
        raise_if_terminated()  # a signal that arrived during the epoch: stop here


def log_results(
    config: object,
    metrics: dict[str, float],
    history: list[dict],
    flags: list[Flag],
    diagnostics_history: list[dict],
    diagnosis: str,
) -> None:
    """A finished run: ``metrics``, flags, ``config`` (a config dataclass), ``diagnosis``
    (markdown) and the training plots of ``history`` (one dict per epoch)."""
    mlflow.log_metrics(metrics)
    mlflow.set_tag("state", "complete")
    log_flags(flags)
    mlflow.log_text(to_yaml(config), "config.yaml")
    mlflow.log_text(diagnosis, "diagnosis.md")
    mlflow.log_figure(learning_curves(history, title=config.name), "plots/learning_curves.png")
    if any(key.startswith(M.DEAD_FRACTION) for key in (diagnostics_history or [{}])[-1]):  # has hidden layers
        mlflow.log_figure(dead_unit_heatmap(diagnostics_history, title=config.name), "plots/dead_units.png")


def log_ik_results(
    config: ExperimentConfig,
    metrics: dict[str, float],
    history: list[dict],
    flags: list[Flag],
    diagnostics_history: list[dict],
    reports: dict[str, ErrorReport],
) -> None:
    """log_results with the IK diagnosis (test errors against the baselines) and error histograms."""
    log_results(
        config, metrics, history, flags, diagnostics_history, _diagnosis(config, flags, diagnostics_history, metrics)
    )
    mlflow.log_figure(error_histograms(reports, title=f"{config.name}: test split"), "plots/error_histograms.png")
    mlflow.log_figure(error_vs_time(history, title=config.name), "plots/error_vs_time.png")


def log_solution_sets(report: SolutionSetReport, title: str) -> None:
    """The solution-set metrics (``test/solutions/*``) and their plot."""
    mlflow.log_metrics(report.metrics)
    mlflow.log_figure(solution_set_figure(report, title), "plots/solution_sets.png")


def log_branch_figures(figures: dict[str, float], tag: str) -> None:
    """The run's branches/* figures and its ``branches`` tag (branch_coverage.branch_figures)."""
    mlflow.log_metrics(figures)
    mlflow.set_tag(M.BRANCHES_TAG, tag)


def log_failure(reason: str, flags: list[Flag], diagnostics_history: list[dict]) -> None:
    """A diverged run: keep what was logged, say why, end it as FAILED."""
    log_flags(flags)
    mlflow.set_tags({"state": "failed", "failure_reason": reason})
    report = diagnosis_markdown(flags, diagnostics_history, title="Diagnosis (run failed)")
    mlflow.log_text(f"**Run failed:** {reason}\n\n{report}", "diagnosis.md")
    mlflow.end_run("FAILED")


def log_stopped(state: str, reason: str) -> None:
    """A run stopped on purpose before the end (e.g. pruned by the search)."""
    mlflow.set_tags({"state": state, "stop_reason": reason})


def log_flags(flags: list[Flag]) -> None:
    mlflow.set_tag("flags", ",".join(f.name for f in flags) or "none")
    for flag in flags:
        mlflow.set_tag(f"flag.{flag.name}", flag.explanation[:5000])


def _diagnosis(
    config: ExperimentConfig, flags: list[Flag], diagnostics_history: list[dict], metrics: dict[str, float]
) -> str:
    report = diagnosis_markdown(flags, diagnostics_history, title=f"Diagnosis: {config.name}")
    return report + "\n\n## Test-split errors (FK of predicted joints)\n\n" + "\n".join(results_table(metrics)) + "\n"


def results_table(metrics: dict[str, float]) -> list[str]:
    """Markdown rows: the model's test errors against the k-NN and predict-the-mean baselines."""
    rows = [("model", M.TEST), ("k-NN baseline", M.KNN), ("predict-the-mean", M.MEAN)]
    table = ["| predictor | median mm | p95 mm | median deg |", "| --- | ---: | ---: | ---: |"]
    return table + [
        f"| {label} | {metrics[p + M.POSITION_MEDIAN]:.2f} | "
        f"{metrics[p + M.POSITION_P95]:.2f} | {metrics[p + M.ROTATION_MEDIAN]:.2f} |"
        for label, p in rows
    ]


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=os.path.dirname(os.path.abspath(sys.modules["iklab"].__file__)),
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"

"""MLflow side of a training run: the run itself, params, per-epoch metrics, results, model.

Kept apart from `train` so the training loop reads top to bottom. Everything a
person needs to reproduce a run from the UI is logged: the resolved config,
the dataset's digest and the git commit.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import subprocess
import sys
import tempfile
import time

import keras
import mlflow
import numpy as np
import pandas as pd
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

import data_gen
import iklab

from .config import ExperimentConfig, flatten, to_yaml
from .data import INPUT_ENCODINGS, OUTPUT_ENCODINGS, Dataset, Split, encode_inputs
from .diagnostics import dead_unit_heatmap, diagnosis_markdown
from .evaluation import error_histograms
from .models import MODEL_METADATA_KEY
from .plots import learning_curves

_NETWORK_REQUIREMENTS = ("tensorflow", "keras", "numpy", "mlflow")


@contextlib.contextmanager
def training_run(name: str, experiment: str, *, parent_run_id=None, tags=None):
    """Start (or resume, under `mlflow run`) a run named ``name``; FAILED or KILLED if the body raises.

    A child of ``parent_run_id`` lands in its parent's experiment; else in ``experiment``.
    The run `mlflow run` created is resumed once (and renamed: not "youthful-stag-347"); its id
    leaves the environment, or every later start_run (a child's) would resume it instead.
    """
    if parent_run_id:
        experiment_id = MlflowClient().get_run(parent_run_id).info.experiment_id
        run = mlflow.start_run(experiment_id=experiment_id, parent_run_id=parent_run_id, run_name=name,
                               tags=tags, nested=mlflow.active_run() is not None)
    elif os.environ.get("MLFLOW_RUN_ID"):
        run = mlflow.start_run(run_id=os.environ.pop("MLFLOW_RUN_ID"), tags=tags)
        MlflowClient().update_run(run.info.run_id, name=name)
    else:
        mlflow.set_experiment(experiment)
        run = mlflow.start_run(run_name=name, tags=tags)
    with _ending_run(run):
        yield run


@contextlib.contextmanager
def _ending_run(run):
    """End ``run`` when the body ends: FAILED or KILLED, with the reason, if it raised.

    Only ``run`` itself: if the body already ended it (log_failure), the active run is now its
    parent, which a bare ``mlflow.end_run()`` would end by mistake.
    """
    try:
        yield run
    except BaseException as exc:
        if _is_active(run):
            interrupted = isinstance(exc, KeyboardInterrupt)
            mlflow.set_tags({"state": "failed", "failure_reason": "interrupted" if interrupted
                             else f"{type(exc).__name__}: {exc}"[:5000]})
            mlflow.end_run("KILLED" if interrupted else "FAILED")
        raise
    if _is_active(run):
        mlflow.end_run()


def _is_active(run) -> bool:
    active = mlflow.active_run()
    return active is not None and active.info.run_id == run.info.run_id


def log_config(config, n_parameters: int, train_rows: int) -> None:
    """Params: the flattened resolved config (any config dataclass), model size, training rows used."""
    params = {key: ("" if value is None else value) for key, value in flatten(config).items()}
    params["model.n_parameters"] = n_parameters
    params["data.train_rows_used"] = train_rows
    mlflow.log_params(params)
    mlflow.set_tag("git_commit", git_commit())


def log_setup(config: ExperimentConfig, dataset: Dataset, x_train: np.ndarray, n_parameters: int) -> None:
    log_config(config, n_parameters, len(x_train))
    mlflow.set_tags({
        "dataset": dataset.path.name, "dataset_digest": dataset.digest,
        "robot": dataset.robot.name, "region": dataset.region.name, "family": config.model.family,
        "experiment_file": config.name,
    })
    source = mlflow.data.from_numpy(x_train[:1000], source=str(dataset.path.resolve()),
                                    name=dataset.path.name, digest=dataset.digest[:32])
    mlflow.log_input(source, context="training")


class EpochLogger(keras.callbacks.Callback):
    """Logs every epoch's metrics (diagnostics included) to MLflow and prints a progress line."""

    def __init__(self, run_id: str, epochs: int):
        super().__init__()
        self.run_id, self.epochs = run_id, epochs
        self.history: list[dict] = []
        self._client = MlflowClient()

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        values = {k: float(v) for k, v in (logs or {}).items() if np.isscalar(v) or np.ndim(v) == 0}
        values["epoch_seconds"] = time.perf_counter() - self._started
        self.history.append({"epoch": epoch, **values})
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, epoch) for k, v in values.items() if np.isfinite(v)]
        self._client.log_batch(self.run_id, metrics=metrics)
        dead = max((v for k, v in values.items() if k.startswith("dead_fraction/")), default=0.0)
        print(f"epoch {epoch + 1:3d}/{self.epochs}  loss {values.get('loss', np.nan):.4g}  "
              f"val_loss {values.get('val_loss', np.nan):.4g}  R2 {values.get('r2_mean', np.nan):+.3f}  "
              f"max dead {dead:.0%}  lr {values.get('learning_rate', np.nan):.2e}  "
              f"{values['epoch_seconds']:.1f} s", flush=True)


def log_results(config, result, flags, diagnostics_history, diagnosis: str) -> None:
    """A finished run: metrics, flags, config, ``diagnosis`` (markdown) and the training plots."""
    mlflow.log_metrics(result.metrics)
    mlflow.set_tag("state", "complete")
    log_flags(flags)
    mlflow.log_text(to_yaml(config), "config.yaml")
    mlflow.log_text(diagnosis, "diagnosis.md")
    mlflow.log_figure(learning_curves(result.history, title=config.name), "plots/learning_curves.png")
    if any(key.startswith("dead_fraction/") for key in (diagnostics_history or [{}])[-1]):  # has hidden layers
        mlflow.log_figure(dead_unit_heatmap(diagnostics_history, title=config.name), "plots/dead_units.png")


def log_ik_results(config, result, flags, diagnostics_history, reports) -> None:
    """log_results with the IK diagnosis (test errors against the baselines) and error histograms."""
    log_results(config, result, flags, diagnostics_history,
                _diagnosis(config, flags, diagnostics_history, result.metrics))
    mlflow.log_figure(error_histograms(reports, title=f"{config.name}: test split"),
                      "plots/error_histograms.png")


def log_failure(result, flags, diagnostics_history) -> None:
    """A diverged run: keep what was logged, say why, end it as FAILED."""
    log_flags(flags)
    mlflow.set_tags({"state": "failed", "failure_reason": result.reason})
    report = diagnosis_markdown(flags, diagnostics_history, title="Diagnosis (run failed)")
    mlflow.log_text(f"**Run failed:** {result.reason}\n\n{report}", "diagnosis.md")
    mlflow.end_run("FAILED")


def log_stopped(result) -> None:
    """A run stopped on purpose before the end (e.g. pruned by the search)."""
    mlflow.set_tags({"state": result.status, "stop_reason": result.reason})


def log_flags(flags) -> None:
    mlflow.set_tag("flags", ",".join(f.name for f in flags) or "none")
    for flag in flags:
        mlflow.set_tag(f"flag.{flag.name}", flag.explanation[:5000])


def _diagnosis(config, flags, diagnostics_history, metrics) -> str:
    report = diagnosis_markdown(flags, diagnostics_history, title=f"Diagnosis: {config.name}")
    return (report + "\n\n## Test-split errors (FK of predicted joints)\n\n"
            + "\n".join(results_table(metrics)) + "\n")


def results_table(metrics: dict) -> list[str]:
    """Markdown rows: the model's test errors against the k-NN and predict-the-mean baselines."""
    rows = [("model", "test/"), ("k-NN baseline", "baseline/knn/"), ("predict-the-mean", "baseline/mean/")]
    table = ["| predictor | median mm | p95 mm | median deg |", "| --- | ---: | ---: | ---: |"]
    return table + [f"| {label} | {metrics[p + 'position_error_mm_median']:.2f} | "
                     f"{metrics[p + 'position_error_mm_p95']:.2f} | {metrics[p + 'rotation_error_deg_median']:.2f} |"
                     for label, p in rows]


def model_metadata(config: ExperimentConfig, dataset: Dataset) -> dict:
    """What robot code needs to use the model with no dataset or experiment file."""
    return {
        "robot": dataset.robot.to_dict(),
        "region": dataset.region.to_dict(),
        "input_encoding": config.data.input_encoding,
        "input_columns": INPUT_ENCODINGS[config.data.input_encoding],
        "output_encoding": config.data.output_encoding,
        "output_columns": OUTPUT_ENCODINGS[config.data.output_encoding],
        "dataset_digest": dataset.digest,
        "iklab_version": iklab.__version__,
    }


def log_ik_model(model: keras.Model, config: ExperimentConfig, dataset: Dataset, example: Split) -> str:
    """Log the servable pyfunc (pose rows in, joints out) with the Keras network as its artifact.

    Both carry the iklab metadata, signature and input example; requirements are explicit.
    """
    from mlflow.models import infer_signature

    from . import serving
    from .solver import IKSolver

    metadata = {MODEL_METADATA_KEY: model_metadata(config, dataset)}
    features = encode_inputs(example.position, example.quat, config.data.input_encoding)
    pose_rows = pd.DataFrame(np.hstack([example.position, example.quat]), columns=serving.POSE_COLUMNS)
    wrapper = serving.IKPyfuncModel()
    wrapper.solver = IKSolver(model, metadata[MODEL_METADATA_KEY])
    signature = infer_signature(pose_rows, wrapper.predict(None, pose_rows), params=serving.DEFAULT_PARAMS)
    with tempfile.TemporaryDirectory() as tmp:
        network = os.path.join(tmp, serving.NETWORK_ARTIFACT)
        mlflow.tensorflow.save_model(
            model, network, signature=infer_signature(features, np.asarray(model(features, training=False))),
            input_example=features, pip_requirements=pip_requirements(_NETWORK_REQUIREMENTS), metadata=metadata)
        info = mlflow.pyfunc.log_model(
            name="model", python_model=serving.IKPyfuncModel(), artifacts={serving.NETWORK_ARTIFACT: network},
            signature=signature, input_example=pose_rows, pip_requirements=pip_requirements(),
            code_paths=[os.path.dirname(iklab.__file__), os.path.dirname(data_gen.__file__)], metadata=metadata)
    return info.model_uri


def pip_requirements(names=None) -> list[str]:
    """Pinned from this environment (explicit lists skip MLflow's slow inference); default: iklab's own."""
    if names is None:
        return [r for r in importlib.metadata.requires("iklab") if "extra ==" not in r]
    return [f"{name}=={importlib.metadata.version(name)}" for name in names]


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=os.path.dirname(os.path.abspath(sys.modules["iklab"].__file__)))
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"

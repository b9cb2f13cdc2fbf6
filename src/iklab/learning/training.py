"""`train(config) -> TrainResult`: fit one model with diagnostics, evaluate it in task space,
log everything to MLflow. Used by `python -m iklab.train` (its command line is `iklab.train`),
`mlflow run . -e train`, the search and the tests alike.
"""

from __future__ import annotations

import hashlib
import math
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import keras
import numpy as np

import iklab
from iklab.core.encodings import OUTPUT_ENCODINGS, decode_candidates, decode_outputs, encode_inputs, encode_targets
from iklab.core.kinematics import Robot, fk
from iklab.core.mixture import mixture_summary
from iklab.learning import epoch_slots
from iklab.learning import metric_names as M
from iklab.learning import run_logging as logging_
from iklab.learning.branch_coverage import branch_figures, branches_tag, evaluate_solution_sets
from iklab.learning.config import ExperimentConfig, to_yaml
from iklab.learning.datasets import Dataset, Split, ensure_dataset, load_dataset, read_card
from iklab.learning.diagnostics import DiagnosticsCallback, evaluate_flags
from iklab.learning.model_logging import log_ik_model
from iklab.learning.models import (
    TASK_LOSSES,
    TimeBudget,
    build_loss,
    build_model,
    build_optimizer,
    count_parameters,
    n_outputs,
)
from iklab.learning.resume import ResumeState
from iklab.learning.streaming import TrainStream, eval_limits, streaming_reason
from iklab.learning.task_errors import best_candidate_errors, evaluate_with_baselines, task_space_errors
from iklab.learning.task_loss import JointFirst, pose_targets
from iklab.robot.model_metadata import ModelMetadata
from iklab.robot.solver import IKSolver, predict_joints, raw_outputs

# A run with training.time_budget_minutes ends on time; this only bounds its epochs.
BUDGET_MAX_EPOCHS = 100_000
SOLUTION_SET_POSES = 200  # a mixture model's default (evaluation.solution_set_poses)


@dataclass
class TrainResult:
    status: str  # "finished", "failed" (diverged) or "pruned" (stopped by a caller's callback)
    run_id: str | None
    metrics: dict[str, float] = field(default_factory=dict)  # test/*, baseline/*, best_*
    flags: list[str] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)  # one dict per epoch
    reason: str | None = None  # why it failed
    model: keras.Model | None = None
    model_uri: str | None = None
    dataset: Dataset | None = None  # what it was trained and tested on (the champion compares on it)
    train_seconds: float = 0.0


@dataclass(frozen=True)
class Arrays:
    """Encoded model inputs and targets for each split, plus joints for evaluation."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    q_train: np.ndarray
    q_val: np.ndarray
    q_test: np.ndarray
    # Streamed training (data beyond memory): the rows fit() reads; x_train/y_train/q_train are
    # then a sample of them (normalization, diagnostics, the k-NN baseline).
    stream: TrainStream | None = None

    @property
    def n_train(self) -> int:
        """Training rows one epoch passes over."""
        return len(self.stream) if self.stream is not None else len(self.x_train)

    def fit_rows(self, batch_size: int) -> dict:
        """The training rows as ``model.fit`` arguments: tf.data batches (shuffled there) when
        streamed, else the arrays, shuffled by Keras."""
        if self.stream is not None:
            return {"x": self.stream.dataset(batch_size), "shuffle": False}
        return {"x": self.x_train, "y": self.y_train, "batch_size": batch_size, "shuffle": True}


def features(config: ExperimentConfig, robot: Robot, split: Split) -> np.ndarray:
    return encode_inputs(split.position, split.quat, config.data.input_encoding, robot)


def targets(config: ExperimentConfig, robot: Robot, split: Split) -> np.ndarray:
    encoded = encode_targets(split.q, config.data.output_encoding)
    if config.training.loss not in TASK_LOSSES:
        return encoded
    return np.concatenate([encoded, pose_targets(robot, split.q)], axis=1)  # FK once, not per step


def prepare_arrays(config: ExperimentConfig, dataset: Dataset, stream: TrainStream | None = None) -> Arrays:
    train = dataset.train.head(config.data.train_rows)
    test = dataset.test.head(config.evaluation.test_rows)
    robot = dataset.robot
    return Arrays(
        x_train=features(config, robot, train),
        y_train=targets(config, robot, train),
        x_val=features(config, robot, dataset.val),
        y_val=targets(config, robot, dataset.val),
        x_test=features(config, robot, test),
        q_train=train.q,
        q_val=dataset.val.q,
        q_test=test.q,
        stream=stream,
    )


def open_dataset(config: ExperimentConfig) -> tuple[Dataset, TrainStream | None]:
    """The experiment's dataset (generated if missing), in memory or, beyond the memory budget,
    with its training rows streamed (validation and test rows in memory, bounded)."""
    path = ensure_dataset(config.data)
    reason = streaming_reason(config.data, read_card(path))
    test_rows = config.evaluation.test_rows
    if reason is None:
        return load_dataset(path, {"val": config.data.val_rows, "test": test_rows}), None
    dataset = load_dataset(path, eval_limits(config.data, test_rows))
    stream = TrainStream(
        path,
        dataset.card,
        encode=lambda split: (features(config, dataset.robot, split), targets(config, dataset.robot, split)),
        seed=config.seed,
        shuffle_rows=config.data.shuffle_buffer,
        rows=config.data.train_rows,
    )
    print(
        f"streaming {len(stream)} training rows from {path} ({reason}); in memory: "
        f"{len(dataset.val)} validation and {len(dataset.test)} test rows",
        flush=True,
    )
    return dataset, stream


def compile_model(config: ExperimentConfig, arrays: Arrays, robot: Robot) -> keras.Model:
    """Build and compile the model the config describes (seeded)."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(config.seed)
    encoding = config.data.output_encoding
    columns = len(OUTPUT_ENCODINGS[encoding])  # the targets may carry the target pose after them
    model = build_model(
        config.model,
        arrays.x_train,
        n_outputs(encoding, config.model),
        train_targets=arrays.y_train[:, :columns] if encoding == "angles" else None,
        name=config.name,
    )
    steps = math.ceil(arrays.n_train / config.training.batch_size)
    time_driven = bool(config.training.time_budget_minutes)
    model.compile(
        optimizer=build_optimizer(config.optimizer, steps, config.training.epochs, time_driven=time_driven),
        loss=build_loss(config.training, encoding, robot, components=config.model.mixture_components),
    )
    return model


def fingerprint(config: ExperimentConfig) -> str:
    """What identifies a training for resuming: the whole configuration but the run's name."""
    plain = replace(config, mlflow=replace(config.mlflow, run_name=None))
    return hashlib.sha256(to_yaml(plain).encode()).hexdigest()[:16]


def diagnostics_callback(
    config: ExperimentConfig, arrays: Arrays, model: keras.Model, robot: Robot
) -> DiagnosticsCallback:
    probe = slice(0, config.diagnostics.probe_rows)
    batch = slice(0, config.training.batch_size)
    encoding = config.data.output_encoding
    # A task-space loss accepts any joints that reach the pose (another branch of the wrist
    # included), and a mixture's most probable answer may rightly be another branch than the
    # row's: R^2 and the collapse check are then judged on the pose, not on the joints.
    task_space = config.training.loss in TASK_LOSSES or encoding == "mixture"
    return DiagnosticsCallback(
        arrays.x_val[probe],
        arrays.q_val[probe],
        loss_fn=model.loss,
        grad_batch=(arrays.x_train[batch], arrays.y_train[batch]),
        decode=lambda y: decode_outputs(y, encoding),
        angular_targets=True,
        fit_space=(lambda q: pose_targets(robot, q)) if task_space else None,
        fit_decode=nearest_component_decoder(robot, arrays.q_val[probe]) if encoding == "mixture" else None,
    )


def nearest_component_decoder(robot: Robot, q_targets: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Raw mixture outputs for the rows of ``q_targets`` ``(N, 6)`` -> ``(N, 6)`` joints: each row's
    component whose pose (:func:`pose_targets`: position and rotation) is nearest the target's.
    What the diagnostics judge a mixture's fit by (``fit_decode``)."""
    targets = pose_targets(robot, q_targets).astype(np.float64)

    def decode(raw: np.ndarray) -> np.ndarray:
        _, candidates = decode_candidates(raw, "mixture")  # (N, K, 6)
        n, k = candidates.shape[:2]
        poses = pose_targets(robot, candidates.reshape(n * k, -1)).reshape(n, k, -1)
        nearest = np.argmin(((poses - targets[:, None, :]) ** 2).sum(axis=2), axis=1)
        return candidates[np.arange(n), nearest]

    return decode


class TaskSpaceProbe(keras.callbacks.Callback):
    """Median position error (mm) of the diagnostics probe rows, written into ``logs`` each epoch
    as ``metric_names.PROBE_POSITION_MM``.

    Comparable across encodings and losses, unlike val_loss: the search prunes on it. Reads
    ``diagnostics.last_prediction``, which the diagnostics callback (before it in the list) made
    for the same rows in the same epoch.
    """

    def __init__(self, robot: Robot, diagnostics: DiagnosticsCallback) -> None:
        super().__init__()
        self.robot, self.diagnostics = robot, diagnostics
        self.targets = fk(robot, diagnostics.probe_targets)  # the probe's poses: fixed, FK once

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        report = task_space_errors(
            self.robot, self.diagnostics.last_prediction, self.diagnostics.probe_targets, target_poses=self.targets
        )
        if logs is not None:
            logs[M.PROBE_POSITION_MM] = report.summary()[M.POSITION_MEDIAN]


class MixtureProbe(keras.callbacks.Callback):
    """A mixture's per-epoch figures on the diagnostics probe rows, into ``logs``
    (``mixture/*``): effective number of components (exp of the weights' entropy), components
    above 2% weight, and the error of the best and of the heaviest component against the row's
    joints (deg, largest joint). Reads ``diagnostics.last_raw`` (same rows, same epoch)."""

    def __init__(self, diagnostics: DiagnosticsCallback, components: int) -> None:
        super().__init__()
        self.diagnostics, self.components = diagnostics, components

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        summary = mixture_summary(self.diagnostics.last_raw, self.components, 6, self.diagnostics.probe_targets)
        if logs is not None:
            logs.update({M.MIXTURE + name: value for name, value in summary.items()})


class StoppingCallback(keras.callbacks.Callback):
    """A caller's callback that may end training early on purpose (the search's pruner).

    Subclasses call ``request_stop(reason)``; train() then ends the run as "pruned" with that
    reason instead of evaluating it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stop_reason: str | None = None

    def request_stop(self, reason: str) -> None:
        self.stop_reason = reason
        self.model.stop_training = True


def mark_diverged(result: TrainResult) -> bool:
    """True, with status "failed" and the reason set, if the loss became NaN or infinite."""
    if all(math.isfinite(h.get("loss", math.nan)) for h in result.history):
        return False
    result.status, result.reason = "failed", "loss became NaN or infinite; training stopped"
    return True


def fit_callbacks(config: ExperimentConfig) -> dict[str, keras.callbacks.Callback | None]:
    """Keras' own callbacks by slot (:mod:`iklab.learning.epoch_slots`); None where off."""
    training = config.training
    plateau = (
        training.reduce_lr_patience and config.optimizer.schedule == "constant" and not training.time_budget_minutes
    )
    return {
        "terminate_on_nan": keras.callbacks.TerminateOnNaN(),
        "early_stopping": keras.callbacks.EarlyStopping(
            patience=training.early_stopping_patience, restore_best_weights=True
        )
        if training.early_stopping_patience
        else None,
        "reduce_lr": keras.callbacks.ReduceLROnPlateau(
            factor=training.reduce_lr_factor, patience=training.reduce_lr_patience, min_lr=1e-6
        )
        if plateau
        else None,
    }


def train(
    config: ExperimentConfig,
    *,
    parent_run_id: str | None = None,
    run_name: str | None = None,
    tags: dict[str, str] | None = None,
    extra_callbacks: tuple[StoppingCallback, ...] = (),
    log_model: bool | None = None,
    on_run_start: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train, diagnose, evaluate and log one experiment; never raises for a diverged run.

    ``extra_callbacks`` run last each epoch, when ``logs`` holds every metric of the epoch;
    one that requests a stop ends the run as "pruned". ``on_run_start`` gets the MLflow run's
    id as soon as the run exists, before any training (the search links its trial to it).
    """
    dataset, stream = open_dataset(config)
    arrays = prepare_arrays(config, dataset, stream)
    resume = ResumeState(config.training.resume_dir, fingerprint(config)) if config.training.resume_dir else None
    if resume is not None and resume.resuming:
        print(f"resuming from {resume.directory} ({resume.elapsed / 60:.1f} min trained before)", flush=True)
    model = compile_model(config, arrays, dataset.robot)
    elapsed = resume.elapsed if resume is not None else 0.0
    budget = config.training.time_budget_minutes
    timer = TimeBudget(config.optimizer, budget * 60, elapsed) if budget else None
    epochs = BUDGET_MAX_EPOCHS if budget else config.training.epochs
    diagnostics = diagnostics_callback(config, arrays, model, dataset.robot)
    task_probe = TaskSpaceProbe(dataset.robot, diagnostics)
    mixture = config.data.output_encoding == "mixture"
    with logging_.training_run(
        run_name or config.mlflow.run_name or config.name,
        config.mlflow.experiment or f"ik-{dataset.robot.name}-train",
        parent_run_id=parent_run_id,
        tags=tags,
    ) as run:
        if on_run_start is not None:
            on_run_start(run.info.run_id)
        logging_.log_setup(config, dataset, arrays.x_train, arrays.n_train, count_parameters(model))
        epoch_logger = logging_.EpochLogger(run.info.run_id, None if budget else epochs, elapsed)
        backup, save_progress = resume.callbacks() if resume is not None else (None, None)
        joint_first = None
        if config.training.loss in TASK_LOSSES and config.training.joint_first:
            share_spent = timer.progress if timer is not None else None
            joint_first = JointFirst(model.loss, config.training.joint_first, epochs, share_spent)
        # the order, and what each reads and writes: iklab.learning.epoch_slots.SLOTS
        callbacks = epoch_slots.arrange(
            {
                "time_budget": timer,
                "backup": backup,
                "diagnostics": diagnostics,
                "task_probe": task_probe,
                "mixture_probe": MixtureProbe(diagnostics, config.model.mixture_components) if mixture else None,
                "epoch_logger": epoch_logger,
                "save_progress": save_progress,
                "joint_first": joint_first,
                **fit_callbacks(config),
                "extra": list(extra_callbacks),
            }
        )
        started = time.perf_counter()
        model.fit(
            **arrays.fit_rows(config.training.batch_size),
            validation_data=(arrays.x_val, arrays.y_val),
            epochs=epochs,
            callbacks=callbacks,
            verbose=config.training.verbose,
        )
        if resume is not None:
            resume.clear()  # the run ended (finished, diverged or stopped): a rerun starts afresh
        result = TrainResult(
            "finished",
            run.info.run_id,
            history=epoch_logger.history,
            model=model,
            train_seconds=time.perf_counter() - started,
            dataset=dataset,
        )
        if mark_diverged(result):
            flags = evaluate_flags(
                diagnostics.history, ambiguity=dataset.ambiguity, warmup_epochs=config.diagnostics.warmup_epochs
            )
            logging_.log_failure(result.reason, flags, diagnostics.history)
            return result
        stop_reason = next((cb.stop_reason for cb in extra_callbacks if cb.stop_reason), None)
        if stop_reason:  # a caller's callback (the search's pruner) ended the run early on purpose
            result.status, result.reason = "pruned", stop_reason
            logging_.log_stopped(result.status, stop_reason)
            return result
        evaluate_and_log(config, dataset, arrays, model, diagnostics, result)
        if log_model if log_model is not None else config.mlflow.log_model:
            example = dataset.test.head(5)
            result.model_uri = log_ik_model(model, model_metadata(config, dataset), example.position, example.quat)
    return result


def model_metadata(config: ExperimentConfig, dataset: Dataset) -> ModelMetadata:
    """What robot code needs to use the model with no dataset or experiment file."""
    return ModelMetadata(
        dataset.robot,
        dataset.region,
        config.data.input_encoding,
        config.data.output_encoding,
        dataset.digest,
        iklab.__version__,
    )


def evaluate_and_log(
    config: ExperimentConfig,
    dataset: Dataset,
    arrays: Arrays,
    model: keras.Model,
    diagnostics: DiagnosticsCallback,
    result: TrainResult,
) -> None:
    """Test-split errors of the model and the baselines, flags, and their artifacts."""
    raw_test = raw_outputs(model, arrays.x_test)  # once: a mixture's metrics below read it too
    q_pred = decode_outputs(raw_test, config.data.output_encoding)
    reports = evaluate_with_baselines(
        dataset.robot,
        q_pred,
        arrays.q_test,
        arrays.x_train,
        arrays.q_train,
        arrays.x_test,
        knn_k=config.evaluation.knn_k,
        knn_rows=config.evaluation.knn_rows,
        seed=config.seed,
    )
    metrics = reports["model"].summary(M.TEST)
    q_val = predict_joints(model, arrays.x_val, config.data.output_encoding)
    metrics.update(task_space_errors(dataset.robot, q_val, arrays.q_val).summary(M.VAL))
    metrics.update(reports["mean"].summary(M.MEAN))
    metrics.update(reports["knn"].summary(M.KNN))
    if config.data.output_encoding == "mixture":
        metrics.update(mixture_test_metrics(config, dataset, arrays, raw_test))
    metrics.update(
        {
            "epochs_run": float(len(result.history)),
            "train_seconds": result.train_seconds,
            # the process's peak resident memory so far (Linux: ru_maxrss in KiB): a streamed
            # training's stays bounded whatever the dataset's size
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    )
    if result.history:  # empty for a resumed run that had already done every epoch
        val_losses = [h["val_loss"] for h in result.history]
        best = int(np.nanargmin(val_losses))
        metrics.update(
            {
                "best_val_loss": float(val_losses[best]),
                "best_epoch": float(result.history[best]["epoch"] + 1),
                # the runs table shows last values; best_* make runs comparable at a glance
                M.BEST_PROBE_POSITION_MM: min(h[M.PROBE_POSITION_MM] for h in result.history),
            }
        )
    flags = evaluate_flags(
        diagnostics.history,
        ambiguity=dataset.ambiguity,
        model_error=metrics[M.TEST_POSITION_MEDIAN],
        knn_error=metrics[M.KNN_POSITION_MEDIAN],
        warmup_epochs=config.diagnostics.warmup_epochs,
        effective_components=metrics.get(M.TEST_EFFECTIVE_COMPONENTS),
    )
    result.metrics, result.flags = metrics, [f.name for f in flags]
    logging_.log_ik_results(config, metrics, result.history, flags, diagnostics.history, reports)
    poses = solution_set_poses(config)
    if poses:
        solver = IKSolver(model, model_metadata(config, dataset))
        targets = fk(dataset.robot, arrays.q_test[:poses])
        report = evaluate_solution_sets(
            solver, targets, reference_starts=config.evaluation.reference_starts, seed=config.seed
        )
        result.metrics.update(report.metrics)
        logging_.log_solution_sets(report, title=f"{config.name}: solution sets of {len(targets)} test poses")
    mixture = config.data.output_encoding == "mixture"
    figures = branch_figures(result.metrics, mixture)
    result.metrics.update(figures)
    logging_.log_branch_figures(figures, branches_tag(mixture, config.model.mixture_components, config.data.region))


def solution_set_poses(config: ExperimentConfig) -> int:
    """Test poses whose solution sets are evaluated (config, or 200 for a mixture model)."""
    chosen = config.evaluation.solution_set_poses
    if chosen is None:
        return SOLUTION_SET_POSES if config.data.output_encoding == "mixture" else 0
    return chosen


def mixture_test_metrics(config: ExperimentConfig, dataset: Dataset, arrays: Arrays, raw: np.ndarray) -> dict:
    """A mixture on the test split, from the network's raw outputs on the test rows: its
    components' use (``test/mixture/*``) and the raw error of its best component per pose
    (``test/best_component/*``, before any refinement)."""
    summary = mixture_summary(raw, config.model.mixture_components, 6, arrays.q_test)
    _, candidates = decode_candidates(raw, "mixture")
    best = best_candidate_errors(dataset.robot, candidates, arrays.q_test)
    return {**{M.TEST + M.MIXTURE + k: v for k, v in summary.items()}, **best.summary(M.TEST_BEST_COMPONENT)}

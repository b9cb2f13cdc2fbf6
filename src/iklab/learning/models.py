"""Keras model, optimizer and loss builders from config (functional API).

Layer names are a convention the diagnostics rely on: trainable layers
`dense_<i>` / `conv_<i>`, the activation ending each hidden block `act_<i>`,
batch norm `bn_<i>`, the output layer `output`. A `Normalization` layer
adapted on the training inputs comes first, so a saved model takes raw pose
features; for angle outputs an inverted `Normalization` (adapted on the
training joints) comes last, so the network itself works in standard units.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import keras
import numpy as np

from iklab.core.encodings import OUTPUT_ENCODINGS
from iklab.core.kinematics import Robot
from iklab.core.mixture import mixture_output_size
from iklab.learning.config import ACTIVATIONS, ModelConfig, OptimizerConfig, TrainingConfig


def build_model(
    cfg: ModelConfig,
    train_inputs: np.ndarray,
    n_outputs: int,
    *,
    train_targets: np.ndarray | None = None,
    name: str = "ik",
) -> keras.Model:
    """A model from ``cfg``; ``train_inputs`` adapt the input normalization.

    ``train_targets`` (angle outputs) adapt an inverted normalization on the
    output so the last Dense layer predicts standardized targets.
    """
    _check(cfg)
    inputs = keras.Input(shape=(train_inputs.shape[1],), name="pose")
    normalize = keras.layers.Normalization(name="normalize_inputs")
    normalize.adapt(train_inputs)
    x = normalize(inputs)
    counter = _Counter()
    if cfg.family == "conv1d":
        x = _conv_front(x, cfg, counter)
    widths = cfg.widths or (cfg.width,) * cfg.depth
    for width in widths:
        x = _dense_block(x, width, cfg, counter)
    outputs = keras.layers.Dense(n_outputs, name="output", kernel_initializer="glorot_uniform")(x)
    if train_targets is not None:
        denormalize = keras.layers.Normalization(invert=True, name="denormalize_outputs")
        denormalize.adapt(train_targets)
        outputs = denormalize(outputs)
    return keras.Model(inputs, outputs, name=name)


class _Counter:
    """Numbers the hidden blocks so every layer name is unique and ordered."""

    def __init__(self) -> None:
        self.value = 0

    def next(self) -> int:
        self.value += 1
        return self.value


def _check(cfg: ModelConfig) -> None:
    if cfg.family not in ("mlp", "conv1d"):
        raise ValueError(f"model.family must be mlp or conv1d, got {cfg.family!r}")
    if cfg.activation not in ACTIVATIONS:
        raise ValueError(f"model.activation must be one of {', '.join(ACTIVATIONS)}, got {cfg.activation!r}")
    if cfg.batch_norm not in ("off", "before", "after"):
        raise ValueError(f"model.batch_norm must be off, before or after, got {cfg.batch_norm!r}")
    widths = cfg.widths or (cfg.width,) * cfg.depth
    if not widths or min(widths) < 1:
        raise ValueError(f"model needs at least one hidden layer of width >= 1, got {list(widths)}")
    if not 0.0 <= cfg.dropout < 1.0:
        raise ValueError(f"model.dropout must be in [0, 1), got {cfg.dropout}")


def _activate(x: keras.KerasTensor, cfg: ModelConfig, index: int) -> keras.KerasTensor:
    """Activation with optional batch norm before or after it."""
    if cfg.batch_norm == "before":
        x = keras.layers.BatchNormalization(name=f"bn_{index}")(x)
    x = keras.layers.Activation(cfg.activation, name=f"act_{index}")(x)
    if cfg.batch_norm == "after":
        x = keras.layers.BatchNormalization(name=f"bn_{index}")(x)
    return x


def _dense_block(x: keras.KerasTensor, width: int, cfg: ModelConfig, counter: _Counter) -> keras.KerasTensor:
    index = counter.next()
    y = keras.layers.Dense(
        width, name=f"dense_{index}", kernel_initializer=cfg.kernel_initializer, use_bias=cfg.batch_norm != "before"
    )(x)
    y = _activate(y, cfg, index)
    if cfg.dropout:
        y = keras.layers.Dropout(cfg.dropout, name=f"dropout_{index}")(y)
    if cfg.residual and x.shape[-1] == width:
        y = keras.layers.Add(name=f"residual_{index}")([x, y])
    return y


def _conv_front(x: keras.KerasTensor, cfg: ModelConfig, counter: _Counter) -> keras.KerasTensor:
    """Treat the feature vector as a length-F sequence of one channel (question 000's fix)."""
    x = keras.layers.Reshape((x.shape[-1], 1), name="as_sequence")(x)
    for _ in range(cfg.conv_layers):
        index = counter.next()
        x = keras.layers.Conv1D(
            cfg.conv_filters,
            cfg.conv_kernel_size,
            padding="same",
            name=f"conv_{index}",
            kernel_initializer=cfg.kernel_initializer,
        )(x)
        x = _activate(x, cfg, index)
    return keras.layers.Flatten(name="flatten")(x)


# Schedules that can follow the share of a time budget spent instead of the steps taken.
TIME_SCHEDULES = ("constant", "cosine", "warmup_cosine", "one_cycle")
# A time-driven schedule is the step schedule over this many units of progress (0 to 1).
PROGRESS_UNITS = 1_000_000


def build_optimizer(
    cfg: OptimizerConfig, steps_per_epoch: int, epochs: int, *, time_driven: bool = False
) -> keras.optimizers.Optimizer:
    """The optimizer with its learning-rate schedule over ``steps_per_epoch * epochs`` steps;
    ``time_driven``: a plain rate variable that ``TimeBudget`` sets from the time spent."""
    schedule = cfg.learning_rate if time_driven else _schedule(cfg, steps_per_epoch, epochs)
    clip = {"clipnorm": cfg.clipnorm} if cfg.clipnorm else {}
    if cfg.name == "adam":
        return keras.optimizers.Adam(schedule, **clip)
    if cfg.name == "adamw":
        return keras.optimizers.AdamW(schedule, weight_decay=cfg.weight_decay, **clip)
    if cfg.name == "sgd":
        return keras.optimizers.SGD(schedule, momentum=cfg.momentum, **clip)
    if cfg.name == "rmsprop":
        return keras.optimizers.RMSprop(schedule, momentum=cfg.momentum, **clip)
    raise ValueError(f"optimizer.name must be adam, adamw, sgd or rmsprop, got {cfg.name!r}")


def _schedule(
    cfg: OptimizerConfig, steps_per_epoch: int, epochs: int
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    if cfg.learning_rate <= 0:
        raise ValueError(f"optimizer.learning_rate must be > 0, got {cfg.learning_rate}")
    schedules = keras.optimizers.schedules
    if cfg.schedule == "constant":
        return cfg.learning_rate
    total = max(1, steps_per_epoch * epochs)
    if cfg.schedule == "cosine":
        return schedules.CosineDecay(cfg.learning_rate, decay_steps=total)
    if cfg.schedule == "warmup_cosine":  # linear from 0 to the rate, then cosine to 0
        warmup = int(cfg.warmup_fraction * total)
        return schedules.CosineDecay(
            0.0, decay_steps=max(1, total - warmup), warmup_target=cfg.learning_rate, warmup_steps=warmup
        )
    if cfg.schedule == "one_cycle":
        return OneCycle(cfg.learning_rate, total)
    if cfg.schedule == "exponential":
        return schedules.ExponentialDecay(cfg.learning_rate, steps_per_epoch, cfg.decay_rate)
    if cfg.schedule == "inverse_time":
        # Keras 2's Adam(decay=d): lr_t = lr / (1 + d * t), t counted in steps
        return schedules.InverseTimeDecay(cfg.learning_rate, decay_steps=1, decay_rate=cfg.decay)
    raise ValueError(
        "optimizer.schedule must be constant, cosine, warmup_cosine, one_cycle, exponential or inverse_time, "
        f"got {cfg.schedule!r}"
    )


class TimeBudget(keras.callbacks.Callback):
    """Trains for ``seconds`` of wall time: the learning rate follows the schedule of ``cfg``
    over the share of the budget spent (``elapsed`` seconds were spent before this run: a
    resumed one), and training stops at the first batch past the budget (that epoch's
    validation and callbacks still run). Every run of an ablation gets the same time however
    fast its steps are, and its schedule still ends where it should."""

    UPDATE_SECONDS = 0.25  # the rate is recomputed at most this often (an eager op costs ~0.1 ms)
    # Where training seconds come from (the budget's and the epoch logger's elapsed time). Tests
    # swap in a clock that advances per reading, so a budget buys the same steps however loaded
    # the machine is.
    clock = staticmethod(time.perf_counter)

    def __init__(self, cfg: OptimizerConfig, seconds: float, elapsed: float = 0.0) -> None:
        super().__init__()
        if cfg.schedule not in TIME_SCHEDULES:
            raise ValueError(
                f"training.time_budget_minutes needs optimizer.schedule {', '.join(TIME_SCHEDULES)}, "
                f"got {cfg.schedule!r}"
            )
        self.schedule = _schedule(cfg, PROGRESS_UNITS, 1)
        self.seconds, self.elapsed = seconds, elapsed
        self._started = self._updated = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._started = self.clock() - self.elapsed
        self._updated = -math.inf

    def progress(self) -> float:
        return (self.clock() - self._started) / self.seconds

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        now = self.clock()
        if now - self._updated < self.UPDATE_SECONDS:
            return
        self._updated = now
        progress = min(1.0, self.progress())
        rate = self.schedule if isinstance(self.schedule, float) else float(self.schedule(progress * PROGRESS_UNITS))
        self.model.optimizer.learning_rate.assign(rate)
        if progress >= 1.0:
            self.model.stop_training = True


@keras.saving.register_keras_serializable(package="iklab")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """Smith's one-cycle policy (as fastai and PyTorch's OneCycleLR): cosine from rate/25 up to
    the rate over the first 30% of the steps, then cosine down to rate/1e4."""

    def __init__(self, peak: float, total_steps: int, rise: float = 0.3, start_div: float = 25.0) -> None:
        self.peak, self.total_steps, self.rise, self.start_div = float(peak), int(total_steps), rise, start_div

    def __call__(self, step: keras.KerasTensor) -> keras.KerasTensor:
        ops = keras.ops
        step = ops.cast(step, "float32")
        up_steps = max(1.0, self.rise * self.total_steps)
        down_steps = max(1.0, self.total_steps - up_steps)
        low, end = self.peak / self.start_div, self.peak / 1e4
        up = ops.clip(step / up_steps, 0.0, 1.0)
        down = ops.clip((step - up_steps) / down_steps, 0.0, 1.0)
        rising = low + (self.peak - low) * 0.5 * (1.0 - ops.cos(math.pi * up))
        falling = end + (self.peak - end) * 0.5 * (1.0 + ops.cos(math.pi * down))
        return ops.where(step < up_steps, rising, falling)

    def get_config(self) -> dict:
        return {"peak": self.peak, "total_steps": self.total_steps, "rise": self.rise, "start_div": self.start_div}


def wrapped_angle_loss(y_true: keras.KerasTensor, y_pred: keras.KerasTensor) -> keras.KerasTensor:
    """2 (1 - cos(error)) per joint: equals error^2 near 0, and is 2*pi periodic."""
    return keras.ops.mean(2.0 * (1.0 - keras.ops.cos(y_pred - y_true)), axis=-1)


# Losses measured in task space (iklab.learning.task_loss): their targets carry the target pose too.
TASK_LOSSES = ("task", "mixed")


def n_outputs(output_encoding: str, cfg: ModelConfig) -> int:
    """The width of the network's output layer."""
    columns = len(OUTPUT_ENCODINGS[output_encoding])
    return mixture_output_size(cfg.mixture_components, columns) if output_encoding == "mixture" else columns


def build_loss(
    cfg: TrainingConfig, output_encoding: str, robot: Robot | None = None, *, components: int = 1
) -> Callable | keras.losses.Loss:
    """The training loss; ``robot`` is needed by the task-space losses (``TASK_LOSSES``),
    ``components`` by the mixture's likelihood."""
    kind = cfg.loss
    if output_encoding == "mixture":
        if kind not in ("auto", "mixture_nll"):
            raise ValueError(
                f"data.output_encoding mixture trains with training.loss auto (its likelihood), got {kind!r}"
            )
        from iklab.learning.mixture_loss import MixtureNLL

        return MixtureNLL(components, 6)
    if kind in TASK_LOSSES:
        if robot is None:
            raise ValueError(f"training.loss {kind!r} needs the robot")
        from iklab.learning.task_loss import TaskSpaceLoss

        joint = {"angles": wrapped_angle_loss, "sincos": keras.losses.mean_squared_error}[output_encoding]
        weight = cfg.joint_weight if kind == "mixed" else 0.0
        return TaskSpaceLoss(robot, output_encoding, joint_loss=joint, joint_weight=weight, length=cfg.task_length_m)
    if kind == "auto":
        kind = "wrapped" if output_encoding == "angles" else "mse"
    if kind == "wrapped":
        if output_encoding != "angles":
            raise ValueError("training.loss 'wrapped' needs data.output_encoding: angles")
        return wrapped_angle_loss
    if kind in ("mse", "mae"):
        return {"mse": keras.losses.MeanSquaredError(), "mae": keras.losses.MeanAbsoluteError()}[kind]
    if kind == "mixture_nll":
        raise ValueError("training.loss 'mixture_nll' needs data.output_encoding: mixture")
    raise ValueError(f"training.loss must be auto, mse, mae, wrapped, task, mixed or mixture_nll, got {cfg.loss!r}")


def count_parameters(model: keras.Model) -> int:
    return int(sum(math.prod(w.shape) for w in model.trainable_weights))

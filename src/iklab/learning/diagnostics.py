"""Training diagnostics for Keras regression models: why does my network not learn?

`DiagnosticsCallback` measures per epoch what explains the classic failures (dead units, gradient
norms, weight updates, learning rate, explained variance); `evaluate_flags` turns that into named
findings in plain words; `diagnosis_markdown` and `dead_unit_heatmap` present them. Nothing here
is specific to IK: `decode` maps raw outputs to the space where R^2 means something. Layer names
follow `iklab.learning.models`: hidden blocks end in an activation layer `act_<i>`; trainable layers have a kernel.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf
from matplotlib.figure import Figure

from iklab.core.kinematics import wrap_angle
from iklab.core.mixture import COLLAPSED_EFFECTIVE_COMPONENTS
from iklab.learning.metric_names import DEAD_FRACTION, R2_MEAN
from iklab.learning.task_errors import circular_mean

# 99%, not 100%: one surviving unit in 256 should not hide a layer that passes on almost nothing.
DEAD_LAYER_FRACTION = 0.99
# tanh beyond 0.99 (|x| > 2.6) and sigmoid beyond 0.01/0.99 (|x| > 4.6) keep 2% and 4% of their
# peak slope: such units learn 25-50x slower than near zero.
TANH_SATURATION = 0.99
SIGMOID_SATURATION = 0.01
# Predicting the mean gives R^2 = 0; 0.05 leaves room for noise on a ~4k-row probe.
COLLAPSE_R2 = 0.05
# Predictions spread under a tenth of the targets: (nearly) one output value per column.
COLLAPSE_STD_RATIO = 0.1
# Below 1% of its start the rate moves the weights too little to matter (Keras 2 `decay=0.1`
# is per step: 1/101 after 1000 steps), flagged once it has stayed there for at least half the
# epochs run: annealing at the end (cosine is under 1% for its last 6%) or a cut after a
# plateau is a normal finish, not the cause. The weight change per epoch is no signal here:
# under that 1/t decay it stayed 5-30% per epoch on question 002's setup.
LR_VANISHED_FRACTION = 0.01
# A relative kernel change under 1e-6 is a few float32 ulps (eps 1.2e-7): the weights are frozen.
FROZEN_UPDATE_RATIO = 1e-6
# "The loss is still high": less than 90% of the target variance explained.
LEARNED_R2 = 0.9
# More than 5% of inputs with a second valid target pull an MSE fit towards averages.
AMBIGUITY_LIMIT = 0.05

# Aliases map onto the kind whose inactive regime they share.
_KINDS = {
    "relu": "relu",
    "relu6": "relu",
    "leaky_relu": "leaky_relu",
    "elu": "elu",
    "selu": "elu",
    "gelu": "gelu",
    "silu": "gelu",
    "tanh": "tanh",
    "sigmoid": "sigmoid",
    "hard_sigmoid": "sigmoid",
    "linear": "linear",
}


def hidden_activation_layers(model: keras.Model) -> dict[str, str]:
    """``{"act_1": "relu", ...}`` in block order, for every layer named ``act_<i>``."""
    layers = sorted(
        (layer for layer in model.layers if re.fullmatch(r"act_\d+", layer.name)), key=lambda layer: int(layer.name[4:])
    )
    return {layer.name: _activation_kind(layer) for layer in layers}


def _activation_kind(layer: keras.layers.Layer) -> str:
    if isinstance(layer, (keras.layers.LeakyReLU, keras.layers.PReLU)):
        return "leaky_relu"
    name = layer.get_config().get("activation") if isinstance(layer, keras.layers.Activation) else None
    if name not in _KINDS:
        raise ValueError(
            f"layer {layer.name!r} has activation {name or type(layer).__name__!r}; "
            f"diagnostics know {', '.join(sorted(_KINDS))}: use one of them"
        )
    return _KINDS[name]


def _inactive(kind: str, a: tf.Tensor) -> tf.Tensor:
    """Where a unit gets (almost) no gradient: the flat negative side, or saturation."""
    if kind == "tanh":
        return keras.ops.abs(a) > TANH_SATURATION
    if kind == "sigmoid":
        return keras.ops.logical_or(a < SIGMOID_SATURATION, a > 1.0 - SIGMOID_SATURATION)
    if kind == "linear":
        return keras.ops.zeros_like(a, dtype="bool")
    return a <= 0.0  # exactly 0 for relu; the negative regime for leaky_relu, elu, gelu


def _activation_stats(kind: str, a: tf.Tensor) -> tf.Tensor:
    """[dead, zero, mean, std] of one layer; reduced in the graph so only 4 numbers leave it."""
    # Conv outputs (N, ..., channels): a filter is one unit across all positions.
    a = keras.ops.cast(keras.ops.reshape(a, (-1, a.shape[-1])), "float32")
    inactive = keras.ops.cast(_inactive(kind, a), "float32")
    return keras.ops.stack(
        [keras.ops.mean(keras.ops.min(inactive, axis=0)), keras.ops.mean(inactive), keras.ops.mean(a), keras.ops.std(a)]
    )


def _deviations(values: np.ndarray, angular: bool) -> np.ndarray:
    """Deviations from the column mean; for angles from the circular mean, wrapped."""
    if not angular:
        return values - values.mean(axis=0)
    return wrap_angle(values - circular_mean(values))


def fit_metrics(pred: np.ndarray, targets: np.ndarray, angular: bool = False) -> dict[str, float]:
    """Per target column R^2 (``r2/j<i>``) and prediction-to-target spread (``pred_std_ratio/j<i>``),
    their mean R^2 (``r2_mean``) and smallest ratio; ``angular``: wrapped residuals, circular means."""
    residual = wrap_angle(pred - targets) if angular else pred - targets
    target_dev = _deviations(targets, angular)
    with np.errstate(divide="ignore", invalid="ignore"):  # a constant target column gives NaN
        r2 = 1.0 - (residual**2).sum(axis=0) / (target_dev**2).sum(axis=0)
        std_ratio = _deviations(pred, angular).std(axis=0) / target_dev.std(axis=0)
    metrics = {f"pred_std_ratio/j{i}": float(v) for i, v in enumerate(std_ratio)}
    metrics.update({f"r2/j{i}": float(v) for i, v in enumerate(r2)})
    finite = np.isfinite(r2).any() and np.isfinite(std_ratio).any()
    metrics[R2_MEAN] = float(np.nanmean(r2)) if finite else float("nan")
    metrics["pred_std_ratio_min"] = float(np.nanmin(std_ratio)) if finite else float("nan")
    return metrics


def _as_float_tensor(values: object) -> tf.Tensor:
    # fit() casts float arrays to floatx; do the same so float64 labels meet float32 outputs
    if isinstance(values, np.ndarray) and values.dtype.kind == "f":
        values = values.astype(keras.backend.floatx())
    return tf.convert_to_tensor(values)


def _compiled_per_model(function: Callable) -> Callable:
    """``tf.function(function)`` for a closure over one model, traced once for that model.

    Eager costs ~2x on a 3x256 MLP, which matters against a <5% overhead budget; the trace costs
    ~0.3 s once. TF's frequent-retracing warning counts traces per code object, so the same
    closure built for each new model (a search's pruned trials, a case's variants) looks like
    one function retracing; a new model needs its own graph, so TF's flag for functions built per
    object (it sets it on restored SavedModel functions) turns that warning off for this one.
    """
    compiled = tf.function(function)
    compiled._omit_frequent_tracing_warning = True
    return compiled


class DiagnosticsCallback(keras.callbacks.Callback):
    """Per-epoch diagnostics on a fixed probe batch; put it first among the callbacks.

    probe_x: model inputs (~4k rows). probe_targets: (N, k) targets where R^2 means something;
    ``decode`` maps raw model outputs there (identity if None). angular_targets: residuals are
    wrapped to [-pi, pi). ``fit_space`` (optional) maps decoded predictions and targets alike
    into the space where R^2 is judged instead (e.g. the pose, for a loss that accepts any joints
    reaching it); its values are not angular. ``fit_decode`` (optional) replaces ``decode`` for
    R^2 only: a mixture's most probable answer is judged by ``decode``'s error figures, but
    whether it has learned anything by the component nearest each target (early in training the
    heaviest component of some rows sits between branches, and squared errors make R^2 of the
    most probable answer look collapsed on a mixture that is learning). loss_fn: the training
    loss (callable or Keras name) for the gradient norms on grad_batch = (x, y), one training
    batch. Each epoch appends a dict to ``history`` (with its 1-based ``epoch``) and writes the
    same metrics into ``logs`` for the callbacks after this one; ``last_prediction`` keeps the
    epoch's decoded probe prediction for them too.
    """

    def __init__(
        self,
        probe_x: object,
        probe_targets: np.ndarray,
        *,
        loss_fn: str | Callable,
        grad_batch: tuple,
        decode: Callable | None = None,
        angular_targets: bool = False,
        fit_space: Callable[[np.ndarray], np.ndarray] | None = None,
        fit_decode: Callable | None = None,
    ) -> None:
        super().__init__()
        if len(grad_batch) != 2:
            raise ValueError("grad_batch must be one training batch as a pair (x, y)")
        targets = np.asarray(probe_targets, dtype=np.float64)
        self.probe_x, self.probe_targets = probe_x, targets.reshape(len(targets), -1)
        self.loss_fn = keras.losses.get(loss_fn) if isinstance(loss_fn, str) else loss_fn
        self.grad_batch, self.decode = tuple(grad_batch), decode or (lambda raw: raw)
        self.angular_targets = angular_targets and fit_space is None
        self.fit_space, self.fit_decode = fit_space, fit_decode
        self._fit_targets = fit_space(self.probe_targets) if fit_space else self.probe_targets
        self.history: list[dict[str, float]] = []
        self.last_prediction: np.ndarray | None = None
        self.last_raw: np.ndarray | None = None  # the epoch's raw probe outputs (one output models)

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._activations = hidden_activation_layers(self.model)
        # Frozen layers cannot explain a failure to learn, so only trainable kernels are watched.
        self._trainable = [
            layer for layer in self.model.layers if getattr(layer, "kernel", None) is not None and layer.trainable
        ]
        self._kernels = self._snapshot()
        # A per-step schedule can shrink the rate long before the first epoch ends: compare with now.
        self._initial_learning_rate = float(self.model.optimizer.learning_rate)
        self._measure = self._build_measure()
        # Tensors once, so the compiled function is traced once and numpy is not re-converted.
        self._inputs = keras.tree.map_structure(_as_float_tensor, (self.probe_x, *self.grad_batch))

    def _build_measure(self) -> Callable:
        """The model's one compiled call per epoch: the probe's activation statistics and outputs
        (one forward pass), then the gradient norms of the kernels on grad_batch."""
        kinds = list(self._activations.values())
        outputs = [self.model.get_layer(name).output for name in self._activations] + list(self.model.outputs)
        probe_model = keras.Model(self.model.input, outputs)
        model, loss_fn = self.model, self.loss_fn
        kernels = [layer.kernel for layer in self._trainable]

        def measure(probe_x: tf.Tensor, x: tf.Tensor, y: tf.Tensor) -> tuple[list, list, list]:
            values = keras.tree.flatten(probe_model(probe_x, training=False))
            # values: every activation, then the model's outputs
            stats = [_activation_stats(kind, a) for kind, a in zip(kinds, values, strict=False)]
            with tf.GradientTape() as tape:  # training=True: dropout and batch norm as in a train step
                loss = keras.ops.mean(loss_fn(y, model(x, training=True)))
            norms = [tf.norm(g) if g is not None else tf.constant(0.0) for g in tape.gradient(loss, kernels)]
            return stats, values[len(kinds) :], norms

        return _compiled_per_model(measure)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        started = time.perf_counter()
        stats, raw, norms = self._measure(*self._inputs)
        metrics = self._probe_metrics(stats, raw)
        metrics.update({f"grad_norm/{layer.name}": float(n) for layer, n in zip(self._trainable, norms, strict=True)})
        metrics.update(self._update_ratios())
        metrics["learning_rate"] = float(self.model.optimizer.learning_rate)
        metrics["learning_rate_fraction"] = (
            metrics["learning_rate"] / self._initial_learning_rate if self._initial_learning_rate else float("nan")
        )
        metrics["diagnostics_seconds"] = time.perf_counter() - started
        self.history.append({"epoch": float(epoch + 1), **metrics})
        if logs is not None:
            logs.update(metrics)

    def _probe_metrics(self, stats: list, raw: list) -> dict[str, float]:
        metrics = {}
        for name, values in zip(self._activations, stats, strict=True):
            dead, zero, mean, std = (float(v) for v in values.numpy())
            metrics.update(
                {
                    f"{DEAD_FRACTION}{name}": dead,
                    f"zero_fraction/{name}": zero,
                    f"activation_mean/{name}": mean,
                    f"activation_std/{name}": std,
                }
            )
        raw = [r.numpy() for r in raw]
        outputs = raw[0] if len(raw) == 1 else raw
        self.last_raw = raw[0] if len(raw) == 1 else None
        pred = np.asarray(self.decode(outputs), dtype=np.float64)
        self.last_prediction = pred.reshape(self.probe_targets.shape)
        judged = self.last_prediction
        if self.fit_decode is not None:
            judged = np.asarray(self.fit_decode(outputs), dtype=np.float64).reshape(self.probe_targets.shape)
        fitted = self.fit_space(judged) if self.fit_space else judged
        return {**metrics, **fit_metrics(fitted, self._fit_targets, self.angular_targets)}

    def _update_ratios(self) -> dict[str, float]:
        current, ratios = self._snapshot(), {}
        for name, kernel in current.items():
            before = np.linalg.norm(self._kernels[name])
            change = np.linalg.norm(kernel - self._kernels[name])
            ratios[f"update_ratio/{name}"] = float(change / before) if before else float(change > 0)
        self._kernels = current
        return ratios

    def _snapshot(self) -> dict[str, np.ndarray]:
        return {layer.name: layer.kernel.numpy() for layer in self._trainable}


@dataclass(frozen=True)
class Flag:
    """A finding; ``epoch`` is 1-based as Keras prints it, 0 for a property of the data."""

    name: str
    epoch: int
    explanation: str
    evidence: dict[str, float]


def evaluate_flags(
    history: list[dict],
    *,
    ambiguity: float | None = None,
    model_error: float | None = None,
    knn_error: float | None = None,
    warmup_epochs: int = 2,
    effective_components: float | None = None,
) -> list[Flag]:
    """Named findings from a diagnostics history and optional run-level numbers.

    ``effective_components``: a mixture model's mean effective number of components (None for a
    model with one answer). A mixture is the remedy for ambiguous data, so ``ambiguous_data``
    does not fire for one; ``collapsed_mixture`` does when it uses about one component there.

    Flags describe the run as it ended: the condition holds at the last epoch, and the flag's
    epoch is where it began to hold (not before warmup for collapse: every network starts near
    the mean). ``dead_layer`` also fires for any epoch after warmup: dead ReLUs rarely revive.
    """
    flags = [
        flag
        for check in (_dead_layer, _collapsed_to_mean, _lr_vanished)
        if history and (flag := check(history, warmup_epochs)) is not None
    ]
    if model_error is not None and knn_error is not None and model_error > knn_error:
        flags.append(
            Flag(
                "worse_than_knn",
                _epoch(history, -1) if history else 0,
                (
                    f"The model's error ({model_error:.4g}) is larger than that of a k-nearest-neighbour lookup in "
                    f"the training set ({knn_error:.4g}): a memorizing baseline beats the network, so it under-fits. "
                    "Train longer, make it wider or deeper, lower regularization, check input and target scaling."
                ),
                {"model_error": float(model_error), "knn_error": float(knn_error)},
            )
        )
    ambiguous = ambiguity is not None and ambiguity > AMBIGUITY_LIMIT
    if ambiguous and effective_components is not None and effective_components < COLLAPSED_EFFECTIVE_COMPONENTS:
        flags.append(
            Flag(
                "collapsed_mixture",
                _epoch(history, -1) if history else 0,
                (
                    f"The mixture uses {effective_components:.2f} components per pose on average while {ambiguity:.0%} "
                    "of the inputs have several solutions: it has fallen back to one answer per pose, which "
                    "averages branches like a plain regressor. Train longer, or lower the learning rate early "
                    "(a component that wins everything at the start starves the others)."
                ),
                {"effective_components": float(effective_components), "ambiguity": float(ambiguity)},
            )
        )
    if ambiguous and effective_components is None:
        flags.append(
            Flag(
                "ambiguous_data",
                0,
                (
                    f"{ambiguity:.0%} of the inputs have a second valid target (another solution in the region). "
                    "There the MSE-optimal prediction is the average of the solutions, which is no solution. "
                    "Restrict the region to one solution branch, give the branch as an input, or use a model "
                    "that returns several answers (mixture density network, normalizing flow)."
                ),
                {"ambiguity": float(ambiguity)},
            )
        )
    return flags


def _epoch(history: list[dict], index: int) -> int:
    return int(history[index].get("epoch", index % len(history) + 1))


def _streak_start(history: list[dict], holds: Callable[[dict], bool], first: int) -> int | None:
    """Where the run of records satisfying ``holds`` that reaches the last record began."""
    index = len(history)
    while index > first and holds(history[index - 1]):
        index -= 1
    return index if index < len(history) else None


def _after_warmup(history: list[dict], warmup_epochs: int) -> int:
    """First record after warmup; the last record if training stopped within warmup."""
    return next((i for i in range(len(history)) if _epoch(history, i) > warmup_epochs), len(history) - 1)


def _layer_values(record: dict, prefix: str) -> dict[str, float]:
    return {key[len(prefix) :]: value for key, value in record.items() if key.startswith(prefix)}


def _dead_layer(history: list[dict], warmup_epochs: int) -> Flag | None:
    for index in range(_after_warmup(history, warmup_epochs), len(history)):
        dead = {
            name: value
            for name, value in _layer_values(history[index], DEAD_FRACTION).items()
            if value >= DEAD_LAYER_FRACTION
        }
        if dead:
            listing = ", ".join(f"{name} {value:.0%}" for name, value in dead.items())
            return Flag(
                "dead_layer",
                _epoch(history, index),
                (
                    f"At epoch {_epoch(history, index)} these layers have dead units: {listing}, inactive for every "
                    "probe sample (ReLU output 0, or tanh/sigmoid saturated), so the layers after them see a "
                    "constant. ReLU units whose input is negative for every sample get no gradient and never "
                    "recover. Try leaky_relu or elu, a lower learning rate, He initialization, batch "
                    "normalization; check the input scaling and biases that start negative."
                ),
                {f"{DEAD_FRACTION}{name}": value for name, value in dead.items()},
            )
    return None


def _collapsed_to_mean(history: list[dict], warmup_epochs: int) -> Flag | None:
    def collapsed(record: dict) -> bool:
        return (
            record.get(R2_MEAN, np.nan) < COLLAPSE_R2 or record.get("pred_std_ratio_min", np.nan) < COLLAPSE_STD_RATIO
        )

    index = _streak_start(history, collapsed, _after_warmup(history, warmup_epochs))
    if index is None:
        return None
    r2, ratio = history[-1].get(R2_MEAN, np.nan), history[-1].get("pred_std_ratio_min", np.nan)
    return Flag(
        "collapsed_to_mean",
        _epoch(history, index),
        (
            f"Since epoch {_epoch(history, index)} the predictions are no better than the average target: "
            f"R^2 {r2:.3f} (1 is perfect, 0 is predicting the mean), smallest ratio of prediction to target "
            f"spread {ratio:.3f} (near 0: a constant output). A small loss does not contradict this when the "
            "targets barely vary. If the data is multi-valued (same input, several targets) the MSE-optimal "
            "answer IS the mean: check the ambiguity, restrict the region. If the targets vary very little "
            "relative to their mean, normalize them per feature or per sample. Else see dead_layer, lr_vanished."
        ),
        {R2_MEAN: float(r2), "pred_std_ratio_min": float(ratio)},
    )


def _max_update_ratio(record: dict) -> float:
    return max(_layer_values(record, "update_ratio/").values(), default=np.inf)


def _lr_vanished(history: list[dict], warmup_epochs: int) -> Flag | None:
    # No warmup: a per-step decay can kill the rate within the first epoch.
    def frozen(record: dict) -> bool:
        return record.get(R2_MEAN, np.nan) < LEARNED_R2 and _max_update_ratio(record) < FROZEN_UPDATE_RATIO

    def decayed(record: dict) -> bool:
        return (
            record.get(R2_MEAN, np.nan) < LEARNED_R2
            and record.get("learning_rate_fraction", np.nan) < LR_VANISHED_FRACTION
        )

    def annealed(start: int | None) -> bool:
        """Only the last epochs, the rate decayed under LR_VANISHED_FRACTION of its start: a
        schedule annealing to 0 (a time budget's ends exactly there), not a vanished rate."""
        late = start is not None and start > (len(history) - 1) / 2
        return late and all(r.get("learning_rate_fraction", np.nan) < LR_VANISHED_FRACTION for r in history[start:])

    decayed_start = _streak_start(history, decayed, 0)
    if decayed_start is not None and decayed_start > (len(history) - 1) / 2:
        decayed_start = None  # only the last epochs: annealing, see LR_VANISHED_FRACTION
    frozen_start = _streak_start(history, frozen, 0)
    if annealed(frozen_start):
        frozen_start = None
    starts = [start for start in (frozen_start, decayed_start) if start is not None]
    if not starts:
        return None
    index = min(starts)
    last = history[-1]
    evidence = {
        "learning_rate": float(last.get("learning_rate", np.nan)),
        "learning_rate_fraction": float(last.get("learning_rate_fraction", np.nan)),
        "max_update_ratio": float(_max_update_ratio(last)),
        R2_MEAN: float(last[R2_MEAN]),
    }
    return Flag(
        "lr_vanished",
        _epoch(history, index),
        (
            f"Since epoch {_epoch(history, index)} the weights can barely move while the fit is poor "
            f"(R^2 {evidence['r2_mean']:.3f}): the learning rate is {evidence['learning_rate']:.3g}, "
            f"{evidence['learning_rate_fraction']:.2%} of its start; the largest relative kernel change in the "
            f"last epoch is {evidence['max_update_ratio']:.2g}. "
            + (
                "The learning rate decayed to ~0, e.g. Keras 2 `decay=0.1` applies per step: after 1000 steps "
                "the rate is 1/101 of the start. Use a constant rate, or decay per epoch or on a plateau "
                "(ReduceLROnPlateau)."
                if decayed_start is not None
                else "The rate is not the cause: the gradients are zero (see dead_layer) or the layers are frozen."
            )
        ),
        evidence,
    )


def diagnosis_markdown(flags: list[Flag], history: list[dict], *, title: str = "Diagnosis") -> str:
    """One line per flag (or "No problems detected"), then the last epoch's per-layer statistics."""
    last = history[-1] if history else {}
    dead, metrics = _layer_values(last, DEAD_FRACTION), ("zero_fraction", "activation_mean", "activation_std")
    lines = [f"## {title}", ""]
    lines += [f"- **{flag.name}** (epoch {flag.epoch}): {flag.explanation}" for flag in flags] or [
        f"No problems detected. Final R^2 {last.get('r2_mean', np.nan):.3f}; dead units: "
        + (", ".join(f"{name} {value:.0%}" for name, value in dead.items()) or "n/a")
        + "."
    ]
    if not history:
        return "\n".join(lines + ["", "No diagnostics were recorded."]) + "\n"
    lines += [
        "",
        f"### Last epoch ({_epoch(history, -1)}): R^2 {last.get('r2_mean', np.nan):.3f}, "
        f"learning rate {last.get('learning_rate', np.nan):.3g}",
        "",
        "| activation layer | dead | zero or saturated | mean | std |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, value in dead.items():
        zero, mean, std = (last.get(f"{metric}/{name}", np.nan) for metric in metrics)
        lines.append(f"| {name} | {value:.0%} | {zero:.0%} | {mean:.3g} | {std:.3g} |")
    lines += ["", "| trainable layer | gradient norm | update ratio |", "| --- | ---: | ---: |"]
    lines += [
        f"| {name} | {grad:.3g} | {last.get(f'update_ratio/{name}', np.nan):.3g} |"
        for name, grad in _layer_values(last, "grad_norm/").items()
    ]
    return "\n".join(lines) + "\n"


def dead_unit_heatmap(history: list[dict], title: str = "") -> Figure:
    """Activation layers x epochs; colour is the fraction of dead units, 0..1."""
    layers = list(dict.fromkeys(name for record in history for name in _layer_values(record, DEAD_FRACTION)))
    values = np.full((max(len(layers), 1), max(len(history), 1)), np.nan)  # a blank cell, not a crash
    for column, record in enumerate(history):
        values[: len(layers), column] = [record.get(f"{DEAD_FRACTION}{name}", np.nan) for name in layers]
    epochs = [_epoch(history, i) for i in range(len(history))]
    figure = Figure(
        figsize=(max(4.0, 0.35 * len(epochs) + 2.5), max(2.5, 0.45 * len(layers) + 1.5)), layout="constrained"
    )
    axes = figure.add_subplot()
    image = axes.imshow(values, aspect="auto", vmin=0.0, vmax=1.0, cmap="magma", interpolation="nearest")
    axes.set_yticks(range(len(layers)), layers)
    step = max(1, len(epochs) // 12)  # at most ~12 epoch labels stay readable
    axes.set_xticks(range(0, len(epochs), step), [str(e) for e in epochs[::step]])
    axes.set(xlabel="epoch", ylabel="activation layer", title=title or "Dead units per layer")
    figure.colorbar(image, ax=axes, label="dead fraction")
    return figure

"""Diagnostics on tiny networks built to fail in each classic way (see shared/questions)."""

import keras
import numpy as np
import pytest

from iklab.learning.diagnostics import (
    DiagnosticsCallback,
    Flag,
    dead_unit_heatmap,
    diagnosis_markdown,
    evaluate_flags,
    hidden_activation_layers,
)


def _mlp(n_inputs, widths, n_outputs, activation="relu", **dense_kwargs):
    """Functional MLP following the iklab.learning.models naming convention."""
    inputs = keras.Input((n_inputs,))
    x = inputs
    for index, width in enumerate(widths, start=1):
        x = keras.layers.Dense(width, name=f"dense_{index}", **dense_kwargs)(x)
        x = keras.layers.Activation(activation, name=f"act_{index}")(x)
    return keras.Model(inputs, keras.layers.Dense(n_outputs, name="output")(x))


def _train(model, x, y, *, epochs, batch_size=32, optimizer="adam", probe=None, callbacks=()):
    model.compile(optimizer=optimizer, loss="mse")
    probe_x, probe_y = probe if probe is not None else (x, y)
    diagnostics = DiagnosticsCallback(probe_x, probe_y, loss_fn="mse", grad_batch=(x[:batch_size], y[:batch_size]))
    model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0, callbacks=[diagnostics, *callbacks])
    return diagnostics


def _names(flags):
    return {flag.name for flag in flags}


def test_hidden_activation_layers_in_block_order_with_kinds():
    inputs = keras.Input((3,))
    x = inputs
    blocks = {1: "relu", 2: None, 3: "gelu", 10: "tanh", 4: "elu"}  # None: a LeakyReLU layer
    for index, activation in blocks.items():
        x = keras.layers.Dense(4, name=f"dense_{index}")(x)
        name = f"act_{index}"
        layer = keras.layers.Activation(activation, name=name) if activation else keras.layers.LeakyReLU(name=name)
        x = layer(x)
    model = keras.Model(inputs, keras.layers.Dense(1, name="output")(x))
    assert hidden_activation_layers(model) == {
        "act_1": "relu",
        "act_2": "leaky_relu",
        "act_3": "gelu",
        "act_4": "elu",
        "act_10": "tanh",
    }
    assert list(hidden_activation_layers(model)) == ["act_1", "act_2", "act_3", "act_4", "act_10"]
    with pytest.raises(ValueError, match="act_1"):
        hidden_activation_layers(_mlp(3, [4], 1, activation="softplus"))


def test_dead_relu_layer_is_measured_and_flagged():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 0.1, (256, 6)).astype("float32")  # tiny inputs cannot beat the -3 bias
    y = x @ rng.normal(size=(6, 2))
    model = _mlp(6, [16], 2, bias_initializer=keras.initializers.Constant(-3.0))
    diagnostics = _train(model, x, y, epochs=1)
    last = diagnostics.history[-1]
    assert last["dead_fraction/act_1"] == 1.0 and last["zero_fraction/act_1"] == 1.0
    assert last["grad_norm/dense_1"] == 0.0 and last["update_ratio/dense_1"] == 0.0
    flags = evaluate_flags(diagnostics.history)
    assert "dead_layer" in _names(flags)
    dead = next(flag for flag in flags if flag.name == "dead_layer")
    assert dead.epoch == 1 and dead.evidence == {"dead_fraction/act_1": 1.0}
    assert "leaky_relu" in dead.explanation and "100%" in dead.explanation


def test_saturated_tanh_and_sigmoid_count_as_dead():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    x = keras.layers.Dense(8, name="dense_1", bias_initializer=keras.initializers.Constant(5.0))(inputs)
    x = keras.layers.Activation("tanh", name="act_1")(x)
    x = keras.layers.Dense(8, name="dense_2", bias_initializer=keras.initializers.Constant(-20.0))(x)
    x = keras.layers.Activation("sigmoid", name="act_2")(x)
    model = keras.Model(inputs, keras.layers.Dense(1, name="output")(x))
    x_probe = np.random.default_rng(0).uniform(-0.1, 0.1, (128, 4)).astype("float32")
    diagnostics = _train(model, x_probe, x_probe[:, :1], epochs=1)
    assert diagnostics.history[-1]["dead_fraction/act_1"] == 1.0
    assert diagnostics.history[-1]["dead_fraction/act_2"] == 1.0


def test_healthy_network_learns_without_flags_and_logs_contract_names():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(1)
    x = rng.uniform(-1.0, 1.0, (512, 4)).astype("float32")
    y = x @ rng.normal(size=(4, 3))
    model = _mlp(4, [32, 32], 3)
    diagnostics = _train(model, x, y, epochs=5, optimizer=keras.optimizers.Adam(0.01))
    last = diagnostics.history[-1]
    assert last["r2_mean"] > 0.9, last["r2_mean"]
    assert evaluate_flags(diagnostics.history) == []
    assert "No problems detected" in diagnosis_markdown([], diagnostics.history)
    logged = model.history.history  # History runs after the callback, so it saw what was written to logs
    expected = {
        f"{metric}/act_{i}"
        for metric in ("dead_fraction", "zero_fraction", "activation_mean", "activation_std")
        for i in (1, 2)
    }
    expected |= {
        f"{metric}/{layer}" for metric in ("grad_norm", "update_ratio") for layer in ("dense_1", "dense_2", "output")
    }
    expected |= {f"{metric}/j{i}" for metric in ("pred_std_ratio", "r2") for i in range(3)}
    expected |= {"learning_rate", "r2_mean", "pred_std_ratio_min", "diagnostics_seconds"}
    assert expected <= set(logged), expected - set(logged)
    assert len(logged["r2_mean"]) == 5 and logged["learning_rate"][-1] == pytest.approx(0.01)


def test_targets_independent_of_inputs_collapse_to_the_mean():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2500, 4)).astype("float32")
    y = rng.normal(size=(2500, 2))  # nothing to learn: the best answer is the mean
    model = _mlp(4, [16], 2)
    diagnostics = _train(
        model, x[:2000], y[:2000], epochs=3, probe=(x[2000:], y[2000:]), optimizer=keras.optimizers.Adam(3e-3)
    )
    assert abs(diagnostics.history[-1]["r2_mean"]) < 0.05  # measured -0.014 on the held-out probe
    flags = evaluate_flags(diagnostics.history)
    assert "collapsed_to_mean" in _names(flags)
    assert "dead_layer" not in _names(flags)


def _extrapolation_run(learning_rate):
    """Question 002: one Dense layer learning y = x3 - x2 with batch 8."""
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(3).random((9000, 4)).astype("float32")
    y = (x[:, 3] - x[:, 2])[:, None]
    model = keras.Model(inputs := keras.Input((4,)), keras.layers.Dense(1, name="output")(inputs))
    return _train(model, x, y, epochs=1, batch_size=8, optimizer=keras.optimizers.Adam(learning_rate))


def test_per_step_decay_is_flagged_as_vanished_learning_rate():
    # Keras 2 `Adam(decay=0.1)` == InverseTimeDecay(rate, decay_steps=1, decay_rate=0.1); 1125 steps here
    decayed = _extrapolation_run(keras.optimizers.schedules.InverseTimeDecay(0.01, decay_steps=1, decay_rate=0.1))
    last = decayed.history[-1]
    assert last["learning_rate"] == pytest.approx(0.01 / (1 + 0.1 * 1125), rel=1e-4)
    assert last["learning_rate_fraction"] < 0.01 and last["r2_mean"] < 0.9
    assert "lr_vanished" in _names(evaluate_flags(decayed.history))

    constant = _extrapolation_run(0.01)
    assert constant.history[-1]["r2_mean"] > 0.9
    assert "lr_vanished" not in _names(evaluate_flags(constant.history))


def test_tiny_variance_autoencoder_has_tiny_loss_but_is_flagged():
    # Question 003: data N(1.109, 0.00124). The loss only sees the mean; along the data's own directions
    # the curvature is ~1e-6, so the random initial projection stays: measured loss 3e-6, R^2 -0.95.
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(4).normal(1.109, 0.00124, (512, 84)).astype("float32")
    model = keras.Model(inputs := keras.Input((84,)), keras.layers.Dense(84, name="output")(inputs))
    diagnostics = _train(model, x, x, epochs=3, optimizer=keras.optimizers.SGD(0.1))
    assert model.history.history["loss"][-1] < 1e-5
    assert diagnostics.history[-1]["r2_mean"] < 0.05  # explains none of the variance
    assert "collapsed_to_mean" in _names(evaluate_flags(diagnostics.history))


def _record(epoch, *, dead=0.0, r2=0.95, std_ratio=0.9, lr_fraction=1.0, update=1e-2):
    return {
        "epoch": float(epoch),
        "dead_fraction/act_1": dead,
        "zero_fraction/act_1": dead,
        "activation_mean/act_1": 0.3,
        "activation_std/act_1": 0.5,
        "grad_norm/dense_1": 0.1,
        "update_ratio/dense_1": update,
        "learning_rate": 1e-3 * lr_fraction,
        "learning_rate_fraction": lr_fraction,
        "r2_mean": r2,
        "pred_std_ratio_min": std_ratio,
    }


def test_flags_describe_the_run_as_it_ended():
    early_collapse = [_record(1, r2=0.0), _record(2, r2=0.0), _record(3, r2=0.01), _record(4, r2=0.6)]
    assert evaluate_flags(early_collapse) == []  # recovered: no collapse, and warmup covers epochs 1-2
    late = early_collapse + [_record(5, r2=0.02), _record(6, r2=0.01)]
    collapse = next(f for f in evaluate_flags(late) if f.name == "collapsed_to_mean")
    assert collapse.epoch == 5 and collapse.evidence["r2_mean"] == 0.01
    frozen = [_record(1, r2=0.3), _record(2, r2=0.3, update=1e-8)]
    assert _names(evaluate_flags(frozen)) == {"lr_vanished"}
    learned_then_decayed = [_record(1, r2=0.3), _record(2, r2=0.95, lr_fraction=1e-3)]
    assert evaluate_flags(learned_then_decayed) == []
    # cosine annealing over 30 epochs on a fit that plateaus at R^2 0.6: under 1% only at the very end
    cosine = [_record(e, r2=0.6, lr_fraction=0.5 * (1 + np.cos(np.pi * e / 30))) for e in range(1, 31)]
    assert cosine[-1]["learning_rate_fraction"] < 0.01 and evaluate_flags(cosine) == []
    # a time budget's schedule reaches 0 and the last epoch barely moves the weights: still annealing
    to_zero = cosine[:-1] + [_record(30, r2=0.6, lr_fraction=0.0, update=1e-9)]
    assert evaluate_flags(to_zero) == []
    assert _names(evaluate_flags(cosine[:-1] + [_record(30, r2=0.6, lr_fraction=0.5, update=1e-9)])) == {"lr_vanished"}
    per_step_decay = [_record(e, r2=0.6, lr_fraction=1 / (1 + 300 * e)) for e in range(1, 5)]
    assert next(f for f in evaluate_flags(per_step_decay) if f.name == "lr_vanished").epoch == 1


def test_run_level_flags_and_markdown_mention_every_flag():
    history = [_record(e, dead=1.0, r2=0.0, std_ratio=0.01, lr_fraction=10.0**-e, update=1e-7) for e in (1, 2, 3)]
    flags = evaluate_flags(history, ambiguity=0.9, model_error=12.0, knn_error=5.0)
    names = ["dead_layer", "collapsed_to_mean", "lr_vanished", "worse_than_knn", "ambiguous_data"]
    assert [flag.name for flag in flags] == names
    assert all(isinstance(flag, Flag) and flag.explanation for flag in flags)
    assert "12" in flags[3].explanation and "90%" in flags[4].explanation
    report = diagnosis_markdown(flags, history, title="Run 7")
    assert report.startswith("## Run 7") and all(f"**{name}**" in report for name in names)
    assert "| act_1 | 100% |" in report and "| dense_1 |" in report
    assert _names(evaluate_flags([], ambiguity=0.01, model_error=4.0, knn_error=5.0)) == set()


def test_dead_unit_heatmap_has_one_row_per_activation_layer():
    history = [{"epoch": float(e), **{f"dead_fraction/act_{i}": i / 3 for i in (1, 2, 3)}} for e in (1, 2, 3, 4)]
    figure = dead_unit_heatmap(history, title="three layers")
    axes = figure.axes[0]
    assert axes.images[0].get_array().shape == (3, 4)
    assert [label.get_text() for label in axes.get_yticklabels()] == ["act_1", "act_2", "act_3"]
    assert axes.get_xlabel() == "epoch" and len(figure.axes) == 2  # heatmap and colorbar

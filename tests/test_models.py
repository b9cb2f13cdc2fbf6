import keras
import numpy as np
import pytest

from iklab.learning.config import ModelConfig, OptimizerConfig, TrainingConfig
from iklab.learning.models import build_loss, build_model, build_optimizer, count_parameters, wrapped_angle_loss

X = np.random.default_rng(0).normal(size=(256, 7)).astype("float32") * 3 + 1


def _layers(model, prefix):
    return [layer for layer in model.layers if layer.name.startswith(prefix)]


def test_mlp_shapes_names_and_normalization():
    model = build_model(ModelConfig(depth=3, width=32, activation="tanh"), X, 12)
    assert model.output_shape == (None, 12)
    assert [layer.name for layer in _layers(model, "dense_")] == ["dense_1", "dense_2", "dense_3"]
    assert [layer.activation.__name__ for layer in _layers(model, "act_")] == ["tanh"] * 3
    normalized = model.get_layer("normalize_inputs")(X)
    np.testing.assert_allclose(np.mean(normalized, axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(np.std(normalized, axis=0), 1, atol=1e-3)


def test_widths_batch_norm_dropout_residual():
    cfg = ModelConfig(widths=(16, 16, 8), batch_norm="before", dropout=0.1, residual=True)
    model = build_model(cfg, X, 6)
    assert [layer.units for layer in _layers(model, "dense_")] == [16, 16, 8]
    names = [layer.name for layer in model.layers]
    assert names.index("bn_1") < names.index("act_1")  # before the activation
    assert [layer.name for layer in _layers(model, "residual_")] == ["residual_2"]  # 16 -> 16 only
    assert len(_layers(model, "dropout_")) == 3
    after = build_model(ModelConfig(depth=1, width=4, batch_norm="after"), X, 6)
    names = [layer.name for layer in after.layers]
    assert names.index("act_1") < names.index("bn_1")


def test_conv1d_front_end():
    model = build_model(ModelConfig(family="conv1d", conv_layers=2, conv_filters=8, depth=1, width=16), X, 12)
    assert [layer.name for layer in _layers(model, "conv_")] == ["conv_1", "conv_2"]
    assert model.get_layer("conv_1").output.shape == (None, 7, 8)
    assert model.get_layer("dense_3").units == 16
    assert model.output_shape == (None, 12)


def test_angle_outputs_are_denormalized():
    targets = np.random.default_rng(1).uniform(2.0, 4.0, size=(256, 6)).astype("float32")
    model = build_model(ModelConfig(depth=1, width=4), X, 6, train_targets=targets)
    layer = model.get_layer("denormalize_outputs")
    np.testing.assert_allclose(layer(np.zeros((1, 6), "float32"))[0], targets.mean(axis=0), atol=1e-4)


@pytest.mark.parametrize(
    "cfg, message",
    [
        (ModelConfig(family="rnn"), "mlp or conv1d"),
        (ModelConfig(activation="swishy"), "activation must be one of"),
        (ModelConfig(batch_norm="sometimes"), "off, before or after"),
        (ModelConfig(depth=0), "at least one hidden layer"),
        (ModelConfig(dropout=1.0), "dropout"),
    ],
)
def test_bad_model_config(cfg, message):
    with pytest.raises(ValueError, match=message):
        build_model(cfg, X, 6)


def test_optimizers_and_schedules():
    sgd = build_optimizer(OptimizerConfig(name="sgd", learning_rate=0.1, momentum=0.4), 100, 10)
    assert isinstance(sgd, keras.optimizers.SGD) and float(sgd.momentum) == pytest.approx(0.4)
    decayed = build_optimizer(OptimizerConfig(schedule="inverse_time", learning_rate=0.01, decay=0.1), 100, 10)
    schedule = decayed.learning_rate if callable(decayed.learning_rate) else decayed._learning_rate
    assert float(schedule(1000)) == pytest.approx(0.01 / (1 + 0.1 * 1000))  # Keras 2 `decay`
    cosine = build_optimizer(OptimizerConfig(schedule="cosine", learning_rate=1.0), 10, 10)
    assert float(cosine._learning_rate(100)) == pytest.approx(0.0, abs=1e-6)
    warm = build_optimizer(OptimizerConfig(schedule="warmup_cosine", learning_rate=1.0, warmup_fraction=0.1), 10, 10)
    rates = [float(warm._learning_rate(step)) for step in (0, 5, 10, 55, 100)]
    assert rates == pytest.approx([0.0, 0.5, 1.0, 0.5, 0.0], abs=1e-6)  # up over 10 steps, cosine over 90
    cycle = build_optimizer(OptimizerConfig(schedule="one_cycle", learning_rate=1.0), 10, 10)
    rates = [float(cycle._learning_rate(step)) for step in (0, 15, 30, 65, 100)]
    assert rates == pytest.approx([1 / 25, 0.5 + 0.5 / 25, 1.0, 0.5 + 0.5e-4, 1e-4], rel=1e-4)
    clipped = build_optimizer(OptimizerConfig(name="adamw", clipnorm=1.0), 10, 1)
    assert isinstance(clipped, keras.optimizers.AdamW) and clipped.clipnorm == 1.0
    with pytest.raises(ValueError, match="optimizer.name"):
        build_optimizer(OptimizerConfig(name="lbfgs"), 1, 1)
    with pytest.raises(ValueError, match="optimizer.schedule"):
        build_optimizer(OptimizerConfig(schedule="step"), 1, 1)


def test_losses():
    assert build_loss(TrainingConfig(), "angles") is wrapped_angle_loss
    assert isinstance(build_loss(TrainingConfig(), "sincos"), keras.losses.MeanSquaredError)
    error = float(np.mean(wrapped_angle_loss(np.array([[np.pi - 0.01]]), np.array([[-np.pi + 0.01]]))))
    assert error == pytest.approx(0.02**2, rel=1e-3)  # 0.02 rad apart across the wrap
    with pytest.raises(ValueError, match="needs data.output_encoding: angles"):
        build_loss(TrainingConfig(loss="wrapped"), "sincos")


def test_count_parameters():
    model = build_model(ModelConfig(depth=1, width=10), X, 6)
    assert count_parameters(model) == 7 * 10 + 10 + 10 * 6 + 6

"""iklab.robot.network: a Keras model exported to NumPy gives Keras' outputs, saved and loaded."""

import json

import keras
import numpy as np
import pytest

from iklab.learning.config import ModelConfig
from iklab.learning.models import ACTIVATIONS, build_model
from iklab.robot.network import OPS_KEY, NumpyNetwork, export_network

ROWS = np.random.default_rng(0).normal(size=(512, 7)).astype("float32") * 3 + 1
TARGETS = np.random.default_rng(1).uniform(2.0, 4.0, size=(512, 6)).astype("float32")


@pytest.fixture(autouse=True)
def _seeded():
    keras.utils.set_random_seed(0)


def _set_batch_norm_statistics(model, seed=2):
    """Moving statistics and gamma/beta far from the initial ones, so the folding is exercised."""
    rng = np.random.default_rng(seed)
    count = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            values = []
            for weight, value in zip(layer.weights, layer.get_weights(), strict=True):
                if weight.name in ("gamma", "moving_variance"):
                    values.append(rng.uniform(0.5, 2.0, size=value.shape).astype("float32"))
                else:  # beta, moving_mean
                    values.append(rng.normal(0.0, 0.5, size=value.shape).astype("float32"))
            layer.set_weights(values)
            count += 1
    return count


def _roundtrip(model, tmp_path):
    """Export, build, save, load: the loaded network."""
    ops, weights = export_network(model)
    json.dumps(ops)  # JSON-able
    assert all(w.dtype == np.float32 for w in weights.values())
    network = NumpyNetwork(ops, weights)
    path = network.save(tmp_path / "network.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["network.npz"]  # one file, no temp left
    return NumpyNetwork.load(path)


def _assert_matches(model, network, n_features=7, rows=(1, 1000), seed=3):
    rng = np.random.default_rng(seed)
    for n in rows:
        x = (rng.normal(size=(n, n_features)) * 3 + 1).astype("float32")
        expected = np.asarray(model(x, training=False))
        got = network(x)
        assert got.dtype == np.float32 and got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


# (family, activation, batch_norm, residual, dropout, denormalized outputs): every activation in
# both families; batch norm off, before and after; residual, dropout and output denormalization.
CASES = [
    ("mlp", "relu", "before", True, 0.2, True),
    ("mlp", "leaky_relu", "after", True, 0.0, False),
    ("mlp", "elu", "off", True, 0.1, True),
    ("mlp", "gelu", "after", False, 0.0, True),
    ("mlp", "tanh", "before", False, 0.0, False),
    ("mlp", "sigmoid", "after", True, 0.0, True),
    ("mlp", "gelu", "before", True, 0.0, False),
    ("conv1d", "relu", "after", True, 0.0, True),
    ("conv1d", "leaky_relu", "before", False, 0.2, True),
    ("conv1d", "elu", "after", True, 0.0, False),
    ("conv1d", "gelu", "before", True, 0.1, True),
    ("conv1d", "tanh", "off", True, 0.0, True),
    ("conv1d", "sigmoid", "before", True, 0.0, False),
    ("conv1d", "gelu", "off", False, 0.0, False),
]
assert {case[1] for case in CASES} == set(ACTIVATIONS)


@pytest.mark.parametrize("family, activation, batch_norm, residual, dropout, denormalize", CASES)
def test_matches_keras(tmp_path, family, activation, batch_norm, residual, dropout, denormalize):
    cfg = ModelConfig(
        family=family,
        widths=(8, 8, 6),
        activation=activation,
        batch_norm=batch_norm,
        residual=residual,
        dropout=dropout,
        conv_layers=2,
        conv_filters=4,
        conv_kernel_size=3,
    )
    model = build_model(cfg, ROWS, 6, train_targets=TARGETS if denormalize else None)
    assert _set_batch_norm_statistics(model) == (0 if batch_norm == "off" else 3 + 2 * (family == "conv1d"))
    network = _roundtrip(model, tmp_path)
    _assert_matches(model, network)


def test_trained_batch_norm_model(tmp_path):
    """Batch norm statistics from real training (one epoch), conv1d front, residual blocks."""
    cfg = ModelConfig(
        family="conv1d",
        widths=(8, 8),
        activation="gelu",
        batch_norm="after",
        residual=True,
        conv_layers=1,
        conv_filters=4,
    )
    model = build_model(cfg, ROWS, 6, train_targets=TARGETS)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    model.fit(ROWS, TARGETS, epochs=1, batch_size=64, verbose=0)
    assert np.abs(model.get_layer("bn_2").moving_mean.numpy()).max() > 1e-3  # training moved them
    _assert_matches(model, _roundtrip(model, tmp_path))


def _kinds_of_steps(network):
    return [step.__qualname__.split(".")[0].strip("_").removesuffix("_step") for step in network._steps]


def test_folding_leaves_a_product_and_an_activation_per_layer(tmp_path):
    """Input normalization, batch norms, gelu's constant scales and the output denormalization
    all fold into the Dense kernels: nothing but products and activations is left."""
    cfg = ModelConfig(family="conv1d", widths=(8, 8), activation="gelu", batch_norm="before", conv_filters=4)
    model = build_model(cfg, ROWS, 6, train_targets=TARGETS)
    _set_batch_norm_statistics(model)
    network = NumpyNetwork(*export_network(model))
    assert _kinds_of_steps(network) == ["linear", "act"] * 4 + ["linear"]  # 2 convs (banded), 2 dense, output
    _assert_matches(model, network)


def test_long_sequence_conv1d_uses_im2col(tmp_path):
    rows = np.random.default_rng(4).normal(size=(256, 40)).astype("float32") * 3 + 1  # as _assert_matches draws
    cfg = ModelConfig(family="conv1d", widths=(8,), activation="gelu", batch_norm="before", conv_filters=4)
    model = build_model(cfg, rows, 3)
    _set_batch_norm_statistics(model)
    network = _roundtrip(model, tmp_path)
    kinds = _kinds_of_steps(network)
    assert kinds.count("conv") == 2 and kinds.count("affine") == 1, kinds  # only the input normalization
    _assert_matches(model, network, n_features=40)


def _small_functional(layers, n_features=6):
    inputs = keras.Input(shape=(n_features,), name="x")
    outputs = inputs
    for layer in layers:
        outputs = layer(outputs)
    return keras.Model(inputs, outputs)


def test_more_layer_options(tmp_path):
    """Dense with its own activation, even and valid kernels, explicit normalization, BN without
    gamma/beta, a long sequence (the im2col path), a three-way Add and Reshape with -1."""
    inputs = keras.Input(shape=(40,), name="x")
    x = keras.layers.Normalization(mean=1.0, variance=4.0, name="norm")(inputs)
    seq = keras.layers.Reshape((-1, 1), name="seq")(x)
    a = keras.layers.Conv1D(8, 4, padding="same", activation="elu", name="even_same")(seq)
    a = keras.layers.BatchNormalization(center=False, scale=False, name="bn_plain")(a)
    a = keras.layers.Conv1D(8, 3, padding="same", use_bias=False, name="second")(a)
    b = keras.layers.Conv1D(8, 5, padding="valid", activation="relu", name="valid")(seq)
    b = keras.layers.Flatten(name="flat_b")(b)
    a = keras.layers.Flatten(name="flat_a")(a)
    a = keras.layers.Dense(16, activation="gelu", name="dense_a")(a)
    b = keras.layers.Dense(16, activation="tanh", name="dense_b")(b)
    c = keras.layers.Dense(16, use_bias=False, name="dense_c")(x)
    y = keras.layers.Add(name="sum3")([a, b, c])
    y = keras.layers.BatchNormalization(center=True, scale=False, name="bn_center")(y)
    outputs = keras.layers.Dense(3, activation="sigmoid", name="out")(y)
    model = keras.Model(inputs, outputs)
    _set_batch_norm_statistics(model)
    ops, _ = export_network(model)
    assert [op["name"] for op in ops][0] == "x" and ops[-1]["name"] == "out"
    dense_a = next(op for op in ops if op["name"] == "dense_a")
    assert dense_a["activation"] == "gelu" and dense_a["approximate"] is False
    network = _roundtrip(model, tmp_path)
    assert "conv" in _kinds_of_steps(network)
    _assert_matches(model, network, n_features=40)


def test_residual_on_the_input_leaves_the_caller_array_alone(tmp_path):
    inputs = keras.Input(shape=(5,), name="x")
    y = keras.layers.Activation("relu", name="act")(inputs)
    y = keras.layers.Add(name="skip")([y, inputs, inputs])
    outputs = keras.layers.Dense(2, name="out")(y)
    model = keras.Model(inputs, outputs)
    network = NumpyNetwork(*export_network(model))
    x = np.random.default_rng(0).normal(size=(4, 5)).astype("float32")
    before = x.copy()
    np.testing.assert_allclose(network(x), np.asarray(model(x)), atol=1e-5)
    np.testing.assert_array_equal(x, before)
    np.testing.assert_allclose(network(x.astype("float64")), network(x))  # cast like Keras


def test_sequential_model():
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(5, activation="leaky_relu"), keras.layers.Dense(2)], name="seq"
    )
    network = NumpyNetwork.from_model(model)
    _assert_matches(model, network, n_features=4)


@pytest.mark.parametrize(
    "activation, params, reference",
    [
        ("gelu", {"approximate": True}, lambda z: keras.activations.gelu(z, approximate=True)),
        ("leaky_relu", {"negative_slope": 0.05}, lambda z: keras.activations.leaky_relu(z, negative_slope=0.05)),
        ("leaky_relu", {"negative_slope": 1.5}, lambda z: keras.activations.leaky_relu(z, negative_slope=1.5)),
        ("elu", {"alpha": 0.5}, lambda z: keras.activations.elu(z, alpha=0.5)),
    ],
)
def test_activation_parameters(activation, params, reference):
    """Parameters Keras' activation strings never set, still honoured from the op list."""
    model = _small_functional([keras.layers.Dense(6, name="hidden"), keras.layers.Activation(activation, name="act")])
    ops, weights = export_network(model)
    (op,) = [op for op in ops if op["name"] == "act"]
    op.update(params)
    network = NumpyNetwork(ops, weights)
    x = np.random.default_rng(0).normal(size=(50, 6)).astype("float32") * 3
    expected = np.asarray(reference(model.get_layer("hidden")(x)))
    np.testing.assert_allclose(network(x), expected, atol=1e-6)


def test_export_format():
    model = build_model(ModelConfig(family="conv1d", depth=1, width=4, conv_layers=1, conv_filters=2), ROWS, 6)
    ops, weights = export_network(model)
    kinds = [op["kind"] for op in ops]
    expected = "input normalization reshape conv1d activation flatten dense activation dense"
    assert kinds == expected.split()
    assert ops[0] == {"name": "pose", "kind": "input", "inputs": [], "shape": [7]}
    conv = ops[3]
    assert conv["inputs"] == ["as_sequence"] and conv["kernel_size"] == 3 and conv["padding"] == "same"
    assert conv["activation"] == "linear"
    assert ops[1]["invert"] is False and ops[1]["epsilon"] == pytest.approx(1e-7)
    assert sorted(weights) == sorted(
        f"{name}/{i}" for name in ("normalize_inputs", "conv_1", "dense_2", "output") for i in (0, 1)
    )
    assert weights["conv_1/0"].shape == (3, 1, 2)
    leaky = build_model(ModelConfig(depth=1, width=4, activation="leaky_relu"), ROWS, 6, train_targets=TARGETS)
    ops, _ = export_network(leaky)
    assert next(op for op in ops if op["name"] == "act_1")["negative_slope"] == pytest.approx(0.2)  # Keras 3's
    assert ops[-1]["kind"] == "normalization" and ops[-1]["invert"] is True


def test_save_replaces_and_load_round_trips(tmp_path):
    model = build_model(ModelConfig(depth=2, width=4, batch_norm="before"), ROWS, 6)
    network = NumpyNetwork(*export_network(model))
    path = tmp_path / "net.npz"
    path.write_text("old")
    network.save(str(path))
    loaded = NumpyNetwork.load(str(path))
    assert loaded.ops == network.ops and loaded.weights.keys() == network.weights.keys()
    for key, value in network.weights.items():
        np.testing.assert_array_equal(loaded.weights[key], value)
    x = ROWS[:10]
    np.testing.assert_array_equal(loaded(x), network(x))
    assert (loaded.n_inputs, loaded.n_outputs) == (7, 6)
    with pytest.raises(ValueError, match=r"expected rows of shape \(N, 7\)"):
        loaded(ROWS[0])


@pytest.mark.parametrize(
    "layers, name, message",
    [
        ([keras.layers.Reshape((6, 1)), keras.layers.Conv1D(2, 3, strides=2, name="strided")], "strided", "strides"),
        ([keras.layers.Reshape((6, 1)), keras.layers.Conv1D(2, 3, dilation_rate=2, name="dil")], "dil", "dilation"),
        ([keras.layers.Reshape((6, 1)), keras.layers.Conv1D(2, 3, padding="causal", name="cz")], "cz", "padding"),
        ([keras.layers.LayerNormalization(name="ln")], "ln", "LayerNormalization"),
        ([keras.layers.Dense(3, activation="softmax", name="soft")], "soft", "activation 'softmax'"),
        ([keras.layers.Activation("swish", name="sw")], "sw", "activation 'silu'"),
    ],
)
def test_unsupported_layers_are_named(layers, name, message):
    model = _small_functional(layers)
    with pytest.raises(ValueError, match=f"'{name}'.*{message}"):
        export_network(model)


def test_shared_layers_and_several_outputs_are_refused():
    shared = keras.layers.Dense(6, name="shared")
    inputs = keras.Input((6,))
    model = keras.Model(inputs, shared(shared(inputs)))
    with pytest.raises(ValueError, match="'shared'.*called 2 times"):
        export_network(model)
    two = keras.Model(inputs, [keras.layers.Dense(1)(inputs), keras.layers.Dense(2)(inputs)])
    with pytest.raises(ValueError, match="one output"):
        export_network(two)


def test_load_refuses_other_files(tmp_path):
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    np.save(tmp_path / "array.npy", np.zeros(3))
    (tmp_path / "text.npz").write_text("not a zip file")
    np.savez(tmp_path / "header.npz", **{OPS_KEY: np.array("{}")})
    for name in ("other.npz", "array.npy", "text.npz", "header.npz"):
        with pytest.raises(ValueError, match="not a NumpyNetwork export"):
            NumpyNetwork.load(tmp_path / name)
    with pytest.raises(FileNotFoundError):
        NumpyNetwork.load(tmp_path / "missing.npz")


def test_bad_ops_and_weights():
    model = _small_functional([keras.layers.Dense(3, name="d")])
    ops, weights = export_network(model)
    with pytest.raises(ValueError, match="'d'.*weight 'd/0' has shape"):
        NumpyNetwork(ops, {**weights, "d/0": np.zeros((2, 2))})
    with pytest.raises(ValueError, match="weight 'd/1' is missing"):
        NumpyNetwork(ops, {"d/0": weights["d/0"]})
    with pytest.raises(ValueError, match=r"weights \['e/0'\] belong to no op"):
        NumpyNetwork(ops, {**weights, "e/0": np.zeros(1)})
    with pytest.raises(ValueError, match="kind 'conv2d' is not supported"):
        NumpyNetwork([*ops[:-1], {**ops[-1], "kind": "conv2d"}], weights)

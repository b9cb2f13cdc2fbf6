"""The ONNX export every logged model carries (artifacts/network.onnx, iklab.learning.onnx_export),
run by onnxruntime against the Keras network and the NumpyNetwork on the same encoded poses."""

import json
import types
from pathlib import Path

import mlflow
import numpy as np
import onnx
import onnxruntime
import pytest
from helpers import CENTER, tiny_experiment

from iklab.core.encodings import encode_pose_matrices
from iklab.core.kinematics import fk
from iklab.learning.config import ModelConfig, experiment_from_dict
from iklab.learning.models import build_model
from iklab.learning.onnx_export import INPUT_NAME, METADATA_KEY, OPSET, OUTPUT_NAME, network_to_onnx
from iklab.learning.training import train
from iklab.robot.model_metadata import NETWORK_ARTIFACT, NUMPY_NETWORK_FILE, ONNX_NETWORK_FILE
from iklab.robot.network import NumpyNetwork
from iklab.robot.solver import IKSolver

TOLERANCE = 1e-5  # float32: the three runs differ in summation order only
# Seconds-long: 2000 rows, one epoch; the architectures iklab builds (models.py), one trained each.
ARCHITECTURES = {
    "relu-mlp": {"activation": "relu"},
    "gelu-mlp": {"activation": "gelu", "residual": True},
    "conv1d-batchnorm": {
        "family": "conv1d",
        "conv_layers": 2,
        "conv_filters": 8,
        "activation": "gelu",
        "batch_norm": "before",
    },
    "elu-batchnorm-after": {"activation": "elu", "batch_norm": "after", "dropout": 0.1},
}


def _session(model) -> onnxruntime.InferenceSession:
    data = model if isinstance(model, bytes) else model.SerializeToString()
    return onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module", params=sorted(ARCHITECTURES))
def logged(request, module_mlflow_store):
    raw = tiny_experiment(
        f"onnx-{request.param}",
        rows=2000,
        model={"depth": 2, "width": 32, **ARCHITECTURES[request.param]},
        training={"epochs": 1, "batch_size": 128},
        evaluation={"knn_rows": 500, "test_rows": 200},
    )
    result = train(experiment_from_dict(raw))
    assert result.status == "finished", result.reason
    return Path(mlflow.artifacts.download_artifacts(result.model_uri))


def _features(solver, n=300):
    """Encoded poses as the solver encodes them: FK of joints in and around the trained box."""
    q = np.random.default_rng(4).uniform(CENTER - 0.4, CENTER + 0.4, size=(n, 6))
    return encode_pose_matrices(fk(solver.robot, q), solver.input_encoding, solver.robot)


@pytest.mark.slow
def test_logged_onnx_matches_keras_and_numpy(logged):
    onnx_file = logged / "artifacts" / ONNX_NETWORK_FILE
    assert onnx_file.is_file() and (logged / "artifacts" / NUMPY_NETWORK_FILE).is_file()
    solver = IKSolver.load(str(logged))
    features = _features(solver)
    keras_model = mlflow.tensorflow.load_model(
        str(logged / "artifacts" / NETWORK_ARTIFACT), keras_model_kwargs={"compile": False}
    )
    expected = np.asarray(keras_model(features, training=False))
    numpy_out = NumpyNetwork.load(logged / "artifacts" / NUMPY_NETWORK_FILE)(features)
    session = _session(onnx_file.read_bytes())
    (onnx_out,) = session.run([OUTPUT_NAME], {INPUT_NAME: features})
    assert onnx_out.dtype == np.float32 and onnx_out.shape == expected.shape
    assert np.abs(expected).max() > 0.1  # not trivially zero
    np.testing.assert_allclose(onnx_out, expected, atol=TOLERANCE, rtol=TOLERANCE)
    np.testing.assert_allclose(onnx_out, numpy_out, atol=TOLERANCE, rtol=TOLERANCE)
    # one row at a time, the robot's usual call, gives the same rows
    np.testing.assert_allclose(session.run(None, {INPUT_NAME: features[:1]})[0], onnx_out[:1], atol=TOLERANCE)

    model = onnx.load(onnx_file)
    assert [o.version for o in model.opset_import] == [OPSET]
    metadata = json.loads({p.key: p.value for p in model.metadata_props}[METADATA_KEY])
    assert metadata["input_encoding"] == solver.input_encoding and metadata["robot"]["name"] == "jaco"


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "elu", "gelu", "tanh", "sigmoid"])
def test_every_activation_and_batch_norm_placement_untrained(activation):
    """Every activation iklab builds, batch norm before and after it, on random weights and
    moved batch-norm statistics (no training: milliseconds)."""
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(400, 9)) * 2 + 0.5).astype(np.float32)
    for batch_norm in ("before", "after"):
        model = build_model(
            ModelConfig(depth=2, width=16, activation=activation, batch_norm=batch_norm),
            x,
            6,
            train_targets=rng.normal(size=(400, 6)).astype(np.float32),
        )
        for layer in model.layers:
            if layer.__class__.__name__ == "BatchNormalization":
                layer.set_weights([w + rng.uniform(0.2, 0.8, size=w.shape) for w in layer.get_weights()])
        network = NumpyNetwork.from_model(model)
        (out,) = _session(network_to_onnx(network)).run(None, {INPUT_NAME: x})
        np.testing.assert_allclose(out, np.asarray(model(x, training=False)), atol=TOLERANCE, rtol=TOLERANCE)
        np.testing.assert_allclose(out, network(x), atol=TOLERANCE, rtol=TOLERANCE)


def test_valid_padded_even_conv_kernel():
    """A Conv1D models.py never builds (valid padding, even kernel, its own activation)."""
    import keras

    x = np.random.default_rng(1).normal(size=(200, 9)).astype(np.float32)
    inputs = keras.Input(shape=(9,), name="pose")
    y = keras.layers.Reshape((9, 1))(inputs)
    y = keras.layers.Conv1D(4, 4, padding="valid", activation="relu")(y)
    y = keras.layers.Conv1D(3, 2, padding="same", activation="tanh")(y)
    outputs = keras.layers.Dense(6)(keras.layers.Flatten()(y))
    model = keras.Model(inputs, outputs)
    network = NumpyNetwork.from_model(model)
    (out,) = _session(network_to_onnx(network)).run(None, {INPUT_NAME: x})
    np.testing.assert_allclose(out, np.asarray(model(x, training=False)), atol=TOLERANCE, rtol=TOLERANCE)


def test_approximate_gelu():
    """gelu's tanh form (no iklab config builds it): the exported ops changed, against NumpyNetwork."""
    x = np.random.default_rng(2).normal(size=(200, 9)).astype(np.float32) * 3
    network = NumpyNetwork.from_model(build_model(ModelConfig(depth=2, width=16, activation="gelu"), x, 6))
    ops = [dict(op) for op in network.ops]
    for op in ops:
        if op.get("activation") == "gelu":
            op["approximate"] = True
    changed = NumpyNetwork(ops, network.weights)
    (out,) = _session(network_to_onnx(changed)).run(None, {INPUT_NAME: x})
    np.testing.assert_allclose(out, changed(x), atol=TOLERANCE, rtol=TOLERANCE)
    assert np.abs(out - network(x)).max() > 1e-4  # the tanh form really differs from erf's


def test_an_op_kind_without_onnx_form_is_refused_in_one_line():
    network = types.SimpleNamespace(
        ops=[
            {"name": "pose", "kind": "input", "inputs": [], "shape": [3]},
            {"name": "lstm", "kind": "lstm", "inputs": ["pose"]},
        ],
        weights={},
        n_inputs=3,
        n_outputs=3,
    )
    with pytest.raises(ValueError, match=r"^op 'lstm': kind 'lstm' has no ONNX form \(input, ") as caught:
        network_to_onnx(network)
    assert "\n" not in str(caught.value)

"""A NumpyNetwork's ops written as an ONNX graph, for robot code outside Python (onnxruntime).

The graph is built node by node from the same op list NumpyNetwork runs (``iklab.robot.network``),
with the ``onnx`` package's helper API; no TensorFlow is involved. tf2onnx 1.17 was tried first:
it cannot convert exact GELU from TensorFlow 2.21 (``tf.nn.gelu`` lowers to ``Erfc``, which it
has no ONNX rule for), while the op list is a small, already-validated description of every
network iklab builds.

The model: one input ``features`` (N, F) float32, the encoded pose (``iklab.core.encodings``, the
model's ``input_encoding``), one output ``outputs`` (N, outputs) float32, what the Keras network
gives. Opset 17 and IR version 8 (onnxruntime 1.13 on), so older runtimes on robots read it.
``metadata`` (the logged model's iklab metadata: robot, region, encodings) is stored as JSON in
the model's ``metadata_props`` under ``"iklab"``.

Each op kind becomes (tensors keep Keras' channels-last shapes, rows first):

- normalization: ``Sub``, ``Div`` by ``max(sqrt(variance), epsilon)`` as Keras computes it (in
  float32); inverted ``Mul``, ``Add``
- batch_norm: one scale and shift (``Mul``, ``Add``), folded into the Dense or Conv1D before it
  when that layer has no activation and feeds nothing else (models.py's ``batch_norm: before``)
- dense: ``Gemm`` (``MatMul`` without a bias); conv1d: ``Transpose`` to (N, C, L), ``Conv``
  with TF's SAME padding (the odd pad after), the activation, ``Transpose`` back
- activations: ``Relu``, ``LeakyRelu``, ``Elu``, ``Tanh``, ``Sigmoid``; exact gelu as
  ``0.5 x (1 + erf(x / sqrt 2))``, approximate gelu in its tanh form (both the patterns
  onnxruntime fuses into one Gelu kernel)
- dropout: nothing; reshape: ``Reshape`` (batch kept); flatten: ``Flatten``; add: ``Add``/``Sum``
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from iklab.robot.network import ACTIVATION_PARAMS, KINDS, NumpyNetwork

INPUT_NAME = "features"
OUTPUT_NAME = "outputs"
OPSET = 17  # Erf, Gemm, Conv, LeakyRelu, Elu: all older; 17 is read by onnxruntime >= 1.13
IR_VERSION = 8  # the IR version of opset 17; onnx 1.23 would write a newer one older runtimes refuse
METADATA_KEY = "iklab"  # metadata_props entry holding the model's iklab metadata as JSON


def network_to_onnx(network: NumpyNetwork, metadata: Mapping | None = None) -> onnx.ModelProto:
    """The ONNX model of ``network``'s ops and weights (checked by onnx's checker).

    An op kind or activation this writer does not know raises ValueError naming the op.
    """
    graph = _GraphBuilder(network.weights)
    ops = network.ops
    consumers: dict[str, list[str]] = {op["name"]: [] for op in ops}
    for op in ops:
        for source in op.get("inputs", []):
            consumers[source].append(op["name"])
    by_name = {op["name"]: op for op in ops}
    for op in ops:
        folded = None
        follower = consumers[op["name"]]
        if (
            op["kind"] in ("dense", "conv1d")
            and op.get("activation", "linear") == "linear"
            and len(follower) == 1
            and op["name"] != ops[-1]["name"]
            and by_name[follower[0]]["kind"] == "batch_norm"
        ):
            folded = by_name[follower[0]]
        graph.add(op, folded)
    model = graph.finish(ops[-1]["name"], network.n_inputs, network.n_outputs)
    if metadata is not None:
        helper.set_model_props(model, {METADATA_KEY: json.dumps(dict(metadata))})
    onnx.checker.check_model(model, full_check=True)
    return model


def save_onnx(network: NumpyNetwork, path: str | os.PathLike, metadata: Mapping | None = None) -> Path:
    """Write ``network_to_onnx(network, metadata)`` to ``path`` (one ``.onnx`` file)."""
    path = Path(path)
    onnx.save_model(network_to_onnx(network, metadata), path)
    return path


def _scale_shift(op: Mapping, weights: Mapping[str, np.ndarray], channels: int) -> tuple[np.ndarray, np.ndarray]:
    """A batch norm's inference form as x * s + t (float64), as NumpyNetwork computes it."""
    name, index = op["name"], 0
    gamma = beta = None
    if op["scale"]:
        gamma, index = weights[f"{name}/{index}"].astype(np.float64), index + 1
    if op["center"]:
        beta, index = weights[f"{name}/{index}"].astype(np.float64), index + 1
    mean = weights[f"{name}/{index}"].astype(np.float64)
    variance = weights[f"{name}/{index + 1}"].astype(np.float64)
    s = 1.0 / np.sqrt(variance + float(op["epsilon"]))
    if gamma is not None:
        s = s * gamma
    t = -mean * s if beta is None else beta - mean * s
    return np.broadcast_to(s, (channels,)), np.broadcast_to(t, (channels,))


class _GraphBuilder:
    """Nodes and initializers, and each op's output tensor and shape (without the batch axis)."""

    def __init__(self, weights: Mapping[str, np.ndarray]) -> None:
        self.weights = weights
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.tensor: dict[str, str] = {}  # op name -> the tensor holding its output
        self.shape: dict[str, tuple[int, ...]] = {}
        self._count = 0

    def _name(self, base: str) -> str:
        self._count += 1
        return f"{base}:{self._count}"

    def const(self, base: str, value: np.ndarray, dtype: type = np.float32) -> str:
        name = self._name(base)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value, dtype=dtype), name))
        return name

    def node(self, op_type: str, inputs: list[str], base: str, **attributes: object) -> str:
        output = self._name(base)
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=output, **attributes))
        return output

    def weight(self, op: Mapping, index: int) -> np.ndarray:
        return self.weights[f"{op['name']}/{index}"]

    def add(self, op: Mapping, folded_bn: Mapping | None) -> None:
        name, kind = op["name"], op["kind"]
        if kind not in KINDS:
            raise ValueError(f"op {name!r}: kind {kind!r} has no ONNX form ({', '.join(KINDS)})")
        if kind == "input":
            self.tensor[name], self.shape[name] = INPUT_NAME, (int(op["shape"][0]),)
            return
        sources = op["inputs"]
        x, shape = self.tensor[sources[0]], self.shape[sources[0]]
        if kind == "dropout":
            y = x
        elif kind == "normalization":
            y = self._normalization(op, x, shape[-1])
        elif kind == "batch_norm":
            if name in self.tensor:  # folded into the layer before it
                return
            s, t = _scale_shift(op, self.weights, shape[-1])
            y = self.node(
                "Add", [self.node("Mul", [x, self.const(f"{name}/scale", s)], name), self.const(name, t)], name
            )
        elif kind == "dense":
            y, shape = self._dense(op, x, folded_bn), (int(op["units"]),)
        elif kind == "conv1d":
            y, shape = self._conv1d(op, x, shape, folded_bn)
        elif kind == "activation":
            y = self._activation(op, x)
        elif kind == "reshape":
            y, shape = self._reshape(op, x, shape)
        elif kind == "flatten":
            y, shape = self.node("Flatten", [x], name, axis=1), (math.prod(shape),)
        else:  # add
            y = self.node("Add" if len(sources) == 2 else "Sum", [self.tensor[s] for s in sources], name)
        self.tensor[name], self.shape[name] = y, shape
        if folded_bn is not None:
            self.tensor[folded_bn["name"]], self.shape[folded_bn["name"]] = y, shape

    def _normalization(self, op: Mapping, x: str, channels: int) -> str:
        width = 1 if op.get("broadcast") else channels
        mean = np.broadcast_to(self.weight(op, 0).reshape(width), (channels,)).astype(np.float32)
        variance = np.broadcast_to(self.weight(op, 1).reshape(width), (channels,)).astype(np.float32)
        std = np.maximum(np.sqrt(variance), np.float32(op["epsilon"]))  # Keras' floor, in float32
        name = op["name"]
        if op["invert"]:
            return self.node(
                "Add", [self.node("Mul", [x, self.const(f"{name}/std", std)], name), self.const(name, mean)], name
            )
        return self.node(
            "Div", [self.node("Sub", [x, self.const(f"{name}/mean", mean)], name), self.const(name, std)], name
        )

    def _folded(
        self, op: Mapping, kernel: np.ndarray, bias: np.ndarray | None, bn: Mapping | None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """(kernel, bias) with a following batch norm's scale and shift in their last axis."""
        if bn is None:
            return kernel, bias
        s, t = _scale_shift(bn, self.weights, kernel.shape[-1])
        bias64 = t if bias is None else bias.astype(np.float64) * s + t
        return kernel.astype(np.float64) * s, bias64

    def _dense(self, op: Mapping, x: str, bn: Mapping | None) -> str:
        name = op["name"]
        if len(self.shape[op["inputs"][0]]) != 1:
            raise ValueError(
                f"op {name!r}: Dense on a tensor of shape {self.shape[op['inputs'][0]]} has no ONNX form here"
            )
        kernel, bias = self._folded(op, self.weight(op, 0), self.weight(op, 1) if op["use_bias"] else None, bn)
        if bias is None:
            y = self.node("MatMul", [x, self.const(f"{name}/kernel", kernel)], name)
        else:
            y = self.node("Gemm", [x, self.const(f"{name}/kernel", kernel), self.const(f"{name}/bias", bias)], name)
        return self._activation(op, y)

    def _conv1d(self, op: Mapping, x: str, shape: tuple[int, ...], bn: Mapping | None) -> tuple[str, tuple[int, ...]]:
        name = op["name"]
        if len(shape) != 2:
            raise ValueError(f"op {name!r}: Conv1D needs a (steps, channels) tensor, got shape {shape}")
        length, k, filters = shape[0], int(op["kernel_size"]), int(op["filters"])
        kernel, bias = self._folded(op, self.weight(op, 0), self.weight(op, 1) if op["use_bias"] else None, bn)
        if op["padding"] == "same":  # TF's SAME with stride 1: the odd extra pad goes after
            before = (k - 1) // 2
            after = k - 1 - before
        else:
            before = after = 0
        inputs = [
            self.node("Transpose", [x], name, perm=[0, 2, 1]),
            self.const(f"{name}/kernel", kernel.transpose(2, 1, 0)),
        ]
        if bias is not None:
            inputs.append(self.const(f"{name}/bias", bias))
        y = self.node("Conv", inputs, name, kernel_shape=[k], pads=[before, after], strides=[1], dilations=[1])
        y = self._activation(op, y)  # elementwise: before the transpose back, where Conv+Relu fuse
        return self.node("Transpose", [y], name, perm=[0, 2, 1]), (length + before + after - k + 1, filters)

    def _reshape(self, op: Mapping, x: str, shape: tuple[int, ...]) -> tuple[str, tuple[int, ...]]:
        size = math.prod(shape)
        target = [int(d) for d in op["target_shape"]]
        if -1 in target:
            target[target.index(-1)] = size // math.prod(d for d in target if d != -1)
        # 0 keeps the batch dimension (Reshape's allowzero=0)
        return self.node("Reshape", [x, self.const(f"{op['name']}/shape", [0, *target], np.int64)], op["name"]), tuple(
            target
        )

    def _activation(self, op: Mapping, x: str) -> str:
        name, act = op["name"], op.get("activation", "linear")
        if act not in ACTIVATION_PARAMS:
            raise ValueError(f"op {name!r}: activation {act!r} has no ONNX form ({', '.join(ACTIVATION_PARAMS)})")
        if act == "linear":
            return x
        simple = {"relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid"}
        if act in simple:
            return self.node(simple[act], [x], name)
        if act == "leaky_relu":  # tf.nn.leaky_relu: x, or slope * x below 0
            return self.node("LeakyRelu", [x], name, alpha=float(op["negative_slope"]))
        if act == "elu":
            return self.node("Elu", [x], name, alpha=float(op["alpha"]))
        half, one = self.const(f"{name}/half", 0.5), self.const(f"{name}/one", 1.0)
        if not op.get("approximate", False):  # 0.5 x (1 + erf(x / sqrt 2))
            erf = self.node("Erf", [self.node("Div", [x, self.const(f"{name}/sqrt2", math.sqrt(2.0))], name)], name)
        else:  # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
            cube = self.node("Pow", [x, self.const(f"{name}/three", 3.0)], name)
            inner = self.node("Add", [x, self.node("Mul", [cube, self.const(f"{name}/c", 0.044715)], name)], name)
            erf = self.node(
                "Tanh", [self.node("Mul", [inner, self.const(f"{name}/k", math.sqrt(2 / math.pi))], name)], name
            )
        return self.node("Mul", [self.node("Mul", [x, self.node("Add", [erf, one], name)], name), half], name)

    def finish(self, last: str, n_inputs: int, n_outputs: int) -> onnx.ModelProto:
        y = self.tensor[last]
        producer = next((node for node in self.nodes if y in node.output), None)
        if producer is None:  # the output is the input itself (nothing but dropout): copy it
            self.node("Identity", [y], OUTPUT_NAME)
            producer = self.nodes[-1]
            y = producer.output[0]
        producer.output[list(producer.output).index(y)] = OUTPUT_NAME
        for node in self.nodes:
            node.input[:] = [OUTPUT_NAME if name == y else name for name in node.input]
        graph = helper.make_graph(
            self.nodes,
            "iklab_network",
            [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", n_inputs])],
            [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", n_outputs])],
            initializer=self.initializers,
        )
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name="iklab",
            ir_version=IR_VERSION,
        )
        model.doc_string = "Encoded pose features (N, F) float32 in, the network's outputs (N, outputs) out."
        return model

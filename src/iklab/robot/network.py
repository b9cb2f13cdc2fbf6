"""A trained Keras network as plain NumPy: export once, run on the robot without TensorFlow.

``export_network(model)`` walks a functional (or Sequential) Keras 3 model and returns an op
list (JSON-able dicts in topological order, the last op is the output) and the weights as
float32 arrays keyed ``"<layer name>/<index>"`` (the layer's ``get_weights()`` order).
``NumpyNetwork(ops, weights)`` runs them in float32 with NumPy only; ``save``/``load`` keep
both in one ``.npz`` (the ops as JSON under ``"__ops__"``).

Op kinds and their fields besides ``name``, ``kind`` and ``inputs`` (weights in brackets):

- ``input``: ``shape`` ([F]: the network takes (N, F) rows)
- ``normalization``: ``invert``, ``epsilon``, ``broadcast`` (optional: one mean and variance for
  every channel) [mean, variance]: Keras' ``(x - mean) / maximum(sqrt(variance), epsilon)``,
  inverted ``mean + x * maximum(sqrt(variance), epsilon)``
- ``batch_norm``: ``epsilon``, ``center``, ``scale`` [gamma if scale, beta if center,
  moving_mean, moving_variance]: inference form ``(x - mean) * gamma / sqrt(var + eps) + beta``
- ``dense``: ``units``, ``use_bias``, activation fields [kernel (in, units), bias]
- ``conv1d``: ``filters``, ``kernel_size``, ``padding`` (same | valid), ``use_bias``,
  activation fields [kernel (k, in channels, filters), bias]; stride and dilation 1
- ``activation``: activation fields
- ``dropout``: ``rate`` (the identity at inference)
- ``reshape``: ``target_shape`` (may hold one -1); ``flatten``
- ``add``: two or more ``inputs``

Activation fields: ``activation`` (linear, relu, leaky_relu, elu, gelu, tanh, sigmoid) and,
where it has one, its parameter: ``negative_slope`` (leaky_relu), ``alpha`` (elu),
``approximate`` (gelu).

The forward pass is compiled at construction into a flat list of small steps: normalizations
and batch norms become scale/shift vectors, folded into a neighbouring Dense where nothing
branches; dropout, reshape and flatten vanish (tensors are kept as (N, features) rows in
Keras' channels-last order); a Conv1D on a short sequence becomes one banded matrix product,
a longer one an im2col gather of shifted windows and one product.

Robot side: NumPy, and numba for exact gelu's ``x erfc(x)`` (:func:`xerfc`: erfc to float32
resolution in compiled loops around numpy's SIMD exp, on all cores for large batches; SciPy's
``erfc`` took 70% of a 10,000-row pass, this 9.7 ms for 10,000 x 512 values here).
"""

from __future__ import annotations

import inspect
import json
import math
import os
import sys
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numba import njit, prange

from iklab.core.refine_kernel import quiet_threads, run_parallel

quiet_threads()

FORMAT = "iklab.network"  # the file format's name, written into every export: never changes
FORMAT_VERSION = 1
OPS_KEY = "__ops__"  # the npz entry holding the ops as JSON; weight keys always contain a "/"

KINDS = (
    "input",
    "normalization",
    "batch_norm",
    "dense",
    "conv1d",
    "activation",
    "dropout",
    "reshape",
    "flatten",
    "add",
)
# activation -> its parameter and the default used when the Keras function does not say
ACTIVATION_PARAMS: dict[str, dict[str, Any]] = {
    "linear": {},
    "relu": {},
    "leaky_relu": {"negative_slope": 0.2},
    "elu": {"alpha": 1.0},
    "gelu": {"approximate": False},
    "tanh": {},
    "sigmoid": {},
}

# A Conv1D whose banded (dense-equivalent) matrix costs at most this many times the im2col
# product's multiply-adds, and fits this many bytes, runs as one Dense-like matrix product:
# fewer steps, and a normalization before it folds in. Single-row latency is bound by reading
# the weights, so a larger band (a second conv layer with 64 channels) goes the im2col way.
_BANDED_MAX_RATIO = 4.0
_BANDED_MAX_BYTES = 256 * 2**10
# A scale/shift before a Dense is folded into its kernel and bias while |shift| <= this (in the
# normalized units the Dense sees); a larger shift is subtracted first, as Keras does, so the
# product does not cancel large terms.
_FOLD_SHIFT_LIMIT = 4.0

Step = Callable[[np.ndarray, list], np.ndarray]


# ----------------------------------------------------------------------------------- export


def export_network(model: Any) -> tuple[list[dict], dict[str, np.ndarray]]:
    """The ops (topological order, output last) and float32 weights of a Keras 3 model.

    ``model`` is a built functional or Sequential model with one input of shape (None, F) and
    one output; only its ``get_config()``, ``get_layer()`` and the layers' ``get_weights()``
    are used. A layer kind or option NumpyNetwork does not implement raises ValueError naming
    the layer.
    """
    config = model.get_config()
    entries = _layer_entries(config)
    ops: list[dict] = []
    weights: dict[str, np.ndarray] = {}
    for entry, inputs in entries:
        name = entry["name"]
        kind = entry["class_name"]
        layer_config = entry.get("config") or {}
        where = f"layer {name!r} ({kind})"
        layer = None if kind == "InputLayer" else model.get_layer(name)
        op, arrays = _export_layer(kind, layer_config, layer, where)
        op = {"name": name, "kind": op.pop("kind"), "inputs": list(inputs), **op}
        _check_arity(op, where)
        ops.append(op)
        for index, array in enumerate(arrays):
            weights[f"{name}/{index}"] = np.array(array, dtype=np.float32)
    return ops, weights


def _layer_entries(config: Mapping) -> list[tuple[dict, list[str]]]:
    """(layer entry with "name", input layer names) in topological order, the output last."""
    layers = config.get("layers")
    if not isinstance(layers, list) or not layers:
        raise ValueError("export_network needs a built functional or Sequential Keras model (no layers in its config)")
    if "input_layers" not in config:  # Sequential: a chain
        chain = []
        previous: list[str] = []
        for entry in layers:
            name = (entry.get("config") or {}).get("name")
            chain.append(({**entry, "name": name}, previous))
            previous = [name]
        if chain[0][0]["class_name"] != "InputLayer":
            raise ValueError("export_network needs a Sequential model built with keras.Input first")
        return chain
    by_name = {entry["name"]: entry for entry in layers}
    inputs_of = {entry["name"]: _inbound_names(entry) for entry in layers}
    (input_name,) = _single_endpoint(config["input_layers"], "input")
    (output_name,) = _single_endpoint(config["output_layers"], "output")
    order: list[str] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(name: str) -> None:
        stack = [(name, iter(inputs_of[name]))]
        state[name] = 1
        while stack:
            current, pending = stack[-1]
            for parent in pending:
                if parent not in by_name:
                    raise ValueError(f"layer {current!r} takes an unknown layer {parent!r}")
                if state.get(parent) == 1:
                    raise ValueError(f"layer {current!r} is in a cycle")
                if parent not in state:
                    state[parent] = 1
                    stack.append((parent, iter(inputs_of[parent])))
                    break
            else:
                stack.pop()
                state[current] = 2
                order.append(current)

    visit(output_name)
    if order[0] != input_name or by_name[input_name]["class_name"] != "InputLayer":
        raise ValueError(f"the model's output does not start from its input layer {input_name!r}")
    return [(by_name[name], inputs_of[name]) for name in order]


def _single_endpoint(value: Any, what: str) -> list[str]:
    """``["name", 0, 0]`` (one endpoint) -> ["name"]; several endpoints raise."""
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], list):
        value = value[0]
    if not (isinstance(value, list) and len(value) == 3 and isinstance(value[0], str)):
        raise ValueError(f"NumpyNetwork runs models with one {what}, the model has {value!r}")
    if value[1:] != [0, 0]:
        raise ValueError(f"model {what} {value!r}: only a layer's first call and output are supported")
    return [value[0]]


def _inbound_names(entry: Mapping) -> list[str]:
    name = entry["name"]
    nodes = entry.get("inbound_nodes") or []
    if len(nodes) > 1:
        raise ValueError(
            f"layer {name!r} ({entry['class_name']}) is called {len(nodes)} times; shared layers are not supported"
        )
    if not nodes:
        return []
    node = nodes[0]
    if list(_keras_tensors(node.get("kwargs", {}))):
        raise ValueError(f"layer {name!r} ({entry['class_name']}) takes tensors as keyword arguments, not supported")
    names = []
    for history in _keras_tensors(node.get("args", [])):
        parent, node_index, tensor_index = history
        if node_index != 0 or tensor_index != 0:
            raise ValueError(
                f"layer {name!r} ({entry['class_name']}) takes output {tensor_index} of call {node_index} "
                f"of {parent!r}; only single-output layers called once are supported"
            )
        names.append(parent)
    return names


def _keras_tensors(value: Any) -> Iterator[list]:
    """The ``keras_history`` of every serialized Keras tensor in a (nested) args structure."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            yield list(value["config"]["keras_history"])
        else:
            for item in value.values():
                yield from _keras_tensors(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _keras_tensors(item)


def _export_layer(kind: str, config: Mapping, layer: Any, where: str) -> tuple[dict, list[np.ndarray]]:
    """(op fields with "kind", weights in the op's order) for one layer."""
    if kind != "InputLayer":
        _check_float32(config, where)
    if kind == "InputLayer":
        shape = config.get("batch_shape") or config.get("batch_input_shape")
        if (
            not shape
            or len(shape) != 2
            or not isinstance(shape[1], int)
            or config.get("sparse")
            or config.get("ragged")
        ):
            raise ValueError(f"{where}: the input must be dense rows of shape (None, F), got {shape!r}")
        return {"kind": "input", "shape": [int(shape[1])]}, []
    named = _named_weights(layer)
    if kind == "Normalization":
        if _axis(config.get("axis")) != -1:
            raise ValueError(f"{where}: only axis=-1 is supported, got axis={config.get('axis')!r}")
        if config.get("mean") is not None:  # passed explicitly: not a weight
            mean, variance = config["mean"], config["variance"]
        elif "mean" in named and "variance" in named:
            mean, variance = named["mean"], named["variance"]
        else:
            raise ValueError(f"{where}: has no mean and variance (adapt it first)")
        mean, variance = np.asarray(mean, np.float32), np.asarray(variance, np.float32)
        if mean.ndim > 1 or mean.shape != variance.shape:
            raise ValueError(
                f"{where}: mean and variance must be vectors of one shape, got {mean.shape}, {variance.shape}"
            )
        op = {"kind": "normalization", "invert": bool(config.get("invert", False)), "epsilon": _keras_epsilon()}
        if mean.size == 1:
            op["broadcast"] = True
        return op, [mean.reshape(-1), variance.reshape(-1)]
    if kind == "BatchNormalization":
        if _axis(config.get("axis")) != -1:
            raise ValueError(f"{where}: only axis=-1 is supported, got axis={config.get('axis')!r}")
        center, scale = bool(config.get("center", True)), bool(config.get("scale", True))
        names = (["gamma"] if scale else []) + (["beta"] if center else []) + ["moving_mean", "moving_variance"]
        _require_weights(named, names, where)
        op = {"kind": "batch_norm", "epsilon": float(config["epsilon"]), "center": center, "scale": scale}
        return op, [named[n] for n in names]
    if kind == "Dense":
        _check_plain_kernel(config, where)
        use_bias = bool(config.get("use_bias", True))
        names = ["kernel", "bias"] if use_bias else ["kernel"]
        _require_weights(named, names, where)
        op = {"kind": "dense", "units": int(config["units"]), "use_bias": use_bias}
        op.update(_activation_fields(config.get("activation"), getattr(layer, "activation", None), where))
        return op, [named[n] for n in names]
    if kind == "Conv1D":
        _check_plain_kernel(config, where)
        for option, wanted in (("strides", 1), ("dilation_rate", 1), ("groups", 1)):
            if _single_int(config.get(option, wanted)) != wanted:
                raise ValueError(f"{where}: {option}={config.get(option)!r} is not supported (only {wanted})")
        if config.get("padding") not in ("same", "valid"):
            raise ValueError(f"{where}: padding={config.get('padding')!r} is not supported (same or valid)")
        if config.get("data_format", "channels_last") != "channels_last":
            raise ValueError(f"{where}: data_format={config.get('data_format')!r} is not supported (channels_last)")
        use_bias = bool(config.get("use_bias", True))
        names = ["kernel", "bias"] if use_bias else ["kernel"]
        _require_weights(named, names, where)
        op = {
            "kind": "conv1d",
            "filters": int(config["filters"]),
            "kernel_size": _single_int(config["kernel_size"]),
            "padding": config["padding"],
            "use_bias": use_bias,
        }
        op.update(_activation_fields(config.get("activation"), getattr(layer, "activation", None), where))
        return op, [named[n] for n in names]
    if kind == "Activation":
        fields = _activation_fields(config.get("activation"), getattr(layer, "activation", None), where)
        return {"kind": "activation", **fields}, []
    if kind == "Dropout":
        return {"kind": "dropout", "rate": float(config.get("rate", 0.0))}, []
    if kind == "Reshape":
        return {
            "kind": "reshape",
            "target_shape": [int(d) if d is not None else -1 for d in config["target_shape"]],
        }, []
    if kind == "Flatten":
        if config.get("data_format", "channels_last") != "channels_last":
            raise ValueError(f"{where}: data_format={config.get('data_format')!r} is not supported (channels_last)")
        return {"kind": "flatten"}, []
    if kind == "Add":
        return {"kind": "add"}, []
    raise ValueError(f"{where}: layer kind {kind} is not supported by NumpyNetwork")


def _check_arity(op: dict, where: str) -> None:
    wanted = 0 if op["kind"] == "input" else 1
    if op["kind"] == "add":
        if len(op["inputs"]) < 2:
            raise ValueError(f"{where}: Add needs two or more inputs, got {op['inputs']}")
    elif len(op["inputs"]) != wanted:
        raise ValueError(f"{where}: takes {len(op['inputs'])} inputs, expected {wanted}")


def _check_float32(config: Mapping, where: str) -> None:
    dtype = config.get("dtype")
    if isinstance(dtype, dict):
        dtype = (dtype.get("config") or {}).get("name")
    if dtype not in (None, "float32"):
        raise ValueError(f"{where}: dtype policy {dtype!r} is not supported (float32 only)")


def _check_plain_kernel(config: Mapping, where: str) -> None:
    if config.get("lora_rank"):
        raise ValueError(f"{where}: LoRA kernels are not supported")
    if config.get("quantization_config") is not None:
        raise ValueError(f"{where}: quantized kernels are not supported")


def _axis(axis: Any) -> Any:
    if isinstance(axis, (list, tuple)) and len(axis) == 1:
        return axis[0]
    return axis


def _single_int(value: Any) -> int:
    if isinstance(value, (list, tuple)):
        if len(value) != 1:
            return -1
        value = value[0]
    return int(value)


def _named_weights(layer: Any) -> dict[str, np.ndarray]:
    """The layer's weights by their short names (``kernel``, ``gamma``, ``mean``, ...)."""
    if layer is None:
        return {}
    values = layer.get_weights()
    names = [str(getattr(w, "name", "")).split("/")[-1].split(":")[0] for w in layer.weights]
    return dict(zip(names, values, strict=True))


def _require_weights(named: Mapping, names: list[str], where: str) -> None:
    missing = [n for n in names if n not in named]
    if missing:
        raise ValueError(f"{where}: weights {missing} not found (it has {sorted(named)}); is the model built?")


def _activation_fields(name: Any, function: Any, where: str) -> dict[str, Any]:
    """``{"activation": name, <its parameter>: <Keras' default>}`` for a built-in activation."""
    if not isinstance(name, str) or name not in ACTIVATION_PARAMS:
        raise ValueError(f"{where}: activation {name!r} is not supported ({', '.join(ACTIVATION_PARAMS)})")
    fields: dict[str, Any] = {"activation": name}
    for param, fallback in ACTIVATION_PARAMS[name].items():
        value = fallback
        try:
            default = inspect.signature(function).parameters[param].default
        except (TypeError, ValueError, KeyError):
            default = inspect.Parameter.empty
        if default is not inspect.Parameter.empty:
            value = default
        fields[param] = type(fallback)(value)
    return fields


def _keras_epsilon() -> float:
    """``keras.config.epsilon()`` (Normalization's floor on the standard deviation), read
    from the Keras the caller already imported; 1e-7, Keras' default, otherwise."""
    keras = sys.modules.get("keras")
    try:
        return float(keras.config.epsilon())
    except AttributeError:
        return 1e-7


# ---------------------------------------------------------------------------- the network


class NumpyNetwork:
    """An exported network run in float32 with NumPy: ``net(x)`` maps (N, F) to (N, outputs)."""

    def __init__(self, ops: Sequence[Mapping], weights: Mapping[str, np.ndarray]) -> None:
        try:  # a deep copy, and what save() will write
            self.ops: list[dict] = json.loads(json.dumps(list(ops)))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"ops must be JSON-able: {exc}") from None
        self.weights: dict[str, np.ndarray] = {str(k): np.asarray(v, dtype=np.float32) for k, v in weights.items()}
        if OPS_KEY in self.weights:
            raise ValueError(f"a weight may not be called {OPS_KEY!r}")
        nodes, output, self.n_inputs = _translate(self.ops, self.weights)
        nodes = _simplify(nodes, output)
        self.n_outputs: int = nodes[-1].size
        self._steps, self._n_registers = _compile(nodes)
        self.n_steps = len(self._steps)

    @classmethod
    def from_model(cls, model: Any) -> NumpyNetwork:
        return cls(*export_network(model))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.n_inputs:
            raise ValueError(f"expected rows of shape (N, {self.n_inputs}), got {x.shape}")
        registers = [None] * self._n_registers
        for step in self._steps:
            x = step(x, registers)
        return x

    def __repr__(self) -> str:
        return f"NumpyNetwork({len(self.ops)} ops, {self.n_inputs} -> {self.n_outputs}, {self.n_steps} steps)"

    def save(self, path: str | os.PathLike) -> Path:
        """Write one ``.npz`` (ops as JSON under ``"__ops__"``, the weights under their keys), atomically."""
        path = Path(path)
        header = json.dumps({"format": FORMAT, "version": FORMAT_VERSION, "ops": self.ops})
        arrays = {OPS_KEY: np.array(header), **self.weights}
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as file:
                np.savez(file, **arrays)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> NumpyNetwork:
        """The network ``save`` wrote; ValueError if ``path`` is not such a file."""
        path = Path(path)
        try:
            data = np.load(path, allow_pickle=False)
        except (ValueError, EOFError, OSError, zipfile.BadZipFile) as exc:
            if isinstance(exc, FileNotFoundError):
                raise
            # not numpy's words (they suggest allow_pickle, which would run code from the file)
            raise ValueError(f"{path}: not a NumpyNetwork export (not an .npz archive)") from None
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError(f"{path}: not a NumpyNetwork export (a single array, not an .npz)")
        with data:
            if OPS_KEY not in data.files:
                raise ValueError(f"{path}: not a NumpyNetwork export (no {OPS_KEY!r} entry)")
            try:
                header = data[OPS_KEY]
                weights = {key: data[key] for key in data.files if key != OPS_KEY}
            except (ValueError, OSError, zipfile.BadZipFile) as exc:
                raise ValueError(f"{path}: not a NumpyNetwork export ({exc})") from None
        try:
            meta = json.loads(str(header[()])) if header.ndim == 0 and header.dtype.kind == "U" else None
        except json.JSONDecodeError:
            meta = None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or not isinstance(meta.get("ops"), list):
            raise ValueError(f"{path}: not a NumpyNetwork export ({OPS_KEY!r} is not its JSON header)")
        if meta.get("version") != FORMAT_VERSION:
            raise ValueError(
                f"{path}: NumpyNetwork format version {meta.get('version')!r}, this code reads {FORMAT_VERSION}"
            )
        return cls(meta["ops"], weights)


# ------------------------------------------------------------- intermediate form and folding


class _Node:
    """One step of the compiled pass on (N, size) rows. Math in float64 until compiled.

    kinds: input; linear (x - shift) @ w + b; conv (im2col); affine x * s + t; act; add.
    """

    __slots__ = ("kind", "inputs", "size", "w", "b", "shift", "s", "t", "act", "param", "conv")

    def __init__(self, kind: str, inputs: list[_Node], size: int, **fields: Any) -> None:
        self.kind = kind
        self.inputs = inputs
        self.size = size
        self.w = self.b = self.shift = self.s = self.t = self.param = self.conv = None
        self.act = ""
        for key, value in fields.items():
            setattr(self, key, value)


def _translate(ops: list[dict], weights: dict[str, np.ndarray]) -> tuple[list[_Node], _Node, int]:
    """Ops -> nodes in order; every tensor kept as rows of its channels-last flattened values."""
    if not ops or not isinstance(ops, list) or any(not isinstance(op, dict) for op in ops):
        raise ValueError("ops must be a non-empty list of dicts")
    nodes: list[_Node] = []
    values: dict[str, tuple[_Node, tuple[int, ...]]] = {}  # op name -> (node, shape without batch)
    used: set[str] = set()

    def weight(name: str, index: int, shape: tuple[int, ...]) -> np.ndarray:
        key = f"{name}/{index}"
        if key not in weights:
            raise ValueError(f"op {name!r}: weight {key!r} is missing")
        array = weights[key]
        if array.shape != shape:
            raise ValueError(f"op {name!r}: weight {key!r} has shape {array.shape}, expected {shape}")
        used.add(key)
        return array.astype(np.float64)

    n_inputs = 0
    for position, op in enumerate(ops):
        name, kind = op.get("name"), op.get("kind")
        if not isinstance(name, str) or name in values:
            raise ValueError(f"op {position}: name {name!r} is missing or repeated")
        if kind not in KINDS:
            raise ValueError(f"op {name!r}: kind {kind!r} is not supported ({', '.join(KINDS)})")
        inputs = op.get("inputs", [])
        if not isinstance(inputs, list) or any(i not in values for i in inputs):
            raise ValueError(f"op {name!r}: inputs {inputs!r} must name earlier ops")
        if (kind == "input") != (position == 0):
            raise ValueError(f"op {name!r}: the first op, and only it, must be the input")
        try:
            if kind == "input":
                if inputs or len(op["shape"]) != 1:
                    raise ValueError(f"the input takes rows: shape [F], got {op['shape']!r}")
                n_inputs = int(op["shape"][0])
                node = _Node("input", [], n_inputs)
                nodes.append(node)
                values[name] = (node, (n_inputs,))
                continue
            if kind == "add":
                sources = [values[i] for i in inputs]
                shapes = {shape for _, shape in sources}
                if len(sources) < 2 or len(shapes) != 1:
                    raise ValueError(f"add needs two or more inputs of one shape, got {[s for _, s in sources]}")
                node = _Node("add", [n for n, _ in sources], sources[0][0].size)
                nodes.append(node)
                values[name] = (node, sources[0][1])
                continue
            if len(inputs) != 1:
                raise ValueError(f"takes one input, got {inputs!r}")
            source, shape = values[inputs[0]]
            values[name] = _translate_one(op, kind, source, shape, nodes, lambda i, s, n=name: weight(n, i, s))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"op {name!r} ({kind}): missing or malformed field {exc}") from None
        except ValueError as exc:
            if str(exc).startswith("op "):
                raise
            raise ValueError(f"op {name!r} ({kind}): {exc}") from None
    unused = sorted(set(weights) - used)
    if unused:
        raise ValueError(f"weights {unused} belong to no op")
    output, shape = values[ops[-1]["name"]]
    if len(shape) != 1:
        raise ValueError(f"the last op must give rows (N, outputs), it gives shape {shape}")
    return nodes, output, n_inputs


def _translate_one(
    op: dict,
    kind: str,
    source: _Node,
    shape: tuple[int, ...],
    nodes: list[_Node],
    weight: Callable[[int, tuple[int, ...]], np.ndarray],
) -> tuple[_Node, tuple[int, ...]]:
    size = source.size
    if kind in ("dropout",):
        return source, shape
    if kind == "flatten":
        return source, (size,)
    if kind == "reshape":
        target = [int(d) for d in op["target_shape"]]
        if target.count(-1) > 1 or any(d == 0 or d < -1 for d in target):
            raise ValueError(f"target_shape {target} is not valid")
        if -1 in target:
            known = math.prod(d for d in target if d != -1)
            target[target.index(-1)] = size // known if known and size % known == 0 else -1
        if math.prod(target) != size or min(target) < 1:
            raise ValueError(f"cannot reshape {shape} to {op['target_shape']}")
        return source, tuple(target)
    channels = shape[-1]
    repeat = size // channels
    if kind == "normalization":
        width = 1 if op.get("broadcast") else channels  # one mean and variance for every channel
        mean = np.broadcast_to(weight(0, (width,)), (channels,)).astype(np.float32)
        variance = np.broadcast_to(weight(1, (width,)), (channels,)).astype(np.float32)
        std = np.maximum(np.sqrt(variance), np.float32(op["epsilon"])).astype(np.float64)  # Keras, in float32
        if op["invert"]:
            s, t = std, mean.astype(np.float64)
        else:
            s, t = 1.0 / std, -mean / std
        node = _Node("affine", [source], size, s=np.tile(s, repeat), t=np.tile(t, repeat))
        nodes.append(node)
        return node, shape
    if kind == "batch_norm":
        index = 0
        gamma = beta = None
        if op["scale"]:
            gamma, index = weight(index, (channels,)), index + 1
        if op["center"]:
            beta, index = weight(index, (channels,)), index + 1
        mean, variance = weight(index, (channels,)), weight(index + 1, (channels,))
        inv = 1.0 / np.sqrt(variance + float(op["epsilon"]))  # tf.nn.batch_normalization
        s = inv if gamma is None else inv * gamma
        t = -mean * s if beta is None else beta - mean * s
        node = _Node("affine", [source], size, s=np.tile(s, repeat), t=np.tile(t, repeat))
        nodes.append(node)
        return node, shape
    if kind == "activation":
        return _activation_nodes(op, source, nodes), shape
    if kind == "dense":
        if len(shape) != 1:
            raise ValueError(f"Dense on a tensor of shape {shape} (not rows) is not supported")
        units = int(op["units"])
        w = weight(0, (size, units))
        b = weight(1, (units,)) if op["use_bias"] else None
        node = _Node("linear", [source], units, w=w, b=b)
        nodes.append(node)
        return _activation_nodes(op, node, nodes), (units,)
    if kind == "conv1d":
        if len(shape) != 2:
            raise ValueError(f"Conv1D needs a (steps, channels) tensor, got shape {shape}")
        length, c_in = shape
        k, filters = int(op["kernel_size"]), int(op["filters"])
        w = weight(0, (k, c_in, filters))
        b = weight(1, (filters,)) if op["use_bias"] else None
        if op["padding"] == "same":  # TF's SAME with stride 1: the odd extra pad goes after
            before = (k - 1) // 2
            after = k - 1 - before
        elif op["padding"] == "valid":
            before = after = 0
        else:
            raise ValueError(f"padding {op['padding']!r} is not supported (same or valid)")
        out_length = length + before + after - k + 1
        if out_length < 1:
            raise ValueError(f"kernel size {k} is longer than the sequence ({length})")
        node = _conv_node(source, w, b, length, c_in, out_length, before, after)
        nodes.append(node)
        return _activation_nodes(op, node, nodes), (out_length, filters)
    raise ValueError(f"kind {kind!r} is not supported")


def _conv_node(
    source: _Node, w: np.ndarray, b: np.ndarray | None, length: int, c_in: int, out_length: int, before: int, after: int
) -> _Node:
    """A banded linear node (short sequences) or an im2col conv node."""
    k, _, filters = w.shape
    banded_size = length * c_in * out_length * filters
    if banded_size <= _BANDED_MAX_RATIO * out_length * k * c_in * filters and banded_size * 4 <= _BANDED_MAX_BYTES:
        band = np.zeros((length, c_in, out_length, filters))
        for p in range(out_length):
            for j in range(k):
                q = p + j - before
                if 0 <= q < length:
                    band[q, :, p, :] = w[j]
        bias = None if b is None else np.tile(b, out_length)
        return _Node(
            "linear", [source], out_length * filters, w=band.reshape(length * c_in, out_length * filters), b=bias
        )
    conv = {"k": k, "c_in": c_in, "length": length, "out_length": out_length, "before": before, "after": after}
    return _Node("conv", [source], out_length * filters, w=w.reshape(k * c_in, filters), b=b, conv=conv)


def _activation_nodes(op: dict, source: _Node, nodes: list[_Node]) -> _Node:
    """The activation as nodes after ``source``: constant scales around it fold into neighbours."""
    name = op.get("activation", "linear")
    if name not in ACTIVATION_PARAMS:
        raise ValueError(f"activation {name!r} is not supported ({', '.join(ACTIVATION_PARAMS)})")
    size = source.size

    def add(node: _Node) -> _Node:
        nodes.append(node)
        return node

    def scale(node: _Node, s: float, t: float | None = None) -> _Node:
        return add(_Node("affine", [node], size, s=np.full(size, s), t=None if t is None else np.full(size, t)))

    if name == "linear":
        return source
    if name == "gelu" and not op.get("approximate", False):
        # 0.5 x erfc(-x / sqrt 2) (tf.nn.gelu's exact form) = -1/sqrt2 * v erfc(v) with v = -x / sqrt2
        c = -1.0 / math.sqrt(2.0)
        return scale(add(_Node("act", [scale(source, c)], size, act="xerfc")), c)
    if name == "gelu":
        # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        return scale(add(_Node("act", [source], size, act="gelu_tanh")), 0.5)
    if name == "sigmoid":
        # 1 / (1 + exp(-x)) = 0.5 tanh(x / 2) + 0.5
        return scale(add(_Node("act", [scale(source, 0.5)], size, act="tanh")), 0.5, 0.5)
    param = None
    if name == "leaky_relu":
        param = float(op["negative_slope"])
    elif name == "elu":
        param = float(op["alpha"])
    return add(_Node("act", [source], size, act=name, param=param))


def _users(nodes: list[_Node]) -> dict[int, list[_Node]]:
    users: dict[int, list[_Node]] = {id(node): [] for node in nodes}
    for node in nodes:
        for source in node.inputs:
            users[id(source)].append(node)
    return users


def _simplify(nodes: list[_Node], output: _Node) -> list[_Node]:
    """Fold scale/shift nodes into each other and into neighbouring linear nodes; drop the dead.

    Returns the live nodes in order, the output last.
    """
    nodes = _live(nodes, output)
    while True:
        users = _users(nodes)
        change = None
        for node in nodes:
            change = _fold_once(node, users, output)
            if change:
                break
        if not change:
            return nodes
        removed, replacement = change
        for node in nodes:
            node.inputs = [replacement if source is removed else source for source in node.inputs]
        if output is removed:
            output = replacement
        nodes = _live(nodes, output)


def _fold_once(node: _Node, users: dict[int, list[_Node]], output: _Node) -> tuple[_Node, _Node] | None:
    """One folding around ``node``: (the node that disappears, what replaces it), or None."""
    if node.kind == "affine":
        source = node.inputs[0]
        alone = len(users[id(source)]) == 1 and source is not output
        if np.all(node.s == 1.0) and (node.t is None or np.all(node.t == 0.0)):
            return node, source
        if alone and source.kind == "affine":  # affine after affine
            node.t = _shift(source.t, node.s, node.t)
            node.s = source.s * node.s
            node.inputs = list(source.inputs)
            return source, node  # nothing points at source but node
        if alone and source.kind == "linear":  # affine after a linear: into its columns
            source.w = source.w * node.s
            source.b = _shift(source.b, node.s, node.t)
            return node, source
        if alone and source.kind == "conv":
            out_length = source.conv["out_length"]
            s = node.s.reshape(out_length, -1)
            t = np.zeros_like(s) if node.t is None else node.t.reshape(out_length, -1)
            if np.all(s == s[0]) and np.all(t == t[0]):  # the same per channel at every step
                source.w = source.w * s[0]
                source.b = _shift(source.b, s[0], t[0])
                return node, source
        return None
    if node.kind == "conv":  # a scale (no shift: the zero padding stays zero) per input channel
        source = node.inputs[0]
        if source.kind != "affine" or len(users[id(source)]) != 1:
            return None
        if source.t is not None and np.any(source.t != 0.0):
            return None
        s = source.s.reshape(node.conv["length"], node.conv["c_in"])
        if not np.all(s == s[0]):
            return None
        node.w = np.tile(s[0], node.conv["k"])[:, None] * node.w
        node.inputs = list(source.inputs)
        return source, node
    if node.kind == "linear" and node.shift is None:
        source = node.inputs[0]
        if source.kind != "affine" or len(users[id(source)]) != 1:
            return None
        s, t = source.s, source.t
        if t is None or np.max(np.abs(t)) <= _FOLD_SHIFT_LIMIT:
            if t is not None:
                bias = t @ node.w
                node.b = bias if node.b is None else node.b + bias
            node.w = s[:, None] * node.w
        elif np.all(s != 0.0):  # (x * s + t) @ w = (x - (-t / s)) @ (s w): Keras' subtraction first
            node.shift = -t / s
            node.w = s[:, None] * node.w
        else:
            return None
        node.inputs = list(source.inputs)
        return source, node
    return None


def _shift(b: np.ndarray | None, s: np.ndarray, t: np.ndarray | None) -> np.ndarray | None:
    """b * s + t with absent terms treated as zero (None when both are absent)."""
    if b is None:
        return None if t is None else t.copy()
    return b * s if t is None else b * s + t


def _live(nodes: list[_Node], output: _Node) -> list[_Node]:
    """The nodes ``output`` depends on, in their order, ``output`` last."""
    needed = {id(output)}
    for node in reversed(nodes):
        if id(node) in needed:
            needed.update(id(source) for source in node.inputs)
    live = [node for node in nodes if id(node) in needed]
    if live[-1] is not output:  # a folded node reused an earlier slot
        live.remove(output)
        live.append(output)
    return live


# -------------------------------------------------------------------------------- compiling


def _compile(nodes: list[_Node]) -> tuple[list[Step], int]:
    """Steps ``x = step(x, registers)``; values used out of turn wait in registers."""
    users = _users(nodes)
    position = {id(node): i for i, node in enumerate(nodes)}
    registers: dict[int, int] = {}
    for i, node in enumerate(nodes):
        for j, source in enumerate(node.inputs):
            if not (j == _primary(node, nodes, i) and position[id(source)] == i - 1):
                registers.setdefault(id(source), len(registers))
    steps: list[Step] = []
    first = nodes[0]
    if id(first) in registers:
        steps.append(_save(registers[id(first)]))
    for i, node in enumerate(nodes[1:], start=1):
        primary = _primary(node, nodes, i)
        source = node.inputs[primary]
        if position[id(source)] != i - 1:
            steps.append(_load(registers[id(source)]))
        # in place only on a value this pass made and nothing else reads
        own = source.kind != "input" and len(users[id(source)]) == 1
        others = [registers[id(s)] for j, s in enumerate(node.inputs) if j != primary]
        steps.append(_step(node, own, others))
        if id(node) in registers:
            steps.append(_save(registers[id(node)]))
    return steps, len(registers)


def _primary(node: _Node, nodes: list[_Node], i: int) -> int:
    """Which input flows in as ``x``: for an add, the one computed just before, if any."""
    if node.kind == "add" and i > 0:
        for j, source in enumerate(node.inputs):
            if source is nodes[i - 1]:
                return j
    return 0


def _save(index: int) -> Step:
    def save(x: np.ndarray, registers: list) -> np.ndarray:
        registers[index] = x
        return x

    return save


def _load(index: int) -> Step:
    def load(x: np.ndarray, registers: list) -> np.ndarray:
        return registers[index]

    return load


def _f32(array: np.ndarray | None) -> np.ndarray | None:
    return None if array is None else np.ascontiguousarray(array, dtype=np.float32)


def _step(node: _Node, own: bool, others: list[int]) -> Step:
    kind = node.kind
    if kind == "linear":
        return _linear_step(_f32(node.w), _f32(node.b), _f32(node.shift))
    if kind == "conv":
        return _conv_step(_f32(node.w), _f32(node.b), node.conv)
    if kind == "affine":
        return _affine_step(_f32(node.s), _f32(node.t), own)
    if kind == "act":
        return _act_step(node.act, node.param, own)
    if kind == "add":
        return _add_step(others, own)
    raise AssertionError(kind)


def _linear_step(w: np.ndarray, b: np.ndarray | None, shift: np.ndarray | None) -> Step:
    matmul = np.matmul
    if shift is not None:
        if b is None:
            return lambda x, r: matmul(x - shift, w)

        def shifted(x: np.ndarray, r: list) -> np.ndarray:
            y = matmul(x - shift, w)
            y += b
            return y

        return shifted
    if b is None:
        return lambda x, r: matmul(x, w)

    def linear(x: np.ndarray, r: list) -> np.ndarray:
        y = matmul(x, w)
        y += b
        return y

    return linear


def _conv_step(w: np.ndarray, b: np.ndarray | None, conv: dict) -> Step:
    """im2col: rows of k consecutive steps (k * c_in contiguous values each) gathered, one product."""
    k, c_in, length, out_length = conv["k"], conv["c_in"], conv["length"], conv["out_length"]
    before, after = conv["before"], conv["after"]
    padded = (length + before + after) * c_in
    lo, hi = before * c_in, (before + length) * c_in
    window = k * c_in
    index = (np.arange(out_length)[:, None] * c_in + np.arange(window)[None, :]).ravel()
    filters = w.shape[1]
    take, matmul, zeros, float32 = np.take, np.matmul, np.zeros, np.float32
    pad = before or after

    def conv1d(x: np.ndarray, r: list) -> np.ndarray:
        n = x.shape[0]
        if pad:
            xp = zeros((n, padded), float32)
            xp[:, lo:hi] = x
            x = xp
        y = matmul(take(x, index, axis=1).reshape(n * out_length, window), w)
        if b is not None:
            y += b
        return y.reshape(n, out_length * filters)

    return conv1d


def _affine_step(s: np.ndarray, t: np.ndarray | None, own: bool) -> Step:
    multiply, add = np.multiply, np.add
    if t is None:
        if own:
            return lambda x, r: multiply(x, s, out=x)
        return lambda x, r: multiply(x, s)
    if np.all(s == 1.0):
        if own:
            return lambda x, r: add(x, t, out=x)
        return lambda x, r: add(x, t)

    def affine(x: np.ndarray, r: list) -> np.ndarray:
        y = multiply(x, s, out=x) if own else multiply(x, s)
        y += t
        return y

    return affine


def _act_step(act: str, param: float | None, own: bool) -> Step:
    def out(x: np.ndarray) -> np.ndarray | None:
        return x if own else None

    zero = np.float32(0.0)  # a NumPy scalar is a little quicker in a ufunc than a Python float
    if act == "relu":
        maximum = np.maximum
        if own:
            return lambda x, r: maximum(x, zero, out=x)
        return lambda x, r: maximum(x, zero)
    if act == "tanh":
        tanh = np.tanh
        if own:
            return lambda x, r: tanh(x, out=x)
        return lambda x, r: tanh(x)
    if act == "leaky_relu":
        slope = np.float32(param)
        if 0.0 <= param <= 1.0:  # tf.nn.leaky_relu: max(x, slope x)
            maximum = np.maximum
            return lambda x, r: maximum(x, x * slope, out=out(x))
        where = np.where
        return lambda x, r: where(x > 0, x, x * slope)
    if act == "elu":
        alpha = np.float32(param)
        minimum, maximum, expm1 = np.minimum, np.maximum, np.expm1

        def elu(x: np.ndarray, r: list) -> np.ndarray:
            negative = minimum(x, zero)
            expm1(negative, out=negative)
            if alpha != 1.0:
                negative *= alpha
            y = maximum(x, zero, out=out(x))
            y += negative
            return y

        return elu
    if act == "xerfc":  # v erfc(v): exact gelu between two folded scales
        return lambda x, r: xerfc(x)
    if act == "gelu_tanh":  # x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), times 0.5 folded after
        c = np.float32(math.sqrt(2.0 / math.pi))
        c3 = np.float32(math.sqrt(2.0 / math.pi) * 0.044715)
        tanh = np.tanh

        def gelu_tanh(x: np.ndarray, r: list) -> np.ndarray:
            y = x * x
            y *= c3
            y += c
            y *= x
            tanh(y, out=y)
            y += 1.0
            y *= x
            return y

        return gelu_tanh
    raise AssertionError(act)


def _add_step(others: list[int], own: bool) -> Step:
    add = np.add
    if len(others) == 1:
        (index,) = others
        if own:
            return lambda x, r: add(x, r[index], out=x)
        return lambda x, r: add(x, r[index])

    def add_all(x: np.ndarray, r: list) -> np.ndarray:
        y = add(x, r[others[0]], out=x if own else None)
        for index in others[1:]:
            y += r[index]
        return y

    return add_all


# Below this many values one thread is faster than starting the pool.
_PARALLEL_VALUES = 65536


_F = np.float32
# erfc(z) ~ t exp(-z^2 + P(t)), t = 1 / (1 + z/2): Numerical Recipes' erfcc, relative error
# < 1.2e-7 everywhere (float32's own resolution). P's coefficients, constant term first:
_ERFC = tuple(
    _F(c)
    for c in (
        -1.26551223,
        1.00002368,
        0.37409196,
        0.09678418,
        -0.18628806,
        0.27886807,
        -1.13520398,
        1.48851587,
        -0.82215223,
        0.17087277,
    )
)
_C0, _C1, _C2, _C3, _C4, _C5, _C6, _C7, _C8, _C9 = _ERFC


@njit(cache=True, fastmath=True, inline="always")
def _erfc_parts(v):  # noqa: ANN001, ANN202
    """(t, -z^2 + P(t)) for ``v``, z = |v| (v capped at 9: past it erfc underflows to subnormal
    floats, slow in the next product, and v erfc(9) is as good as zero)."""
    z = abs(min(v, _F(9.0)))
    t = _F(1.0) / (_F(1.0) + _F(0.5) * z)
    poly = _C6 + t * (_C7 + t * (_C8 + t * _C9))
    poly = _C3 + t * (_C4 + t * (_C5 + t * poly))
    poly = _C0 + t * (_C1 + t * (_C2 + t * poly))
    return t, poly - z * z


# The exp between the two passes is numpy's (float32 SIMD: 4 ms for 5M values here, libm's
# scalar exp in numba 31 ms); the passes are branch-free float32 loops LLVM vectorizes. Each
# pass twice, not one function compiled twice: numba's cache keys a function by its name and
# line, not by `parallel`, so one compiled twice would load the other's machine code.
@njit(cache=True, fastmath=True)
def _gelu_prepare_serial(x, t, arg):  # noqa: ANN001, ANN202
    for i in range(x.size):
        t[i], arg[i] = _erfc_parts(x[i])


@njit(cache=True, fastmath=True, parallel=True)
def _gelu_prepare_parallel(x, t, arg):  # noqa: ANN001, ANN202
    for i in prange(x.size):
        t[i], arg[i] = _erfc_parts(x[i])


@njit(cache=True, fastmath=True)
def _gelu_finish_serial(x, t, e, out):  # noqa: ANN001, ANN202
    for i in range(x.size):
        tail = t[i] * e[i]
        out[i] = x[i] * (tail if x[i] >= _F(0.0) else _F(2.0) - tail)


@njit(cache=True, fastmath=True, parallel=True)
def _gelu_finish_parallel(x, t, e, out):  # noqa: ANN001, ANN202
    for i in prange(x.size):
        tail = t[i] * e[i]
        out[i] = x[i] * (tail if x[i] >= _F(0.0) else _F(2.0) - tail)


# Below this many values one fused pass with libm's scalar exp beats three passes around numpy's
# SIMD exp (the allocations and calls cost more than the exps: 256 values, one pose's layer;
# measured: 2.9 us against 7 us at 256 values, even at about 500).
_FUSED_VALUES = 512


@njit(cache=True, fastmath=True)
def _xerfc_fused(x, out):  # noqa: ANN001, ANN202
    for i in range(x.size):
        t, arg = _erfc_parts(x[i])
        tail = t * math.exp(arg)
        out[i] = x[i] * (tail if x[i] >= _F(0.0) else _F(2.0) - tail)


def warm_kernels() -> None:
    """Compile (or read from numba's cache) every variant of the compiled activation now."""
    for size in (1, _FUSED_VALUES, _PARALLEL_VALUES):
        xerfc(np.zeros(size, dtype=np.float32))


def xerfc(x: np.ndarray) -> np.ndarray:
    """``x erfc(x)`` elementwise, float32 (exact gelu's core, between two folded scales)."""
    flat = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    if flat.size < _FUSED_VALUES:
        out = np.empty_like(flat)
        _xerfc_fused(flat, out)
        return out.reshape(x.shape)
    t, arg, out = np.empty_like(flat), np.empty_like(flat), np.empty_like(flat)
    if flat.size >= _PARALLEL_VALUES:
        run_parallel(_gelu_prepare_parallel, flat, t, arg)
        np.exp(arg, out=arg)
        run_parallel(_gelu_finish_parallel, flat, t, arg, out)
    else:
        _gelu_prepare_serial(flat, t, arg)
        np.exp(arg, out=arg)
        _gelu_finish_serial(flat, t, arg, out)
    return out.reshape(x.shape)

"""Logging a servable IK model: the pyfunc wrapper (`iklab.robot.serving`), the Keras network, its
numpy export (`iklab.robot.network`) and its ONNX export (`iklab.learning.onnx_export`) as its
artifacts, the metadata robot code needs (`iklab.robot.model_metadata`), pinned requirements and code.

Beside the code that loads what it writes (`iklab.robot.solver`, `iklab.robot.serving`); training calls
`log_ik_model` inside its MLflow run.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature, infer_signature
from mlflow.types import ColSpec, Schema

import iklab
from iklab.core.encodings import POSE_COLUMNS, encode_inputs
from iklab.learning.onnx_export import save_onnx
from iklab.robot.model_metadata import (
    MODEL_METADATA_KEY,
    NETWORK_ARTIFACT,
    NUMPY_NETWORK_ARTIFACT,
    NUMPY_NETWORK_FILE,
    ONNX_NETWORK_ARTIFACT,
    ONNX_NETWORK_FILE,
    ModelMetadata,
)
from iklab.robot.network import NumpyNetwork
from iklab.robot.rows import DEFAULT_PARAMS, SEED_COLUMNS
from iklab.robot.serving import IKPyfuncModel
from iklab.robot.solver import IKSolver

# What loading the bare network needs (the pyfunc wrapper needs all of iklab's requirements).
_NETWORK_REQUIREMENTS = ("tensorflow", "keras", "numpy", "mlflow")
# Models from code: MLflow runs this file to get the wrapper instead of unpickling one. The
# wrapper has no state of its own (load_context builds the solver from the `network` artifact).
_WRAPPER_CODE = (
    "import mlflow\nfrom iklab.robot.serving import IKPyfuncModel\n\nmlflow.models.set_model(IKPyfuncModel())\n"
)


def log_ik_model(model: object, metadata: ModelMetadata, position: np.ndarray, quat: np.ndarray) -> str:
    """Log the servable pyfunc (pose rows in, joints out) with the Keras ``model`` as its artifact
    (and its numpy and ONNX exports beside it).

    ``position`` ``(N, 3)`` and ``quat`` ``(N, 4)``: a few poses for the input example and
    signatures. Both models carry the iklab metadata; requirements are explicit. Returns the URI.
    """
    entry = {MODEL_METADATA_KEY: metadata.to_dict()}
    features = encode_inputs(position, quat, metadata.input_encoding, metadata.robot)
    pose_rows = pd.DataFrame(np.hstack([position, quat]), columns=POSE_COLUMNS)
    exported = NumpyNetwork.from_model(model)
    wrapper = IKPyfuncModel()
    wrapper.solver = IKSolver(exported, metadata)
    with warnings.catch_warnings():
        # MLflow's hint that integer inputs cannot be missing; the integer column here is the
        # output's `iterations`, which always has a value.
        warnings.filterwarnings("ignore", "Hint: Inferred schema contains integer column", UserWarning)
        inferred = infer_signature(pose_rows, wrapper.predict(None, pose_rows), params=DEFAULT_PARAMS)
    # the pose columns, then the optional seeds (MLflow passes optional columns through when sent)
    inputs = Schema(
        [ColSpec("double", name) for name in POSE_COLUMNS]
        + [ColSpec("double", name, required=False) for name in SEED_COLUMNS]
    )
    signature = ModelSignature(inputs, inferred.outputs, inferred.params)
    with tempfile.TemporaryDirectory() as tmp:
        numpy_network = os.path.join(tmp, NUMPY_NETWORK_FILE)
        exported.save(numpy_network)
        onnx_network = save_onnx(exported, os.path.join(tmp, ONNX_NETWORK_FILE), metadata.to_dict())
        network = os.path.join(tmp, NETWORK_ARTIFACT)
        mlflow.tensorflow.save_model(
            model,
            network,
            signature=infer_signature(features, np.asarray(model(features, training=False))),
            input_example=features,
            pip_requirements=pip_requirements(_NETWORK_REQUIREMENTS),
            metadata=entry,
        )
        wrapper_code = os.path.join(tmp, "ik_pyfunc_model.py")
        with open(wrapper_code, "w") as file:
            file.write(_WRAPPER_CODE)
        with _quiet_mlflow():
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=wrapper_code,
                artifacts={
                    NETWORK_ARTIFACT: network,
                    NUMPY_NETWORK_ARTIFACT: numpy_network,
                    ONNX_NETWORK_ARTIFACT: str(onnx_network),
                },
                signature=signature,
                input_example=pose_rows,
                pip_requirements=pip_requirements(),
                code_paths=code_paths(),
                metadata=entry,
            )
    return info.model_uri


@contextlib.contextmanager
def _quiet_mlflow() -> Iterator[None]:
    """No progress bar for MLflow's copy of the network files we just wrote (a "download" of a
    local folder) and no INFO line for its routine check of the input example."""
    logger, bar = logging.getLogger("mlflow.pyfunc"), os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    try:
        yield
    finally:
        logger.setLevel(level)
        if bar is None:
            os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
        else:
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = bar


# What serving the pyfunc adds to iklab's base (robot) requirements: MLflow's pyfunc and server
# and the DataFrames it passes. No TensorFlow: the wrapper runs the numpy export.
_SERVING_REQUIREMENTS = ("mlflow", "pandas")


def pip_requirements(names: tuple[str, ...] | None = None) -> list[str]:
    """Pinned from this environment (explicit lists skip MLflow's slow inference); default: what
    the pyfunc needs, iklab's base requirements and MLflow's serving stack."""
    if names is None:
        base = [r for r in importlib.metadata.requires("iklab") if "extra ==" not in r]
        return base + pip_requirements(_SERVING_REQUIREMENTS)
    return [f"{name}=={importlib.metadata.version(name)}" for name in names]


def code_paths() -> list[str]:
    """The iklab package: the wrapper and the solver it loads need nothing else of this repository."""
    return [os.path.dirname(iklab.__file__)]

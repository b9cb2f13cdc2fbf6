"""What a logged model carries for robot code: its robot, region and encodings.

Written by `iklab.learning.model_logging` when a model is logged and read by `iklab.robot.solver` when it is
loaded: one dataclass, one dict layout (under the model's MLflow metadata key ``iklab``).
"""

from __future__ import annotations

from dataclasses import dataclass

from iklab.core.encodings import INPUT_ENCODINGS, OUTPUT_ENCODINGS
from iklab.core.kinematics import Robot, RobotError
from iklab.core.regions import Region

# Key of the MLflow model metadata entry that holds ModelMetadata.to_dict().
MODEL_METADATA_KEY = "iklab"
# The logged pyfunc's artifacts: the Keras network (MLflow's tensorflow flavor, for inspection
# and retraining), its numpy export (iklab.robot.network), what the solver runs, and the same
# network as ONNX (iklab.learning.onnx_export), for robot code outside Python (onnxruntime).
NETWORK_ARTIFACT = "network"
NUMPY_NETWORK_ARTIFACT = "numpy_network"
NUMPY_NETWORK_FILE = "network.npz"  # the export's file name inside the model's artifacts/
ONNX_NETWORK_ARTIFACT = "onnx_network"
ONNX_NETWORK_FILE = "network.onnx"  # beside network.npz


@dataclass(frozen=True, eq=False)  # eq=False: Region holds numpy arrays
class ModelMetadata:
    robot: Robot
    region: Region  # the joint box the network was trained on
    input_encoding: str  # a key of iklab.core.encodings.INPUT_ENCODINGS
    output_encoding: str  # a key of iklab.core.encodings.OUTPUT_ENCODINGS
    dataset_digest: str = ""
    iklab_version: str = ""

    def to_dict(self) -> dict:
        """JSON-able; the column lists are for people reading the MLmodel file."""
        return {
            "robot": self.robot.to_dict(),
            "region": self.region.to_dict(),
            "input_encoding": self.input_encoding,
            "input_columns": INPUT_ENCODINGS[self.input_encoding],
            "output_encoding": self.output_encoding,
            "output_columns": OUTPUT_ENCODINGS[self.output_encoding],
            "dataset_digest": self.dataset_digest,
            "iklab_version": self.iklab_version,
        }

    @classmethod
    def from_dict(cls, raw: dict) -> ModelMetadata:
        """The inverse of to_dict; ValueError (one line) when a part is missing or unknown."""
        try:
            metadata = cls(
                Robot.from_dict(raw["robot"]),
                Region.from_dict(raw["region"]),
                raw["input_encoding"],
                raw["output_encoding"],
                raw.get("dataset_digest", ""),
                raw.get("iklab_version", ""),
            )
        except (KeyError, TypeError, ValueError, RobotError) as exc:
            raise ValueError(
                f"the model's iklab metadata is incomplete ({exc}); it was not logged by "
                "iklab.train, so its robot and encodings are unknown"
            ) from None
        if metadata.input_encoding not in INPUT_ENCODINGS or metadata.output_encoding not in OUTPUT_ENCODINGS:
            raise ValueError(
                f"the model's iklab metadata names unknown encodings ({metadata.input_encoding!r}, "
                f"{metadata.output_encoding!r}); it needs a newer iklab"
            )
        return metadata

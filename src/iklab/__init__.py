"""iklab: learning robot inverse kinematics with neural networks, measured in MLflow."""

__version__ = "0.1.0"

"""iklab: learning robot inverse kinematics with neural networks, measured in MLflow.

Robot code: ``from iklab import IKSolver`` (:mod:`iklab.robot.solver`). The layers, lowest first:
``core`` -> ``robot`` -> ``learning`` -> ``studies`` -> the commands (``python -m iklab.train``,
``iklab.search``, ``iklab.cases``, ``iklab.ablations``, ``iklab.services``, ``iklab.ui``).
"""

from __future__ import annotations

__version__ = "0.1.0"

_ROBOT_API = ("IKSolver", "IKResult", "PathResult")
__all__ = [*_ROBOT_API, "__version__"]


def __getattr__(name: str) -> object:
    # lazy: `import iklab.train` stays light (numba and the solver load only when robot code asks)
    if name in _ROBOT_API:
        from iklab.robot import solver

        return getattr(solver, name)
    raise AttributeError(f"module 'iklab' has no attribute {name!r}")

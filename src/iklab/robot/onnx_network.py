"""A logged model's ``network.onnx`` run by onnxruntime, where it is installed (`pip install
'iklab[robot]'`): the solver's network runtime then (`IKSolver.load`), the numpy export
(`iklab.robot.network`) where it is not. Same call as :class:`~iklab.robot.network.NumpyNetwork`:
``net(x)`` maps (N, F) float32 to (N, outputs).

Why: on a `make search` champion (3 x 256 GELU) onnxruntime ran 10,000 poses in 18.1 ms against
the numpy export's 50.7 ms (bench/bench_onnx.py, docs/robot-code.md); a whole one-pose solve was
the quicker with the numpy export, which runs small batches where the model carries it. The two
answer alike to ~3e-6 (float32 rounding), refined away.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

# Below this many rows one thread runs the pass (the pool's wake-up costs more than it saves), or
# the numpy export where given.
SINGLE_THREAD_ROWS = 256


class OnnxNetwork:
    """An onnxruntime session on one ONNX file (its ``run`` is safe from many threads)."""

    def __init__(self, path: str | os.PathLike, small: object = None) -> None:
        """``small``: the same network's numpy export, run below :data:`SINGLE_THREAD_ROWS` rows
        where it is the quicker (one pose: ~65 against ~80 us for a whole solve, measured on a
        3 x 256 GELU champion); None: onnxruntime on one thread there."""
        import onnxruntime as ort

        self._small = small

        def session(threads: int) -> object:
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            # its threads sleep between calls: the solver's numba kernels run right after on the same cores
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

        try:
            self._session = session(0)  # 0: one thread per core
            # small batches on one thread (where no numpy export runs them): waking a sleeping pool
            # costs a one-pose call ~40 us, more than its pass
            self._single = session(1) if small is None else None
        except Exception as exc:  # onnxruntime's own exception types: a file it cannot read
            raise ValueError(f"{path}: not an ONNX network onnxruntime can run ({exc})") from None
        (source,), (target,) = self._session.get_inputs(), self._session.get_outputs()
        self._input = source.name
        self.n_inputs, self.n_outputs = int(source.shape[1]), int(target.shape[1])
        self.path = Path(path)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.n_inputs:
            raise ValueError(f"expected rows of shape (N, {self.n_inputs}), got {x.shape}")
        if not len(x):
            return np.zeros((0, self.n_outputs), dtype=np.float32)
        if len(x) < SINGLE_THREAD_ROWS:
            if self._small is not None:
                return self._small(x)
            return self._single.run(None, {self._input: x})[0]
        return self._session.run(None, {self._input: x})[0]

    def __repr__(self) -> str:
        return f"OnnxNetwork({self.path.name}, {self.n_inputs} -> {self.n_outputs})"


def onnxruntime_installed() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True

"""onnxruntime on a logged model's network.onnx against its NumpyNetwork (network.npz), in one process.

The same network, the same encoded poses (drawn from the model's region, FK'd, encoded as the
solver encodes them): NumpyNetwork (what IKSolver runs today: NumPy's BLAS threads, numba's for
exact gelu; and the same pinned to one thread with threadpoolctl and numba.set_num_threads)
against onnxruntime's CPU provider with one intra-op thread and with its default (one per
physical core), graph optimizations on (onnxruntime's default). 1, 100 and 10,000 poses per
call; each figure is the best of --repeats runs of several calls (calls cycle through the poses),
after a warm-up. Prints the largest difference between the two on 10,000 rows, and a table of
microseconds per call and NumpyNetwork's time over onnxruntime's (> 1: onnxruntime faster).
A model logged before network.onnx existed is exported here (needs the `onnx` package).
Decides nothing: the solver keeps running NumpyNetwork.

Run: .venv/bin/python bench/bench_onnx.py [--model models:/ik-jaco@champion | PATH] [--repeats 7]
"""

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{Path(__file__).resolve().parent.parent}/mlflow.db")

import numpy as np  # noqa: E402

from iklab.core.encodings import encode_pose_matrices  # noqa: E402
from iklab.core.kinematics import fk  # noqa: E402
from iklab.robot.model_metadata import NUMPY_NETWORK_FILE, ONNX_NETWORK_FILE  # noqa: E402
from iklab.robot.network import NumpyNetwork  # noqa: E402

SIZES = ((1, 2000), (100, 300), (10_000, 5))  # (poses per call, calls per run)
POSES = 10_000


def model_files(uri: str) -> Path:
    """The model's local directory (an MLflow URI is downloaded)."""
    if Path(uri).is_dir():
        return Path(uri)
    import mlflow

    try:
        return Path(mlflow.artifacts.download_artifacts(uri))
    except Exception as exc:  # any load failure -> one line, no traceback
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        sys.exit(f"bench_onnx: cannot load model {uri!r} ({first_line}); pass --model URI or a model directory")


def load_networks(local: Path):
    """(NumpyNetwork, ONNX model bytes, where the ONNX came from), and the solver's metadata."""
    from iklab.robot.solver import IKSolver

    solver = IKSolver.load(str(local))  # the metadata and encodings; its warm-up compiles numba's kernels
    artifacts = local / "artifacts"
    network = NumpyNetwork.load(artifacts / NUMPY_NETWORK_FILE)
    onnx_file = artifacts / ONNX_NETWORK_FILE
    if onnx_file.is_file():
        return network, onnx_file.read_bytes(), str(onnx_file), solver
    from iklab.learning.onnx_export import network_to_onnx

    return network, network_to_onnx(network).SerializeToString(), "exported here (no network.onnx logged)", solver


def session(model: bytes, threads: int):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads  # 0: onnxruntime's default, one per physical core
    options.inter_op_num_threads = 1  # sequential graph: the inter-op pool has nothing to do
    return onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def per_call_us(methods: dict, batches, calls: int, repeats: int) -> dict:
    """Best over ``repeats`` runs of the mean microseconds per call of each method over ``calls``
    calls; the methods take turns run by run, so a change in the machine's load hits them alike.
    ``methods``: name -> (call, context manager factory entered around each run)."""
    best = dict.fromkeys(methods, float("inf"))
    for round_ in range(repeats + 1):  # round 0 is a warm-up
        for name, (call, context) in methods.items():
            with context():
                started = time.perf_counter()
                for i in range(calls):
                    call(batches[i % len(batches)])
                seconds = (time.perf_counter() - started) / calls
            if round_ > 0:
                best[name] = min(best[name], seconds * 1e6)
    return best


@contextlib.contextmanager
def one_thread():
    """BLAS and numba on one thread (NumpyNetwork's exact gelu runs in numba)."""
    import numba
    from threadpoolctl import threadpool_limits

    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        numba.set_num_threads(previous)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models:/ik-jaco@champion", help="MLflow model URI or local model directory")
    parser.add_argument("--repeats", type=int, default=7, help="runs per figure (best of)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be positive")

    local = model_files(args.model)
    network, model, source, solver = load_networks(local)
    rng = np.random.default_rng(args.seed)
    q = rng.uniform(solver.region.lower, solver.region.upper, size=(POSES, 6))
    features = encode_pose_matrices(fk(solver.robot, q), solver.input_encoding, solver.robot)
    sessions = {"1 thread": session(model, 1), "default threads": session(model, 0)}
    name = sessions["1 thread"].get_inputs()[0].name

    def ort_call(s):
        return lambda x: s.run(None, {name: x})[0]

    difference = np.abs(ort_call(sessions["1 thread"])(features) - network(features)).max()
    import onnxruntime

    print(
        f"model {args.model}: {network!r}, {sum(w.size for w in network.weights.values()):,} weights; "
        f"onnx {source}; onnxruntime {onnxruntime.__version__}, numpy {np.__version__}, "
        f"{os.cpu_count()} cpus, load average {os.getloadavg()[0]:.2f}"
    )
    print(f"largest |onnxruntime - NumpyNetwork| on {POSES} rows: {difference:.2e}")
    print(f"microseconds per call, best of {args.repeats} runs; ratio = NumpyNetwork / onnxruntime (> 1: ORT faster)")
    print()
    header = (
        f"{'poses/call':>10s} {'numpy':>10s} {'numpy 1thr':>10s} {'ORT 1thr':>10s} {'ORT dflt':>10s} "
        f"{'ratio 1thr':>10s} {'ratio dflt':>10s} {'ORT 1thr poses/s':>17s}"
    )
    print(header)
    methods = {
        "numpy": (network, contextlib.nullcontext),
        "numpy 1thr": (network, one_thread),
        "ORT 1thr": (ort_call(sessions["1 thread"]), contextlib.nullcontext),
        "ORT dflt": (ort_call(sessions["default threads"]), contextlib.nullcontext),
    }
    for size, calls in SIZES:
        batches = [features[i : i + size] for i in range(0, POSES - size + 1, size)][:256]
        t = per_call_us(methods, batches, calls, args.repeats)
        print(
            f"{size:10d} {t['numpy']:10.1f} {t['numpy 1thr']:10.1f} {t['ORT 1thr']:10.1f} {t['ORT dflt']:10.1f} "
            f"{t['numpy 1thr'] / t['ORT 1thr']:10.2f} {t['numpy'] / t['ORT dflt']:10.2f} "
            f"{size / t['ORT 1thr'] * 1e6:17,.0f}"
        )
    print("\nratio 1thr: NumpyNetwork on one thread / ORT on one; ratio dflt: both with their default threads")


if __name__ == "__main__":
    main()

"""The solver's first call after IKSolver.load against its hundredth, in fresh processes.

Each repeat starts a new Python process that imports iklab, loads the model (timed: load includes
the warm-up that compiles or reads every numba kernel), then solves the same poses 100 times and
reports the first call and the median of calls 91-100, for one pose per call and for --batch
poses per call (a separate process each, so each measures a first call). Target (issue 24): the
first call within 2x of the hundredth. "cold" runs the same with an empty numba cache
(NUMBA_CACHE_DIR set to a new folder): what load costs on a fresh machine, where every kernel
compiles once.

Run: .venv/bin/python bench/bench_first_call.py [--model models:/ik-jaco@champion] [--batch 3000]
     [--repeats 3]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO = 2.0

_CHILD = """
import json, sys, time
started = time.perf_counter()
import numpy as np
from iklab import IKSolver
from iklab.core.kinematics import fk
imported = time.perf_counter()
solver = IKSolver.load(sys.argv[1])
loaded = time.perf_counter()
rng = np.random.default_rng(1)
n = int(sys.argv[2])
poses = fk(solver.robot, rng.uniform(solver.region.lower, solver.region.upper, size=(n, 6)))
seconds = []
for _ in range(100):
    t = time.perf_counter()
    solver.solve(poses)
    seconds.append(time.perf_counter() - t)
print(json.dumps({"import_s": imported - started, "load_s": loaded - imported, "first_s": seconds[0],
                  "hundredth_s": float(np.median(seconds[90:]))}))
"""


def measure(model: str, poses: int, cache: str | None) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    if cache is not None:
        env["NUMBA_CACHE_DIR"] = cache
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, model, str(poses)], capture_output=True, text=True, env=env, timeout=600
    )
    if out.returncode != 0:
        sys.exit(f"bench_first_call: the child failed: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models:/ik-jaco@champion")
    parser.add_argument("--batch", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{ROOT}/mlflow.db")
    print(f"model {args.model}; {args.repeats} fresh processes per row; first call / median of calls 91-100")
    print("| cache | poses per call | load s | first call ms | 100th call ms | ratio |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    worst = 0.0
    for label in ("warm", "cold"):
        for poses in (1, args.batch):
            rows = []
            for _ in range(args.repeats):
                with tempfile.TemporaryDirectory(prefix="numba-cache-") as empty:
                    rows.append(measure(args.model, poses, empty if label == "cold" else None))
            ratio = statistics.median(r["first_s"] / r["hundredth_s"] for r in rows)
            worst = max(worst, ratio) if label == "warm" else worst
            print(
                f"| {label} | {poses} | {statistics.median(r['load_s'] for r in rows):.2f} "
                f"| {1e3 * statistics.median(r['first_s'] for r in rows):.2f} "
                f"| {1e3 * statistics.median(r['hundredth_s'] for r in rows):.2f} | {ratio:.2f}x |"
            )
    verdict = "met" if worst <= TARGET_RATIO else "NOT met"
    print(f"first call within {TARGET_RATIO:g}x of the hundredth (warm cache): {verdict} (worst {worst:.2f}x)")


if __name__ == "__main__":
    main()

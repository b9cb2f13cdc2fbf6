"""Wall time and peak RSS of `python -m data_gen generate --n 5000000`, run as a user runs it.

Targets (issue 2): under 15 s and under 1 GB on the 2-core reference machine.
The reference beside it, in the same run: the time to write the same number
of bytes of float64 with numpy alone (`np.save`), i.e. the disk's share.
Run: .venv/bin/python bench/bench_generate.py [--n 5000000]
"""

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

COLUMNS = 13  # q0..q5, x, y, z, qw, qx, qy, qz (float64); split is 1 byte


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5_000_000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="iklab-bench-", dir=Path(__file__).resolve().parent.parent))
    try:
        out = root / "ds"
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "data_gen", "generate", "--n", str(args.n), "--out", str(out)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        wall = time.perf_counter() - started
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        size_mb = sum(p.stat().st_size for p in out.iterdir()) / 2**20

        block = np.random.default_rng(0).random((args.n // 10, COLUMNS))
        started = time.perf_counter()
        for i in range(10):
            np.save(root / f"ref{i}.npy", block)
        os.sync()
        disk = time.perf_counter() - started
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"generate --n {args.n}: {wall:.1f} s wall (target < 15 s), peak RSS {peak_mb:.0f} MB "
        f"(target < 1024 MB), {size_mb:.0f} MB on disk"
    )
    print(f"reference: np.save of the same float64 bytes: {disk:.1f} s (generate takes {wall / disk:.1f}x that)")
    print(f"throughput: {args.n / wall / 1e6:.2f} M rows/s")


if __name__ == "__main__":
    main()

"""Shared test data: a seconds-long experiment on a small, well-conditioned Jaco box; a
command's ``main`` run as `python -m` would run it."""

import io
import signal
from contextlib import redirect_stderr, redirect_stdout

import numpy as np

# A well-conditioned pose inside Jaco's working region; boxes around it learn in seconds.
CENTER = np.radians([0.0, 135.0, -100.0, 0.0, -90.0, 0.0])


def tiny_experiment(name: str = "tiny", rows: int = 6000, half_width: float = 0.3, **sections) -> dict:
    """An experiment mapping; ``sections`` (e.g. ``model={"width": 32}``) update the defaults."""
    raw = {
        "name": name,
        "data": {
            "region": "custom",
            "lower": (CENTER - half_width).tolist(),
            "upper": (CENTER + half_width).tolist(),
            "rows": rows,
            "seed": 0,
        },
        "model": {"depth": 2, "width": 64},
        "training": {"epochs": 4, "batch_size": 128},
        "diagnostics": {"probe_rows": 256},
        "evaluation": {"knn_rows": int(rows * 0.8)},
    }
    for section, values in sections.items():
        raw[section] = {**raw.get(section, {}), **values}
    return raw


# A healthy run in seconds: it beats the 1-NN baseline about 2x (12 mm vs 25 mm median), so it
# raises no flag; the tests that call a run healthy assert exactly that.
HEALTHY = tiny_experiment(
    "healthy",
    rows=20000,
    model={"width": 128},
    optimizer={"learning_rate": 3e-3, "schedule": "cosine"},
    training={"epochs": 12, "batch_size": 64},
    diagnostics={"probe_rows": 512},
    evaluation={"knn_rows": 2000, "test_rows": 500},
)


class StepClock:
    """A clock for `TimeBudget.clock` that advances ``seconds`` per reading: a time budget then
    buys the same optimizer steps on a quiet machine and a loaded one (a reading per batch, and one
    more each time the learning rate is recomputed)."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.now = seconds, 0.0

    def __call__(self) -> float:
        self.now += self.seconds
        return self.now


def main_in_this_process(main, argv: list[str]) -> tuple[int, str, str]:
    """A command's ``main(argv)`` as `python -m` runs it: its exit status (argparse's SystemExit
    included), stdout and stderr; the SIGTERM handler it may install is put back."""
    out, err = io.StringIO(), io.StringIO()
    previous = signal.getsignal(signal.SIGTERM)
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exc:
                code = exc.code
    finally:
        signal.signal(signal.SIGTERM, previous)
    return code, out.getvalue(), err.getvalue()

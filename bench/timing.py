"""Shared by the benchmark scripts (imported as `timing`: scripts run with bench/ on sys.path)."""

import time


def best_seconds(call, repeats: int = 3):
    """(smallest wall time of ``repeats`` calls of ``call()``, the last call's result)."""
    seconds, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = call()
        seconds.append(time.perf_counter() - started)
    return min(seconds), result

"""Whether a process of this host still runs: what the lock and claim holders, and the runs left
RUNNING, are judged by (data_gen's stale temporaries, a search's finalize claim, dead runs)."""

from __future__ import annotations

import os


def process_alive(pid: object) -> bool:
    """Whether process ``pid`` of this host still runs (True when it cannot be told)."""
    if not isinstance(pid, int):
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True

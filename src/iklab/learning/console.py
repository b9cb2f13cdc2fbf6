"""The command lines (`python -m iklab.train`, `.search`, `.cases`): what they print and how
they stop. They print one line per epoch or trial, the summaries, errors; library chatter
that repeats those lines is switched off here, where a command starts, never on import of a
library module. A scheduler's SIGTERM ends them like Ctrl-C. Standard library only: a command
checks its arguments before TensorFlow loads.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import re
import signal
import sys
import tempfile
from collections.abc import Callable

# Keras compiles a predict function per model and a search or the cases build a new model per
# trial or variant on purpose: TF counts those as one function "retracing".
_RETRACING_NOTICE = "triggered tf.function retracing"


# Module-level filters: logging adds the same filter object once, however often a command's
# main() runs in one process (the tests call it many times).
def _not_retracing(record: logging.LogRecord) -> bool:
    return _RETRACING_NOTICE not in record.getMessage()


class QuietTrialEnd(Exception):
    """Ends an Optuna trial on purpose: our own line says why, Optuna's warning and traceback stay out."""


def _not_interrupted_trial(record: logging.LogRecord) -> bool:
    interrupted = record.exc_info is not None and isinstance(record.exc_info[1], KeyboardInterrupt | QuietTrialEnd)
    return not interrupted and "failed with value None" not in record.getMessage()


def quiet_console() -> None:
    """No Keras or MLflow progress bars and no retracing notices; other warnings still show."""
    import keras

    keras.config.disable_interactive_logging()  # we print one line per epoch
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # MLflow's tqdm bars
    logging.getLogger("tensorflow").addFilter(_not_retracing)


def quiet_optuna() -> None:
    """Optuna's warnings, but not its INFO line per trial, its "failed with value None" (our own
    line per trial says it, with the reason) nor the traceback of a trial stopped by Ctrl-C, a
    signal (the command says it stopped, in one line) or a :class:`QuietTrialEnd`."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # also installs Optuna's handler
    for handler in logging.getLogger("optuna").handlers:  # records come from optuna.* child loggers
        handler.addFilter(_not_interrupted_trial)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP (a scheduler, `kill`, a closed terminal): handled like Ctrl-C, so every
    MLflow run in progress ends as KILLED with this reason instead of staying RUNNING."""


# Signals received: the exception a handler raises is lost when it lands in a finalizer or a
# C callback ("Exception ignored in ..."), so the long loops also check this (raise_if_terminated).
_received: list[str] = []


def stop_on_signals() -> None:
    """Turn SIGTERM and SIGHUP into Terminated in the main thread (SIGINT is already Ctrl-C)."""

    def handler(signum: int, frame: object) -> None:
        _received.append(f"terminated by {signal.Signals(signum).name}")
        raise Terminated(_received[-1])

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)


def raise_if_terminated() -> None:
    """Terminated, if a signal arrived whose exception was lost (see _received)."""
    if _received:
        raise Terminated(_received[0])


# What TensorFlow's C++ libraries print while they load, before absl logging is set up and so
# whatever TF_CPP_MIN_LOG_LEVEL says: INFO lines (oneDNN is on, no CUDA driver) and absl's header.
_STARTUP_NOTICE = re.compile(r"^(I\d{4} \S+ +\d+ [\w.]+:\d+\] |WARNING: All log messages before absl::InitializeLog)")


def import_tensorflow_quietly() -> None:
    """Import TensorFlow with its load-time INFO lines dropped; anything else it prints shows.

    The lines go to file descriptor 2 from C++, so they are caught there, only for the import.
    """
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # read when the libraries load: no cuInit ERROR
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode(errors="replace").splitlines():
                if not _STARTUP_NOTICE.match(line):
                    print(line, file=sys.stderr)


class OneLineParser(argparse.ArgumentParser):
    """argparse with a mistake as one line (not its usage block), exit status 2."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def number_at_least(kind: type, low: float) -> Callable[[str], float]:
    """An argparse ``type`` reading ``kind`` (int or float) that refuses values below ``low`` and NaN."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {text!r}") from None
        if not (math.isfinite(value) and value >= low):
            raise argparse.ArgumentTypeError(f"must be >= {low:g}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def run_heavy(
    prog: str, work: Callable[[], object], *, mistakes: tuple[type, ...], runs: str
) -> tuple[int | None, object]:
    """The training part of a command, once its arguments are good: SIGTERM and SIGHUP handled
    like Ctrl-C, TensorFlow imported without its start-up chatter, then ``work()`` (which
    imports what it needs). Returns ``(None, work's result)``, or ``(exit status, None)``
    after one line: 2 for ``mistakes`` found late (a bad value in a file), 130 for Ctrl-C and
    143 for a signal, saying ``runs`` (e.g. "its MLflow runs") are marked KILLED."""
    stop_on_signals()
    import_tensorflow_quietly()
    quiet_console()
    try:
        return None, work()
    except mistakes as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2, None
    except KeyboardInterrupt as exc:  # Ctrl-C or a Terminated signal
        print(f"{prog}: stopped ({str(exc) or 'interrupted'}); {runs} marked KILLED", file=sys.stderr)
        return (143 if isinstance(exc, Terminated) else 130), None

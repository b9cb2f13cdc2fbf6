"""The order of train()'s Keras callbacks, as data: one named slot each, what it reads and what
it writes. Keras calls them in this order at every epoch's end, all with the same ``logs`` dict,
so a callback may read only what a slot before it wrote. ``tests/test_train.py`` checks that.

Values that pass through ``logs`` are named once, in :mod:`iklab.learning.metric_names`; the
decoded probe prediction passes as :class:`~iklab.learning.diagnostics.DiagnosticsCallback`
attributes (``last_prediction``, ``last_raw``), named here as ``PROBE_PREDICTION`` and ``PROBE_RAW``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from iklab.learning import metric_names as M

# What Keras itself puts in `logs` before any callback runs
KERAS_LOGS = ("loss", "val_loss")
# Values on the diagnostics callback, read by the probes after it (not in `logs`)
PROBE_PREDICTION = "diagnostics.last_prediction"  # the probe rows' decoded joints, this epoch
PROBE_RAW = "diagnostics.last_raw"  # the probe rows' raw outputs, this epoch (a mixture's)
TIME_SPENT = "time_budget.progress"  # share of a time budget spent (a method, read any time)


@dataclass(frozen=True)
class Slot:
    name: str
    reads: tuple[str, ...]  # logs keys or the values above, written by an earlier slot (or Keras)
    writes: tuple[str, ...]  # logs keys (a trailing "/" or "*": a family of keys) or the values above
    when: str  # which runs have it


SLOTS = (
    Slot("time_budget", (), ("learning_rate (set)", TIME_SPENT), "training.time_budget_minutes"),
    Slot("backup", (), (), "training.resume_dir (Keras BackupAndRestore: restores the state as training begins)"),
    Slot(
        "diagnostics",
        (),
        (M.R2_MEAN, M.DEAD_FRACTION, "zero_fraction/", "grad_norm/", "learning_rate", PROBE_PREDICTION, PROBE_RAW),
        "always",
    ),
    Slot("task_probe", (PROBE_PREDICTION,), (M.PROBE_POSITION_MM,), "always"),
    Slot("mixture_probe", (PROBE_RAW,), (M.MIXTURE,), "data.output_encoding: mixture"),
    Slot("epoch_logger", ("*",), (M.ELAPSED_SECONDS,), "always (every value in logs to MLflow, one printed line)"),
    Slot("save_progress", (M.ELAPSED_SECONDS,), (), "training.resume_dir"),
    Slot("joint_first", (TIME_SPENT,), ("loss weights (set)",), "a task-space loss with training.joint_first"),
    Slot("terminate_on_nan", ("loss",), (), "always"),
    Slot("early_stopping", ("val_loss",), (), "training.early_stopping_patience"),
    Slot("reduce_lr", ("val_loss",), (), "training.reduce_lr_patience, constant schedule, no time budget"),
    Slot("extra", (M.PROBE_POSITION_MM, M.R2_MEAN, M.DEAD_FRACTION), (), "a caller's StoppingCallbacks (the pruner)"),
)
NAMES = tuple(slot.name for slot in SLOTS)


def arrange(filled: Mapping[str, object]) -> list:
    """The callbacks of ``filled`` (slot name -> a callback, a list of them, or None: absent) in
    slot order. A name that is no slot is a programming error."""
    unknown = set(filled) - set(NAMES)
    if unknown:
        raise KeyError(f"no such callback slot: {sorted(unknown)}")
    ordered = []
    for name in NAMES:
        value = filled.get(name)
        if value is None:
            continue
        ordered.extend(value if isinstance(value, list | tuple) else [value])
    return ordered


def order_problems(slots: tuple[Slot, ...] = SLOTS) -> list[str]:
    """Each value a slot reads that no earlier slot (nor Keras) writes."""

    def covers(written: str, read: str) -> bool:
        return written == read or (written.endswith(("/", "*")) and read.startswith(written.rstrip("*")))

    written = list(KERAS_LOGS)
    problems = []
    for slot in slots:
        for value in slot.reads:
            if value != "*" and not any(covers(w, value) for w in written):
                problems.append(f"{slot.name} reads {value!r} before any slot writes it")
        written.extend(slot.writes)
    return problems

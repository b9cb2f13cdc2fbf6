"""Long trainings that survive interruption (``training.resume_dir``).

After every epoch the directory holds Keras' ``BackupAndRestore`` checkpoint (weights and
optimizer state, the epoch reached) and ``progress.json`` (the training seconds spent). A rerun
of the same experiment restores them, so the learning-rate schedule (by step, or by the time
spent for a time budget), the epochs and the error-against-time curve go on where they
stopped; a run that ends clears the directory. Every file is written to a temporary name first, then renamed.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import keras

from iklab.learning import metric_names as M


class ResumeState:
    """The state in ``directory`` of the run whose configuration has ``fingerprint``; another
    configuration's state there (a search whose best changed) is discarded, with a message."""

    def __init__(self, directory: str | os.PathLike, fingerprint: str) -> None:
        self.directory = Path(directory)
        self.progress_path = self.directory / "progress.json"
        self._progress = self._read()
        if self._progress and self._progress.get("fingerprint") != fingerprint:
            print(f"{self.directory} holds another configuration's training state: starting afresh", flush=True)
            self.clear()
            self._progress = {}
        self._progress["fingerprint"] = fingerprint

    def _read(self) -> dict:
        try:
            return json.loads(self.progress_path.read_text())
        except FileNotFoundError:
            return {}
        except (json.JSONDecodeError, OSError) as exc:
            raise ValueError(f"training.resume_dir: {self.progress_path} is unreadable ({exc}); delete it") from None

    @property
    def resuming(self) -> bool:
        return "elapsed_seconds" in self._progress

    @property
    def elapsed(self) -> float:
        return float(self._progress.get("elapsed_seconds", 0.0))

    def _write(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        temporary = self.progress_path.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(self._progress))
        temporary.replace(self.progress_path)

    def callbacks(self) -> tuple[keras.callbacks.Callback, keras.callbacks.Callback]:
        """``(backup, progress)``: the first goes before every other callback (it restores the
        weights when training begins), the second after the epoch logger (it reads the elapsed
        time the logger wrote into ``logs``)."""
        backup = keras.callbacks.BackupAndRestore(str(self.directory / "backup"), double_checkpoint=True)
        return backup, _SaveProgress(self)

    def clear(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


class _SaveProgress(keras.callbacks.Callback):
    def __init__(self, state: ResumeState) -> None:
        super().__init__()
        self.state = state

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs and M.ELAPSED_SECONDS in logs:
            self.state._progress["elapsed_seconds"] = float(logs[M.ELAPSED_SECONDS])
            self.state._write()

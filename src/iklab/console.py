"""What the command lines (`python -m iklab.train`, `.search`, `.cases`) print: one line per
epoch or trial, the summaries, errors. Library chatter that repeats what those lines say is
switched off here, where the commands start, never on import of a library module.
"""

from __future__ import annotations

import logging
import os

# Keras compiles a predict function per model and a search or the cases build a new model per
# trial or variant on purpose: TF counts those as one function "retracing".
_RETRACING_NOTICE = "triggered tf.function retracing"


def quiet_console() -> None:
    """No Keras or MLflow progress bars and no retracing notices; other warnings still show."""
    import keras

    keras.config.disable_interactive_logging()  # we print one line per epoch
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # MLflow's tqdm bars
    logging.getLogger("tensorflow").addFilter(lambda record: _RETRACING_NOTICE not in record.getMessage())

"""iklab's MLflow experiments as the UI shows them: marked as model-training experiments, each
with a one-line description, and links that open straight on their runs. Light (MLflow's
client only): `iklab.ui` uses it before the UI starts, `iklab.learning.run_logging` when a run starts.
"""

from __future__ import annotations

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

# One-line descriptions of iklab's experiments, by name suffix (shown in the UI).
_EXPERIMENT_DESCRIPTIONS = (
    (
        "-search",
        "Optuna architecture searches: one parent run per study (its summary in the description), "
        "one nested run per trial, the retrained best configuration and its registry decision.",
    ),
    (
        "-train",
        "Single trainings of iklab experiment files (python -m iklab.train), with diagnostics and task-space errors.",
    ),
    ("-ablations", "One change at a time against a fixed baseline, equal budgets."),
    ("diagnosis-cases", "The four 'my network does not learn' questions, each broken and fixed (make cases)."),
)


def describe_experiment(experiment_id: str, client: MlflowClient | None = None) -> None:
    """Mark an iklab experiment as a model-training experiment, so MLflow's UI (3.17 opens on a
    GenAI page by default) shows its runs in the training view, and give it its one-line
    description if it has none."""
    client = client or MlflowClient()
    experiment = client.get_experiment(experiment_id)
    if experiment.tags.get("mlflow.experimentKind") != "custom_model_development":
        _set_tag_racing(client, experiment_id, "mlflow.experimentKind", "custom_model_development")
    if "mlflow.note.content" not in experiment.tags:
        for key, text in _EXPERIMENT_DESCRIPTIONS:
            if experiment.name.endswith(key):
                _set_tag_racing(client, experiment_id, "mlflow.note.content", text)
                break


def _set_tag_racing(client: MlflowClient, experiment_id: str, key: str, value: str) -> None:
    """Set an experiment tag that other workers may be setting at the same moment. MLflow's SQL
    store reads, then inserts: of several search workers starting together on one server, the
    later inserts fail on the tag's unique key (seen on PostgreSQL). The tag another worker has
    just written is kept; a failure that leaves the tag absent is tried once more and raised if
    it fails again."""
    try:
        client.set_experiment_tag(experiment_id, key, value)
    except MlflowException:
        if client.get_experiment(experiment_id).tags.get(key) is None:
            client.set_experiment_tag(experiment_id, key, value)


def experiment_link(port: int, experiment_id: str) -> str:
    """The experiment's runs in MLflow 3.17's "Model training" view (``workflowType``)."""
    return f"http://127.0.0.1:{port}/#/experiments/{experiment_id}?workflowType=machine_learning"

"""`python -m iklab.ui [--port 5000]` (`make ui`): print links that open MLflow's UI straight on
each iklab experiment's runs in the "Model training" view, then run `mlflow ui` on the store
(Ctrl-C stops it).

MLflow 3.17 opens on a GenAI page by default; ``?workflowType=machine_learning`` on an
experiment's URL selects the training view, and the experiment tag ``mlflow.experimentKind`` =
``custom_model_development`` (set here on experiments made before iklab set it) marks the
experiment as one.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from iklab.learning.console import number_at_least


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m iklab.ui", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=number_at_least(int, 1), default=5000)
    args = parser.parse_args(argv)
    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"
    from mlflow import MlflowClient

    from iklab.learning.experiment_pages import describe_experiment, experiment_link

    client = MlflowClient(uri)
    shown = 0
    for experiment in client.search_experiments(order_by=["name"]):
        if experiment.name == "Default" and not client.search_runs([experiment.experiment_id], max_results=1):
            continue
        describe_experiment(experiment.experiment_id, client)
        print(f"{experiment.name:24s} {experiment_link(args.port, experiment.experiment_id)}")
        shown += 1
    if not shown:
        print("no iklab runs in this store yet: make search (or make cases) first")
    print(f"MLflow UI on http://127.0.0.1:{args.port} (store: {uri}); Ctrl-C to stop", flush=True)
    mlflow_cli = str(Path(sys.executable).with_name("mlflow"))
    os.execv(
        mlflow_cli, [mlflow_cli, "ui", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(args.port)]
    )
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())

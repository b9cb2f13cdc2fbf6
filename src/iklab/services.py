"""`python -m iklab.services up|workers N|down|status`: a local PostgreSQL and an MLflow tracking
server for searches with many workers, started and stopped by the project (`make services`,
`make workers N=3`, `make services-down`).

- up: a PostgreSQL cluster under ``.services/pgdata`` (git-ignored) on 127.0.0.1, databases
  ``optuna`` and ``mlflow``, and ``mlflow server`` backed by it (artifacts under
  ``.services/artifacts``) on 127.0.0.1. Idempotent: what already runs is left running.
- workers N: N search workers (``python -m iklab.search``) on the study in PostgreSQL, logging to
  the tracking server; each one's output in ``.services/worker-<i>.log``; waits for them, and
  Ctrl-C stops them all (by their process ids).
- down: stops the MLflow server (by its recorded process group) and PostgreSQL (pg_ctl).
- status: what runs, and the URIs to use.

Process ids go to ``.services/*.pid``; nothing is found by name. PostgreSQL refuses to run as
root: as root, its commands run as the ``postgres`` system user (Debian's package creates it),
which then owns ``.services/pgdata``.
"""

from __future__ import annotations

import argparse
import sys

from iklab.studies.services import (
    MLFLOW_PORT,
    PG_PORT,
    SERVICES_DIR,
    ServiceError,
    optuna_uri,
    run_workers,
    server_answers,
    start_mlflow,
    start_postgres,
    stop_mlflow,
    stop_postgres,
    tracking_uri,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m iklab.services", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("up", help="start PostgreSQL and the MLflow server")
    sub.add_parser("down", help="stop them")
    sub.add_parser("status", help="what runs, and the URIs to use")
    workers = sub.add_parser("workers", help="run N search workers against them")
    workers.add_argument("n", type=int)
    workers.add_argument("--experiment", default="experiments/search_jaco.yaml")
    args = parser.parse_args(argv)
    try:
        if args.action == "up":
            start_postgres()
            start_mlflow()
            print(f"PostgreSQL on 127.0.0.1:{PG_PORT} (Optuna: {optuna_uri()})")
            print(f"MLflow server on {tracking_uri()} (runs in PostgreSQL, artifacts in {SERVICES_DIR / 'artifacts'})")
        elif args.action == "down":
            stopped = [name for name, stop in (("MLflow server", stop_mlflow), ("PostgreSQL", stop_postgres)) if stop()]
            print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")
        elif args.action == "status":
            print(f"MLflow server {tracking_uri()}: {'up' if server_answers(MLFLOW_PORT) else 'down'}")
            print(f"Optuna storage: {optuna_uri()}")
        else:
            if args.n < 1:
                parser.error("N must be at least 1")
            return 1 if run_workers(args.n, args.experiment) else 0
    except ServiceError as exc:
        print(f"iklab.services: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

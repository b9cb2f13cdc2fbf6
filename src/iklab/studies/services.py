"""A local PostgreSQL cluster and an MLflow tracking server for many search workers, started and
stopped by their recorded process ids under ``.services/`` (nothing is found by name); the
command that drives them is `python -m iklab.services` (`make services`, `make workers N=3`,
`make services-down`)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

SERVICES_DIR = Path(".services")
PG_PORT = int(os.environ.get("IKLAB_PG_PORT", "55432"))
MLFLOW_PORT = int(os.environ.get("IKLAB_MLFLOW_PORT", "5050"))
PG_USER = "iklab"
STARTUP_SECONDS = 120


class ServiceError(RuntimeError):
    """A service cannot start or stop; the message says why and what to do, in one line."""


def optuna_uri(port: int = PG_PORT) -> str:
    return f"postgresql+psycopg://{PG_USER}@127.0.0.1:{port}/optuna"


def mlflow_backend_uri(port: int = PG_PORT) -> str:
    return f"postgresql+psycopg://{PG_USER}@127.0.0.1:{port}/mlflow"


def tracking_uri(port: int = MLFLOW_PORT) -> str:
    return f"http://127.0.0.1:{port}"


def _pg_bin(name: str) -> str:
    """A PostgreSQL program: from PATH, else Debian's versioned directory."""
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    raise ServiceError(
        f"PostgreSQL's {name} is not installed: apt-get install postgresql (Debian/Ubuntu), then rerun make services"
    )


def _as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL will not run as root: there, run it as the `postgres` system user."""
    if os.geteuid() != 0:
        return command
    if shutil.which("runuser") is None:
        raise ServiceError("running as root needs runuser (util-linux) to start PostgreSQL as the postgres user")
    return ["runuser", "-u", "postgres", "--", *command]


def _check_reachable_by_others(data: Path) -> None:
    """The postgres user must be able to walk down to ``data``."""
    for parent in data.parents:
        if not os.stat(parent).st_mode & stat.S_IXOTH:
            raise ServiceError(
                f"the postgres user cannot reach {data}: {parent} is not searchable by others (chmod o+x it, "
                "or keep the repository elsewhere)"
            )


def _run(command: list[str], what: str) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=STARTUP_SECONDS)
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise ServiceError(f"{what} failed: {detail[-1] if detail else f'exit status {done.returncode}'}")
    return done.stdout


def _read_pid(name: str, root: Path) -> int | None:
    path = root / f"{name}.pid"
    try:
        pid = int(path.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, another user's (postgres)
        return pid
    return pid


def _write_pid(name: str, pid: int, root: Path) -> None:
    tmp = root / f".{name}.pid.tmp"
    tmp.write_text(f"{pid}\n")
    os.replace(tmp, root / f"{name}.pid")


def start_postgres(root: Path = SERVICES_DIR, port: int = PG_PORT) -> None:
    """An initialized cluster under ``root/pgdata``, running on 127.0.0.1:``port``, with the
    ``optuna`` and ``mlflow`` databases (trust authentication on loopback only)."""
    data = (root / "pgdata").resolve()
    root.mkdir(parents=True, exist_ok=True)
    if not (data / "PG_VERSION").exists():
        data.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            _check_reachable_by_others(data)
            shutil.chown(data, "postgres", "postgres")
        _run(
            _as_postgres([_pg_bin("initdb"), "-D", str(data), "-U", PG_USER, "--auth=trust", "-E", "UTF8"]),
            "initdb",
        )
    status = subprocess.run(_as_postgres([_pg_bin("pg_ctl"), "status", "-D", str(data)]), capture_output=True)
    if status.returncode != 0:
        options = f"-h 127.0.0.1 -p {port} -k {data}"
        log = data / "server.log"
        _run(
            _as_postgres(
                [
                    _pg_bin("pg_ctl"),
                    "start",
                    "-w",
                    "-t",
                    str(STARTUP_SECONDS),
                    "-D",
                    str(data),
                    "-o",
                    options,
                    "-l",
                    str(log),
                ]
            ),
            f"starting PostgreSQL on 127.0.0.1:{port} (log: {log})",
        )
    psql = [_pg_bin("psql"), "-h", "127.0.0.1", "-p", str(port), "-U", PG_USER, "-d", "postgres", "-tAc"]
    existing = _run([*psql, "SELECT datname FROM pg_database"], "listing databases").split()
    for database in ("optuna", "mlflow"):
        if database not in existing:
            _run([*psql, f"CREATE DATABASE {database}"], f"creating database {database}")


def stop_postgres(root: Path = SERVICES_DIR) -> bool:
    data = (root / "pgdata").resolve()
    if not (data / "PG_VERSION").exists():
        return False
    status = subprocess.run(_as_postgres([_pg_bin("pg_ctl"), "status", "-D", str(data)]), capture_output=True)
    if status.returncode != 0:
        return False
    _run(_as_postgres([_pg_bin("pg_ctl"), "stop", "-D", str(data), "-m", "fast", "-w"]), "stopping PostgreSQL")
    return True


def start_mlflow(root: Path = SERVICES_DIR, pg_port: int = PG_PORT, port: int = MLFLOW_PORT) -> None:
    """``mlflow server`` on 127.0.0.1:``port``, its runs in PostgreSQL, its artifacts in
    ``root/artifacts``; its process group id recorded in ``root/mlflow.pid``."""
    if _read_pid("mlflow", root) is not None and server_answers(port):
        return
    artifacts = (root / "artifacts").resolve()
    artifacts.mkdir(parents=True, exist_ok=True)
    log = open(root / "mlflow-server.log", "a")  # noqa: SIM115 (the server keeps it)
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    env = {**os.environ, "PATH": f"{mlflow_cli.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    server = subprocess.Popen(
        [
            str(mlflow_cli),
            "server",
            "--backend-store-uri",
            mlflow_backend_uri(pg_port),
            "--artifacts-destination",
            str(artifacts),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=env,
    )
    _write_pid("mlflow", server.pid, root)
    deadline = time.monotonic() + STARTUP_SECONDS
    while not server_answers(port):
        if server.poll() is not None:
            raise ServiceError(
                f"mlflow server exited at start (status {server.returncode}); see {root / 'mlflow-server.log'}"
            )
        if time.monotonic() > deadline:
            stop_group(server.pid)
            raise ServiceError(f"mlflow server did not answer on {tracking_uri(port)} within {STARTUP_SECONDS} s")
        time.sleep(0.5)


def server_answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"{tracking_uri(port)}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def stop_group(pid: int, timeout: float = 30.0) -> None:
    """SIGTERM the process group ``pid`` leads, SIGKILL what is left after ``timeout``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                return
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.2)


def stop_mlflow(root: Path = SERVICES_DIR) -> bool:
    pid = _read_pid("mlflow", root)
    if pid is None:
        return False
    stop_group(pid)
    (root / "mlflow.pid").unlink(missing_ok=True)
    return True


def run_workers(n: int, experiment: str, root: Path = SERVICES_DIR, extra: tuple[str, ...] = ()) -> int:
    """N search workers on the services; waits for them; Ctrl-C stops them all. Returns the
    number of workers that failed."""
    if not server_answers(MLFLOW_PORT):
        raise ServiceError(f"no MLflow server on {tracking_uri()}: run make services first")
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri(), "TF_CPP_MIN_LOG_LEVEL": "3"}
    workers = []
    for i in range(n):
        log = open(root / f"worker-{i}.log", "w")  # noqa: SIM115 (closed when the worker ends)
        command = [sys.executable, "-m", "iklab.search", "--experiment", experiment, "--storage", optuna_uri(), *extra]
        worker = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        workers.append((worker, log))
        _write_pid(f"worker-{i}", worker.pid, root)
        print(f"worker {i}: process {worker.pid}, log {root / f'worker-{i}.log'}", flush=True)
    try:
        for worker, log in workers:
            worker.wait()
            log.close()
    except KeyboardInterrupt:
        print("stopping the workers ...", flush=True)
        for worker, _ in workers:
            stop_group(worker.pid)
        raise
    failed = 0
    for i, (worker, _) in enumerate(workers):
        lines = (root / f"worker-{i}.log").read_text().strip().splitlines()
        print(f"worker {i}: exit {worker.returncode}: {lines[-1] if lines else '(no output)'}")
        failed += worker.returncode != 0
    return failed

"""`python -m iklab.serve`: a logged model over HTTP with iklab's lean server
(`iklab.robot.http_server`: MLflow's request and answer formats, without pandas). `make
serve-fast` runs it on the champion; `make serve` is MLflow's own server.

    python -m iklab.serve [--model models:/ik-jaco@champion] [--host 127.0.0.1] [--port 5001]

Robot install only (no TensorFlow). Stops on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading


class _OneLineParser(argparse.ArgumentParser):
    """A mistake on the command line as one line (iklab.learning's own parser needs the train extra)."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def main(argv: list[str] | None = None) -> int:
    parser = _OneLineParser(prog="python -m iklab.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models:/ik-jaco@champion", help="an MLflow model URI or a model directory")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5001)
    args = parser.parse_args(argv)
    from iklab.robot.http_server import IKServer
    from iklab.robot.solver import IKSolver

    try:
        solver = IKSolver.load(args.model)
    except Exception as exc:  # noqa: BLE001 (any load failure is one line: the URI, the store, the files)
        words = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"iklab.serve: error: cannot load {args.model!r}: {words}", file=sys.stderr)
        return 2
    try:
        server = IKServer((args.host, args.port), solver)
    except OSError as exc:
        print(f"iklab.serve: error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    # SIGTERM (a supervisor, `kill`): the serving loop ends on its next poll, as on Ctrl-C
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    print(
        f"serving {args.model} ({solver.robot.name}, region {solver.region.name}) on "
        f"http://{args.host}:{server.server_address[1]}/invocations",
        flush=True,
    )
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

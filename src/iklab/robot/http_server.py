"""iklab's own HTTP server for a logged model: MLflow's request and answer formats, without
pandas or the pyfunc layer. `mlflow models serve` spends most of a one-row request in pandas
(parsing the rows into a frame, casting it to the signature, enforcing the schema, writing the
answer's records): about 8 ms p50 here, against well under 1 ms for the solve itself. This server
reads the same JSON into arrays and answers the same records.

    python -m iklab.serve --model models:/ik-jaco@champion --port 5001
    curl -s http://127.0.0.1:5001/invocations -H 'Content-Type: application/json' \\
      -d '{"dataframe_split": {"columns": ["x","y","z","qw","qx","qy","qz"],
           "data": [[0.3, 0.1, 0.4, 0.5, 0.5, 0.5, 0.5]]}, "params": {"refine": true}}'

Requests: POST /invocations with ``dataframe_split`` (``columns``, ``data``) or
``dataframe_records`` (a list of objects), optional ``params``; columns and params as in
`iklab.robot.rows` (the MLflow pyfunc takes the same). Answers: ``{"predictions": [{"q0": ...,
"success": true, ...}]}``, 400 ``{"error_code": "INVALID_PARAMETER_VALUE", "message": ...}`` for
a bad request. GET /ping and /health answer 200. One thread per connection (keep-alive); the
solver is safe under concurrent calls. Robot install only (numpy, numba, mlflow-skinny).
"""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from iklab.core.encodings import POSE_COLUMNS
from iklab.core.refine import shown
from iklab.robot.rows import (
    SEED_COLUMNS,
    checked_seeds,
    has_seed_columns,
    poses_from_array,
    require_pose_columns,
    result_columns,
    solve_request,
)
from iklab.robot.solver import IKSolver

MAX_BODY_BYTES = 256 * 1024 * 1024  # a request larger than this is refused (413), not read
MAX_MESSAGE_CHARACTERS = 2000  # of a 400's message


def parse_request(request: object) -> tuple[np.ndarray, np.ndarray | None, dict | None]:
    """``(poses (N, 4, 4), seeds (N, 6) or None, params)`` from a decoded JSON request;
    ValueError in the caller's words."""
    if not isinstance(request, dict):
        raise ValueError("the request must be a JSON object with dataframe_split or dataframe_records")
    params = request.get("params")
    if params is not None and not isinstance(params, dict):
        raise ValueError(f"params must be an object, got {shown(params)}")
    if "dataframe_split" in request:
        split = request["dataframe_split"]
        if not isinstance(split, dict) or not isinstance(split.get("columns"), list):
            raise ValueError("dataframe_split needs columns (a list) and data (a list of rows)")
        columns, data = split["columns"], split.get("data", [])
        if not isinstance(data, list) or not all(isinstance(row, list) and len(row) == len(columns) for row in data):
            raise ValueError(f"dataframe_split's data must be a list of rows of {len(columns)} values")
    elif "dataframe_records" in request:
        records = request["dataframe_records"]
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise ValueError("dataframe_records must be a list of objects")
        columns = list(dict.fromkeys(key for record in records for key in record))
        data = [[record.get(c) for c in columns] for record in records]
    else:
        raise ValueError(f"the request needs dataframe_split or dataframe_records; got keys {sorted(request)[:5]}")
    require_pose_columns(columns)
    seeded = has_seed_columns(columns)
    try:
        values = np.array(data, dtype=np.float64).reshape(len(data), len(columns))  # null -> NaN
    except (TypeError, ValueError):
        raise ValueError("every value must be a number (or null for an absent seed)") from None
    index = {c: i for i, c in enumerate(columns)}
    poses = poses_from_array(values[:, [index[c] for c in POSE_COLUMNS]])
    if not seeded:
        return poses, None, params
    return poses, checked_seeds(values[:, [index[c] for c in SEED_COLUMNS]]), params


def answer(solver: IKSolver, body: bytes) -> tuple[int, dict]:
    """(HTTP status, JSON answer) for a request body."""
    try:
        poses, seeds, params = parse_request(json.loads(body))
        result = solve_request(solver, poses, seeds, params)
    except ValueError as exc:  # json's decode errors included
        message = str(exc)  # our checks cut the values they quote; a long message is cut here too
        if len(message) > MAX_MESSAGE_CHARACTERS:
            message = f"{message[:MAX_MESSAGE_CHARACTERS]}... ({len(message):,} characters)"
        return 400, {"error_code": "INVALID_PARAMETER_VALUE", "message": message}
    columns = {name: values.tolist() for name, values in result_columns(result).items()}
    names = list(columns)
    return 200, {"predictions": [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a robot's client reuses its connection
    server: IKServer

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path in ("/ping", "/health"):
            self._send(200, b"\n", "text/plain")
        else:
            self._send_json(404, {"error_code": "ENDPOINT_NOT_FOUND", "message": f"no such endpoint: {self.path}"})

    def do_POST(self) -> None:  # noqa: N802
        if self.path != "/invocations":
            self._send_json(404, {"error_code": "ENDPOINT_NOT_FOUND", "message": f"no such endpoint: {self.path}"})
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._send_json(411, {"error_code": "BAD_REQUEST", "message": "Content-Length required"})
            return
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self._send_json(413, {"error_code": "BAD_REQUEST", "message": f"request over {MAX_BODY_BYTES:,} bytes"})
            return
        status, payload = answer(self.server.solver, self.rfile.read(length))
        self._send_json(status, payload)

    def _send_json(self, status: int, payload: dict) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (http.server's name)
        pass  # one line per request would drown the console; errors are in the answers


class IKServer(ThreadingHTTPServer):
    """A solver behind HTTP: ``IKServer((host, port), solver).serve_forever()``."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], solver: IKSolver) -> None:
        self.solver = solver
        super().__init__(address, _Handler)

"""Where the local stack keeps its state: an interface shared by the engine and the command line.

Standard library only, so the CLI imports it without the ``local`` extra (moto) installed. Layout under
the state dir (``$DROPSHIP_HOME``, else ``~/.dropship/local``) of a stack started by ``dropship local up``::

    stack.pid                           the running stack (JSON, written by the CLI)
    stack.log                           the stack's own log
    logs/endpoints/<EndpointName>.log   an endpoint's container log (stdout and stderr)
    logs/lambda/<FunctionName>.log      a Lambda function's log (what the handler prints, START/END lines)
    run/                                unpacked models, process records: removed when the stack stops
    cache/environments/<hash>/          Python environments of models with code/requirements.txt

``logs/`` survives ``dropship local down`` and is cleared by the next ``dropship local up``; ``dropship
logs`` reads exactly these paths. ``cache/`` survives both: a model's requirements install once.
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "DROPSHIP_HOME"
PORT_ENV = "DROPSHIP_LOCAL_PORT"
READY_PREFIX = "dropship local stack ready:"
"""The line ``python -m dropship.local`` prints on stdout once its stack is deployed."""


def state_dir() -> Path:
    configured = os.environ.get(HOME_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".dropship" / "local"


def pid_file(state: Path | None = None) -> Path:
    return (state or state_dir()) / "stack.pid"


def stack_log(state: Path | None = None) -> Path:
    return (state or state_dir()) / "stack.log"


def logs_dir(state: Path | None = None) -> Path:
    return (state or state_dir()) / "logs"


def run_dir(state: Path | None = None) -> Path:
    return (state or state_dir()) / "run"


def process_records(run: Path) -> Path:
    """Where the supervisor records the child processes it starts, in a stack's run directory."""
    return run / "processes"


def cache_dir(state: Path | None = None) -> Path:
    return (state or state_dir()) / "cache"


def endpoint_log(endpoint_name: str, logs: Path | None = None) -> Path:
    """An endpoint's container log; ``logs`` is the logs dir (default: the state dir's)."""
    return (logs or logs_dir()) / "endpoints" / f"{_safe(endpoint_name)}.log"


def lambda_log(function_name: str, logs: Path | None = None) -> Path:
    """A Lambda function's log; ``logs`` is the logs dir (default: the state dir's)."""
    return (logs or logs_dir()) / "lambda" / f"{_safe(function_name)}.log"


def _safe(name: str) -> str:
    """SageMaker and Lambda names are ``[a-zA-Z0-9-_]``; never let another one leave its folder."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise ValueError(f"not a resource name: {name!r}")
    return name

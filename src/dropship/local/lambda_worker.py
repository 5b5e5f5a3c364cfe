"""One warm Lambda execution environment: ``python -m dropship.local.lambda_worker``.

Started by ``lambda_runtime`` with the function's environment (``_HANDLER``, ``LAMBDA_TASK_ROOT``,
``PYTHONPATH`` = code dir + layer dirs, the function's variables, ``AWS_ENDPOINT_URL`` ...). Like the
Lambda Python runtime it imports the handler module once (init), then serves invocations one at a time.

Protocol: JSON lines. Requests on stdin: ``{"event": ..., "request_id": ..., "deadline_ms": ...,
"function_arn": ...}``. Replies on the original stdout: first ``{"ready": true}`` or
``{"ready": false, "error": {...}}`` after init, then ``{"result": ...}`` or ``{"error": {...}}`` per
request. The protocol keeps a private duplicate of fd 1; fd 1 itself is pointed at stderr so that
``print`` output, Powertools metrics and anything a C extension writes land in the function's log
instead of corrupting the protocol.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
from typing import Any, TextIO


class LambdaContext:
    """The context object the Lambda Python runtime passes to handlers (same attribute names)."""

    def __init__(self, request_id: str, function_arn: str, deadline_ms: int) -> None:
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.invoked_function_arn = function_arn
        # The runtime passes the environment variable through as is (a string).
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        self.aws_request_id = request_id
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.identity = None
        self.client_context = None
        self.tenant_id = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))


def error_payload(exc: BaseException, error_type: str | None = None) -> dict[str, Any]:
    """Lambda's shape for an unhandled error (what Step Functions matches ``ErrorEquals`` against)."""
    return {
        "errorMessage": str(exc),
        "errorType": error_type or type(exc).__name__,
        # Like the Lambda runtime, only the function's frames: the worker's own are left out.
        "stackTrace": traceback.format_list(
            [frame for frame in traceback.extract_tb(exc.__traceback__) if frame.filename != __file__]
        ),
    }


def load_handler(handler: str) -> Any:
    """``package/module.function`` -> the function, as the Python runtime resolves ``Handler``."""
    module_path, _, function_name = handler.rpartition(".")
    if not module_path or not function_name:
        raise ValueError(f"Bad handler '{handler}': not enough values to unpack (expected 2, got 1)")
    try:
        module = importlib.import_module(module_path.replace("/", "."))
    except ImportError as exc:
        raise _InitError("Runtime.ImportModuleError", f"Unable to import module '{module_path}': {exc}") from exc
    try:
        return getattr(module, function_name)
    except AttributeError as exc:
        raise _InitError(
            "Runtime.HandlerNotFound", f"Handler '{function_name}' missing on module '{module_path}'"
        ) from exc


class _InitError(Exception):
    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


def _send(channel: TextIO, message: dict[str, Any]) -> None:
    channel.write(json.dumps(message, default=str) + "\n")
    channel.flush()


def main() -> int:
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    task_root = os.environ.get("LAMBDA_TASK_ROOT")
    if task_root:
        os.chdir(task_root)
    try:
        handler = load_handler(os.environ["_HANDLER"])
    except _InitError as exc:
        _send(protocol, {"ready": False, "error": error_payload(exc, exc.error_type)})
        return 1
    except Exception as exc:  # an exception raised while importing the module: Lambda reports its type
        traceback.print_exc()
        _send(protocol, {"ready": False, "error": error_payload(exc)})
        return 1
    _send(protocol, {"ready": True})

    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        context = LambdaContext(request["request_id"], request["function_arn"], int(request["deadline_ms"]))
        os.environ["_X_AMZN_TRACE_ID"] = f"Root=1-{int(time.time()):08x}-{request['request_id'][:24]}"
        print(f"START RequestId: {context.aws_request_id} Version: {context.function_version}", file=sys.stderr)
        try:
            result = handler(request["event"], context)
            try:
                reply: dict[str, Any] = {"result": json.loads(json.dumps(result))}
            except (TypeError, ValueError) as exc:
                reply = {
                    "error": {
                        "errorMessage": f"Unable to marshal response: {exc}",
                        "errorType": "Runtime.MarshalError",
                        "stackTrace": [],
                    }
                }
        except Exception as exc:
            traceback.print_exc()
            reply = {"error": error_payload(exc)}
        print(f"END RequestId: {context.aws_request_id}", file=sys.stderr, flush=True)
        _send(protocol, reply)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Logger, Tracer and Metrics shared by every function, and the wrapper that makes a handler a task.

Powertools objects are module-level by design (they are cheap and read their settings from the
function's environment: POWERTOOLS_SERVICE_NAME, POWERTOOLS_METRICS_NAMESPACE, LOG_LEVEL).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer

from dropship.aws import transient_as_retryable

logger = Logger(service="dropship")
tracer = Tracer(service="dropship")
metrics = Metrics(namespace="Dropship", service="dropship")

Handler = Callable[[dict[str, Any], Any], Any]


def _execution_arn(event: Any) -> str | None:
    if not isinstance(event, dict):
        return None
    for candidate in (event, event.get("release") or {}):
        if isinstance(candidate, dict) and isinstance(candidate.get("execution_arn"), str):
            return candidate["execution_arn"]
    return None


def task(handler: Handler) -> Handler:
    """Make ``handler`` a state machine task: correlated logs, metrics flushed, transient errors retryable.

    Exceptions are not caught here: their class name is the error the state machine retries or catches.
    """

    @functools.wraps(handler)
    @logger.inject_lambda_context(clear_state=True)
    @tracer.capture_lambda_handler(capture_response=False)
    @metrics.log_metrics
    def wrapper(event: dict[str, Any], context: Any) -> Any:
        logger.set_correlation_id(_execution_arn(event))
        with transient_as_retryable():
            return handler(event, context)

    return wrapper

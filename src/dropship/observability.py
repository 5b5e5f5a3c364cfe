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


# Every log line carries the execution it serves: a task's input names it, as does the reaper's status
# change event; a SageMaker state change does not (its lines name the endpoint instead).
CORRELATION_ID_PATH = "execution_arn || release.execution_arn || detail.executionArn"


def task(handler: Handler) -> Handler:
    """Make ``handler`` a state machine task: correlated logs, metrics flushed, transient errors retryable.

    Exceptions are not caught here: their class name is the error the state machine retries or catches.
    """

    @functools.wraps(handler)
    @logger.inject_lambda_context(correlation_id_path=CORRELATION_ID_PATH, clear_state=True)
    @tracer.capture_lambda_handler(capture_response=False)
    @metrics.log_metrics
    def wrapper(event: dict[str, Any], context: Any) -> Any:
        logger.info("task started", extra={"task": handler.__name__})
        try:
            with transient_as_retryable():
                result = handler(event, context)
        except Exception:
            logger.exception("task failed", extra={"task": handler.__name__})
            raise
        logger.info("task finished", extra={"task": handler.__name__})
        return result

    return wrapper

"""Logger, Tracer and Metrics shared by every function, and the wrapper that makes a handler a task.

Powertools objects are module-level by design (they are cheap and read their settings from the
function's environment: POWERTOOLS_SERVICE_NAME, POWERTOOLS_METRICS_NAMESPACE, LOG_LEVEL).

The Tracer is the exception: creating it imports the X-Ray SDK (with asyncio and wrapt) and patches
libraries, a good part of a handler's import time (benchmarks/cold_start.py). It is created on the
first invocation instead, before the handler runs, and patches only botocore: every AWS call dropship
makes goes through it, and nothing else it does talks to the network.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics

from dropship.aws import transient_as_retryable

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer

# Tasks that count nothing would otherwise each log Powertools' "No application metrics to publish".
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)

logger = Logger(service="dropship")
metrics = Metrics(namespace="Dropship", service="dropship")
TRACED_MODULES = ("botocore",)

Handler = Callable[[dict[str, Any], Any], Any]


@functools.cache
def tracer() -> Tracer:
    """The function's one Tracer, created (X-Ray SDK imported, botocore patched) on first use."""
    from aws_lambda_powertools import Tracer

    return Tracer(service="dropship", patch_modules=TRACED_MODULES)


# Every log line carries the execution it serves: a task's input names it, as does the reaper's status
# change event; a SageMaker state change does not (its lines name the endpoint instead).
CORRELATION_ID_PATH = "execution_arn || release.execution_arn || detail.executionArn"


def task(handler: Handler) -> Handler:
    """Make ``handler`` a state machine task: correlated logs, traced, metrics flushed, transient errors retryable.

    Exceptions are not caught here: their class name is the error the state machine retries or catches.
    """

    @metrics.log_metrics
    @functools.wraps(handler)  # the trace's subsegment is named after the handler
    def measured(event: dict[str, Any], context: Any) -> Any:
        logger.info("task started", extra={"task": handler.__name__})
        try:
            with transient_as_retryable():
                result = handler(event, context)
        except Exception:
            logger.exception("task failed", extra={"task": handler.__name__})
            raise
        logger.info("task finished", extra={"task": handler.__name__})
        return result

    @functools.cache
    def traced() -> Handler:
        return tracer().capture_lambda_handler(measured, capture_response=False)

    @functools.wraps(handler)
    @logger.inject_lambda_context(correlation_id_path=CORRELATION_ID_PATH, clear_state=True)
    def wrapper(event: dict[str, Any], context: Any) -> Any:
        return traced()(event, context)

    return wrapper

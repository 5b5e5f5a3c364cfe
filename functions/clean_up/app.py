"""Clean Up after a failed release, and the reaper of executions that ended any other way.

- ``handler`` (the state machine's Clean Up): move the alias back if a watch tripped, delete exactly what
  this execution created, free the lock, record the failure and put ``Release Failed``; returns the
  failure the execution ends with.
- ``reap`` (EventBridge: ``Step Functions Execution Status Change`` of the Release state machine): an
  execution stopped, timed out or failed outside the state machine's own paths gets the same
  compensation, a final history record and its event (code ``Aborted`` or ``InternalError``).

Code, not direct integrations: what to delete depends on what exists, what an alias serves and what
SageMaker is still creating.
"""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from dropship import clients, outcome, parts
from dropship.observability import logger, metrics, task
from dropship.release import NotifyInput


@task
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request = NotifyInput.model_validate(event)
    failure = outcome.clean_up(parts.build(), request.state, request.execution_arn, request.started_at)
    logger.info("cleaned up after a failed release", extra={"code": failure.code})
    metrics.add_metric(name="ReleaseFailed", unit=MetricUnit.Count, value=1)
    return failure.model_dump(mode="json")


@task
def reap(event: dict[str, Any], context: Any) -> dict[str, Any]:
    end = outcome.ExecutionEnd.model_validate(event["detail"])

    def describe_input() -> str | None:
        return clients.stepfunctions().describe_execution(executionArn=end.execution_arn).get("input")

    result = outcome.reap(parts.build(), end, describe_input)
    logger.info("execution accounted for", extra={"status": end.status, "outcome": result})
    return {"outcome": result}

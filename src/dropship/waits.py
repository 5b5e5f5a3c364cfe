"""Waiting for an endpoint without polling: SageMaker's state-change events resume the execution.

``Wait For InService`` is a ``lambda:invoke.waitForTaskToken`` task: it records its task token against the
endpoint's name and returns. SageMaker puts a ``SageMaker Endpoint State Change`` event on EventBridge for
every status change; the stack's rule sends it to the same function, which sends the task its outcome
(``SendTaskSuccess`` for InService, ``SendTaskFailure`` with ``EndpointFailedError`` for Failed). The
registration itself also checks the status once, so an endpoint that was ready before the token was
recorded, or an event that was lost, never leaves the execution waiting: the task's timeout makes Step
Functions retry it every ``endpoint_check_s`` (a slow check, minutes in AWS), and an endpoint older than
``endpoint_timeout_s`` fails it with ``EndpointTimeoutError``.

The same events delete endpoints that a failed or aborted release could not delete while SageMaker was
still creating them (``DeleteEndpoint`` is refused in ``Creating``): those are recorded as *doomed*.

Items live in one partition of the stack's table: ``pk = ENDPOINT_WAITS``, ``sk = <endpoint name>``.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict

from dropship.aws import conditional_write, resume_once
from dropship.errors import EndpointFailedError, EndpointTimeoutError

PARTITION = "ENDPOINT_WAITS"
WAIT_TTL_S = 7 * 24 * 3600

EndpointStatus = Literal[
    "OutOfService", "Creating", "Updating", "SystemUpdating", "RollingBack", "InService", "Deleting", "Failed"
]
_STATUSES: dict[str, EndpointStatus] = {
    "".join(ch for ch in status.lower() if ch.isalpha()): status for status in get_args(EndpointStatus)
}
# A doomed endpoint can be deleted once SageMaker has finished with it.
SETTLED: tuple[EndpointStatus, ...] = ("InService", "Failed", "OutOfService")


def normalise_status(value: str) -> EndpointStatus | None:
    """``IN_SERVICE`` (events) and ``InService`` (DescribeEndpoint) are the same status."""
    return _STATUSES.get("".join(ch for ch in value.lower() if ch.isalpha()))


class EndpointWait(BaseModel):
    """What the table records about one endpoint: an execution waiting for it, or that it is doomed."""

    model_config = ConfigDict(defer_build=True, frozen=True, extra="ignore")

    endpoint_name: str
    kind: Literal["wait", "doomed"]
    execution_arn: str
    task_token: str | None = None
    timeout_s: int | None = None


class EndpointWaits:
    def __init__(self, dynamodb: Any, table_name: str, stepfunctions: Any) -> None:
        self.dynamodb = dynamodb
        self.table = table_name
        self.sfn = stepfunctions

    def _key(self, endpoint_name: str) -> dict[str, Any]:
        return {"pk": {"S": PARTITION}, "sk": {"S": endpoint_name}}

    def record(self, wait: EndpointWait) -> None:
        item = {
            **self._key(wait.endpoint_name),
            "kind": {"S": wait.kind},
            "execution_arn": {"S": wait.execution_arn},
            "expires_at": {"N": str(int(time.time()) + WAIT_TTL_S)},
        }
        if wait.task_token:
            item["task_token"] = {"S": wait.task_token}
        if wait.timeout_s is not None:
            item["timeout_s"] = {"N": str(wait.timeout_s)}
        self.dynamodb.put_item(TableName=self.table, Item=item)

    def get(self, endpoint_name: str) -> EndpointWait | None:
        item = self.dynamodb.get_item(TableName=self.table, Key=self._key(endpoint_name), ConsistentRead=True).get(
            "Item"
        )
        return _parse(item) if item else None

    def pending(self) -> list[EndpointWait]:
        """Every recorded wait and doomed endpoint (for the fallback sweep)."""
        pages = self.dynamodb.get_paginator("query").paginate(
            TableName=self.table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": PARTITION}},
            ConsistentRead=True,
        )
        return [_parse(item) for page in pages for item in page.get("Items", [])]

    def forget(self, endpoint_name: str, execution_arn: str | None = None) -> None:
        """Remove the endpoint's item (only if it belongs to ``execution_arn`` when given)."""
        kwargs: dict[str, Any] = {}
        if execution_arn is not None:
            kwargs = {
                "ConditionExpression": "execution_arn = :me",
                "ExpressionAttributeValues": {":me": {"S": execution_arn}},
            }
        conditional_write(self.dynamodb.delete_item, TableName=self.table, Key=self._key(endpoint_name), **kwargs)

    # -- resuming the waiting execution ---------------------------------------------------------------

    def succeed(self, wait: EndpointWait, status: EndpointStatus) -> bool:
        return self._send(wait, lambda token: self.sfn.send_task_success(
            taskToken=token, output=json.dumps({"status": status})
        ))  # fmt: skip

    def fail(self, wait: EndpointWait, error: Exception) -> bool:
        return self._send(wait, lambda token: self.sfn.send_task_failure(
            taskToken=token, error=type(error).__name__, cause=str(error)[:32000]
        ))  # fmt: skip

    def _send(self, wait: EndpointWait, call: Any) -> bool:
        """Resume the execution once; a token already used or timed out is not an error (duplicate events)."""
        if not wait.task_token:
            return False
        token = wait.task_token
        sent = resume_once(lambda: call(token))
        self.forget(wait.endpoint_name, wait.execution_arn)
        return sent


def _parse(item: dict[str, Any]) -> EndpointWait:
    return EndpointWait(
        endpoint_name=item["sk"]["S"],
        kind=item["kind"]["S"],
        execution_arn=item["execution_arn"]["S"],
        task_token=item.get("task_token", {}).get("S"),
        timeout_s=int(item["timeout_s"]["N"]) if "timeout_s" in item else None,
    )


def endpoint_outcome(
    name: str, status: EndpointStatus, failure_reason: str | None, created: datetime | None, timeout_s: int
) -> Exception | None:
    """Why a wait must fail now (Failed, or still not InService after the timeout), else None."""
    if status == "Failed":
        return EndpointFailedError(endpoint_failure_message(name, failure_reason))
    if status != "InService" and created is not None:
        waited = (datetime.now(UTC) - created).total_seconds()
        if waited > timeout_s:
            return EndpointTimeoutError(
                f"endpoint {name} was still {status} after {int(waited)} s (EndpointTimeoutSeconds is "
                f"{timeout_s}); raise the stack parameter if large models need longer to load"
            )
    return None


def endpoint_failure_message(name: str, failure_reason: str | None) -> str:
    """The cause first (SageMaker's FailureReason leads with it), then where the whole log is."""
    reason = (failure_reason or "SageMaker gave no reason").strip()
    where = f"`dropship logs` or CloudWatch /aws/sagemaker/Endpoints/{name}"
    return f"{reason} (endpoint {name} did not start; its whole log: {where})"

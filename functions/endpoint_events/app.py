"""Wait For InService, event-driven: registers the waiting task's token, and resumes it when SageMaker's
``SageMaker Endpoint State Change`` event (or the fallback sweep) says the endpoint settled.

Three inputs, one function (they share the table of waits):
- ``{"release": ..., "task_token": ...}`` from the state machine (``lambda:invoke.waitForTaskToken``);
- a ``SageMaker Endpoint State Change`` event from the stack's EventBridge rule;
- ``{"sweep": true}`` from the stack's schedule, for events that never came.

Code: EventBridge cannot resume a task token itself; events come in two spellings and more than once.
"""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from dropship import clients, deploy, settings
from dropship.endpoints import Endpoints
from dropship.observability import logger, task
from dropship.release import Release
from dropship.waits import EndpointWaits, normalise_status


class Env(settings.Settings):
    table_name: str


class WaitRequest(BaseModel):
    model_config = ConfigDict(defer_build=True)

    release: Release
    task_token: str


class EndpointChange(BaseModel):
    """``detail`` of SageMaker's ``SageMaker Endpoint State Change`` event (the fields dropship reads)."""

    model_config = ConfigDict(defer_build=True, extra="ignore", populate_by_name=True)

    endpoint_name: str = Field(alias="EndpointName")
    status: str = Field(alias="EndpointStatus")
    failure_reason: str | None = Field(None, alias="FailureReason")


@task
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    endpoints = Endpoints(clients.sagemaker(), autoscaling=clients.autoscaling())
    waits = EndpointWaits(clients.dynamodb(), settings.load(Env).table_name, clients.stepfunctions())
    if event.get("detail-type") == "SageMaker Endpoint State Change":
        change = EndpointChange.model_validate(event["detail"])
        status = normalise_status(change.status)
        if status is None:
            logger.warning("unknown endpoint status", extra={"status": change.status})
            return {"outcome": f"unknown status {change.status}"}
        outcome = deploy.on_endpoint_status(endpoints, waits, change.endpoint_name, status, change.failure_reason)
        logger.info(
            "endpoint state change", extra={"endpoint_name": change.endpoint_name, "status": status, "outcome": outcome}
        )
        return {"outcome": outcome}
    if event.get("sweep"):
        return {"swept": deploy.sweep(endpoints, waits)}
    request = WaitRequest.model_validate(event)
    deploy.wait_for_endpoint(endpoints, waits, request.release, request.task_token)
    return {"outcome": "waiting"}

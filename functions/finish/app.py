"""Finish Release: after the alias moved, retire releases beyond ``retain``, free the model's lock, record
the success and put ``Release Succeeded``. Retirement and lock failures are warnings of the release."""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from dropship import clients, settings, steps
from dropship.alias import AliasStore
from dropship.endpoints import Endpoints
from dropship.history import ReleaseTable
from dropship.notify import Notifier
from dropship.observability import metrics, task
from dropship.release import NotifyInput
from dropship.waits import EndpointWaits


class Env(settings.Settings):
    table_name: str
    alias_prefix: str
    event_bus_name: str


@task
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    env = settings.load(Env)
    request = NotifyInput.model_validate(event)
    detail = steps.finish_release(
        ReleaseTable(clients.dynamodb(), env.table_name),
        AliasStore(clients.ssm(), env.alias_prefix),
        Endpoints(clients.sagemaker()),
        EndpointWaits(clients.dynamodb(), env.table_name, clients.stepfunctions()),
        Notifier(clients.events(), env.event_bus_name),
        request.state,
        request.execution_arn,
        request.started_at,
    )
    metrics.add_metric(name="ReleaseSucceeded", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="ReleaseWarnings", unit=MetricUnit.Count, value=len(detail.warnings or []))
    if detail.duration_s is not None:
        metrics.add_metric(name="ReleaseDuration", unit=MetricUnit.Seconds, value=detail.duration_s)
    return detail.model_dump(mode="json", exclude_none=True)

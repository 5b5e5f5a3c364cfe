"""Announce Start / Success / Failure: record the outcome in the history table and put the event."""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from dropship import settings, steps
from dropship.aws import client
from dropship.history import ReleaseTable
from dropship.notify import Notifier
from dropship.observability import metrics, task
from dropship.release import NotifyInput


class Env(settings.Settings):
    table_name: str
    event_bus_name: str


@task
def handler(event: dict[str, Any], context: Any) -> dict[str, Any] | None:
    env = settings.load(Env)
    request = NotifyInput.model_validate(event)
    detail = steps.announce(
        ReleaseTable(client("dynamodb"), env.table_name),
        Notifier(client("events"), env.event_bus_name),
        request.outcome or "Failed",
        request.state,
        request.execution_arn,
        request.started_at,
    )
    metrics.add_metric(name=f"Release{request.outcome}", unit=MetricUnit.Count, value=1)
    if detail.duration_s is not None:
        metrics.add_metric(name="ReleaseDuration", unit=MetricUnit.Seconds, value=detail.duration_s)
    # Announce Failure's result is the failure ({code, message}) the execution ends with.
    return detail.error.model_dump(mode="json") if detail.error else None

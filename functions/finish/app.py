"""Finish Release: after the watch, retire releases beyond ``retain``, free the model's lock, record the
success and put ``Release Succeeded``. Retirement and lock failures are warnings of the release.

Code, not direct integrations: which endpoints retire depends on the history, the aliases and ``retain``.
"""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from dropship import outcome, parts
from dropship.observability import metrics, task
from dropship.release import NotifyInput


@task
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request = NotifyInput.model_validate(event)
    detail = outcome.finish_release(parts.build(), request.state, request.execution_arn, request.started_at)
    metrics.add_metric(name="ReleaseSucceeded", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="ReleaseWarnings", unit=MetricUnit.Count, value=len(detail.warnings or []))
    if detail.duration_s is not None:
        metrics.add_metric(name="ReleaseDuration", unit=MetricUnit.Seconds, value=detail.duration_s)
    return detail.model_dump(mode="json", exclude_none=True)

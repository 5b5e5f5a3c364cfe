"""Smoke Test: send every sample to the new endpoint; any failed expectation is SmokeTestFailed."""

from typing import Any

from dropship import steps
from dropship.aws import client
from dropship.observability import task
from dropship.release import Release


@task
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    report = steps.smoke_test(client("sagemaker-runtime"), Release.model_validate(event))
    return report.model_dump(mode="json")

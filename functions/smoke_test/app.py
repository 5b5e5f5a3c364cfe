"""Smoke Test: send every sample to the new endpoint and record the results; a failed expectation is
SmokeTestFailed (the stack's default sample fails only on a 5xx or no answer).

Code: every sample's answer is checked (status, JSON equality or schema, text, latency).
"""

from typing import Any

from dropship import clients, deploy, settings
from dropship.history import ReleaseTable
from dropship.observability import task
from dropship.release import Release


class Env(settings.Settings):
    table_name: str


@task
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    table = ReleaseTable(clients.dynamodb(), settings.load(Env).table_name)
    report = deploy.smoke_test(clients.sagemaker_runtime(), table, Release.model_validate(event))
    return report.model_dump(mode="json")

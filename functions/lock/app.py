"""Acquire Lock: the per-model lock that keeps two releases of one model apart, granted in upload order.

Code, not a direct DynamoDB integration: granting in upload order reads the model's queue, checks that no
later upload is live, and gives up after LockTimeoutSeconds. (Finish Release and Clean Up free it.)
"""

from typing import Any

from pydantic import BaseModel, ConfigDict

from dropship import clients, deploy, settings
from dropship.history import ReleaseTable
from dropship.observability import task
from dropship.release import Release


class Env(settings.Settings):
    table_name: str


class LockInput(BaseModel):
    model_config = ConfigDict(defer_build=True)

    release: Release


@task
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request = LockInput.model_validate(event)
    table = ReleaseTable(clients.dynamodb(), settings.load(Env).table_name)
    return deploy.acquire_lock(table, request.release).model_dump(mode="json")

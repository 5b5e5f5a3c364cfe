"""Acquire Lock / Release Lock: the per-model lock that keeps two releases of one model apart."""

from typing import Any, Literal

from pydantic import BaseModel

from dropship import settings, steps
from dropship.aws import client
from dropship.history import ReleaseTable
from dropship.observability import task
from dropship.release import Release


class Env(settings.Settings):
    table_name: str


class LockInput(BaseModel):
    action: Literal["acquire", "release"]
    release: Release


@task
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request = LockInput.model_validate(event)
    table = ReleaseTable(client("dynamodb"), settings.load(Env).table_name)
    if request.action == "acquire":
        result = steps.acquire_lock(table, request.release)
    else:
        result = steps.release_lock(table, request.release)
    return result.model_dump(mode="json")

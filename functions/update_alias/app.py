"""Update Alias: point the alias at the new endpoint, unless a newer upload is already live."""

from typing import Any

from pydantic import BaseModel

from dropship import settings, steps
from dropship.alias import AliasStore
from dropship.aws import client
from dropship.history import ReleaseTable
from dropship.observability import task
from dropship.release import Release, SmokeReport


class Env(settings.Settings):
    table_name: str
    alias_prefix: str


class AliasInput(BaseModel):
    release: Release
    smoke: SmokeReport


@task
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    env = settings.load(Env)
    request = AliasInput.model_validate(event)
    record = steps.update_alias(
        ReleaseTable(client("dynamodb"), env.table_name),
        AliasStore(client("ssm"), env.alias_prefix),
        request.release,
        request.smoke,
    )
    return record.model_dump(mode="json")

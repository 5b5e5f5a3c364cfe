"""Update Alias: point the alias at the new endpoint, unless a later upload is already live."""

from typing import Any

from dropship import clients, settings, steps
from dropship.alias import AliasStore
from dropship.history import ReleaseTable
from dropship.observability import task
from dropship.release import Release


class Env(settings.Settings):
    table_name: str
    alias_prefix: str


@task
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    env = settings.load(Env)
    record = steps.update_alias(
        ReleaseTable(clients.dynamodb(), env.table_name),
        AliasStore(clients.ssm(), env.alias_prefix),
        Release.model_validate(event),
    )
    return record.model_dump(mode="json")

"""Retire Old Releases: delete endpoints beyond the manifest's ``retain``, never a live or retained one."""

from typing import Any

from dropship import settings, steps
from dropship.alias import AliasStore
from dropship.aws import client
from dropship.endpoints import Endpoints
from dropship.history import ReleaseTable
from dropship.observability import task
from dropship.release import Release


class Env(settings.Settings):
    table_name: str
    alias_prefix: str


@task
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    env = settings.load(Env)
    retired = steps.retire(
        ReleaseTable(client("dynamodb"), env.table_name),
        AliasStore(client("ssm"), env.alias_prefix),
        Endpoints(client("sagemaker")),
        Release.model_validate(event),
    )
    return {"retired": retired}

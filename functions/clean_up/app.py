"""Clean Up: after any failure, delete exactly what this execution created and release the lock."""

from typing import Any

from dropship import settings, steps
from dropship.alias import AliasStore
from dropship.aws import client
from dropship.endpoints import Endpoints
from dropship.history import ReleaseTable
from dropship.observability import logger, task
from dropship.release import NotifyInput


class Env(settings.Settings):
    table_name: str
    alias_prefix: str


@task
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    env = settings.load(Env)
    request = NotifyInput.model_validate(event)
    failure = steps.clean_up(
        ReleaseTable(client("dynamodb"), env.table_name),
        Endpoints(client("sagemaker")),
        AliasStore(client("ssm"), env.alias_prefix),
        request.state,
    )
    logger.info("cleaned up after a failed release", extra={"code": failure.code})
    # The failure the execution ends with, whatever happens to the notification after this.
    return failure.model_dump(mode="json")

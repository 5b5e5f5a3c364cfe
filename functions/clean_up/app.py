"""Clean Up: after any failure, delete exactly what this execution created and release the lock."""

from typing import Any

from dropship import settings, steps
from dropship.aws import client
from dropship.endpoints import Endpoints
from dropship.history import ReleaseTable
from dropship.observability import logger, task
from dropship.release import NotifyInput


class Env(settings.Settings):
    table_name: str


@task
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request = NotifyInput.model_validate(event)
    result = steps.clean_up(
        ReleaseTable(client("dynamodb"), settings.load(Env).table_name),
        Endpoints(client("sagemaker")),
        client("s3"),
        request.state,
    )
    logger.info("cleaned up after a failed release", extra=result)
    return result

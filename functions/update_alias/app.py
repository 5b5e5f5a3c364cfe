"""Update Alias: register the new variant's autoscaling, then point the alias at the new endpoint, unless a
later upload is already live. Returns the alias record written and the one it replaced.

Code, not a direct SSM integration: the alias moves only if this upload is newer than every upload made
live before (a conditional write of the watermark), and the autoscaling comes first.
"""

from typing import Any

from dropship import clients, deploy, settings
from dropship.alias import AliasStore
from dropship.endpoints import Endpoints
from dropship.history import ReleaseTable
from dropship.observability import task
from dropship.release import Release


class Env(settings.Settings):
    table_name: str
    alias_prefix: str
    stack_name: str


@task
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    env = settings.load(Env)
    update = deploy.update_alias(
        ReleaseTable(clients.dynamodb(), env.table_name),
        AliasStore(clients.ssm(), env.alias_prefix),
        Endpoints(clients.sagemaker(), env.stack_name, clients.autoscaling()),
        Release.model_validate(event),
    )
    return update.model_dump(mode="json")

"""Create Endpoint: the release's SageMaker model, endpoint config and endpoint, idempotent under retries;
at least as many instances as the live fleet, and its data capture unless the manifest says otherwise.

Code, not three direct integrations: a retried create must treat "already exists" as its own earlier
success, and SageMaker reports that only as a generic ValidationException that Step Functions cannot
tell apart from a real one.
"""

from typing import Any

from dropship import clients, deploy, settings
from dropship.alias import AliasStore
from dropship.endpoints import Endpoints
from dropship.observability import task
from dropship.release import Release
from dropship.waits import EndpointWaits


class Env(settings.Settings):
    stack_name: str
    table_name: str
    alias_prefix: str
    sagemaker_role_arn: str


@task
def handler(event: dict[str, Any], context: Any) -> None:
    env = settings.load(Env)
    release = Release.model_validate(event)

    def still_running() -> bool:
        status = clients.stepfunctions().describe_execution(executionArn=release.execution_arn)["status"]
        return status == "RUNNING"

    deploy.create_endpoint(
        Endpoints(clients.sagemaker(), env.stack_name, clients.autoscaling()),
        EndpointWaits(clients.dynamodb(), env.table_name, clients.stepfunctions()),
        AliasStore(clients.ssm(), env.alias_prefix),
        release,
        env.sagemaker_role_arn,
        still_running,
    )

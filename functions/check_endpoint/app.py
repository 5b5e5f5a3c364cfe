"""Check Endpoint Status: InService, still creating, Failed (EndpointFailed) or too slow (EndpointTimeout)."""

from typing import Any

from dropship.aws import client
from dropship.endpoints import Endpoints
from dropship.observability import task
from dropship.release import Release


@task
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    state = Endpoints(client("sagemaker")).check_endpoint(Release.model_validate(event))
    return state.model_dump(mode="json")

"""Create Model / Create Endpoint Config / Create Endpoint: one SageMaker call each, idempotent."""

from typing import Any

from dropship import settings
from dropship.aws import client
from dropship.endpoints import Endpoints
from dropship.observability import task
from dropship.release import Release


class Env(settings.Settings):
    stack_name: str
    sagemaker_role_arn: str


def _endpoints() -> Endpoints:
    return Endpoints(client("sagemaker"), settings.load(Env).stack_name)


@task
def create_model(event: dict[str, Any], context: Any) -> None:
    _endpoints().create_model(Release.model_validate(event), settings.load(Env).sagemaker_role_arn)


@task
def create_endpoint_config(event: dict[str, Any], context: Any) -> None:
    _endpoints().create_endpoint_config(Release.model_validate(event))


@task
def create_endpoint(event: dict[str, Any], context: Any) -> None:
    _endpoints().create_endpoint(Release.model_validate(event))

"""Creating and removing the SageMaker model, endpoint config and endpoint of one release.

All three share the release's resource name, unique to its execution, so every create is idempotent
under Lambda retries: "already exists" means this execution created it on an earlier attempt.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from dropship.aws import error_code
from dropship.errors import EndpointFailedError, EndpointTimeoutError
from dropship.release import EndpointState, Release

STACK_TAG = "dropship:stack"
MANAGED_TAGS = ("dropship:model", "dropship:version", "dropship:execution")


def _already_exists(exc: ClientError) -> bool:
    message = str(exc.response.get("Error", {}).get("Message", ""))
    return error_code(exc) == "ValidationException" and "already exist" in message


def _not_found(exc: ClientError) -> bool:
    message = str(exc.response.get("Error", {}).get("Message", "")).lower()
    return error_code(exc) in ("ValidationException", "ResourceNotFound") and (
        "could not find" in message or "does not exist" in message or "not found" in message
    )


class Endpoints:
    def __init__(self, client: Any, stack_name: str = "dropship") -> None:
        self.client = client
        self.stack_name = stack_name

    def tags(self, release: Release) -> list[dict[str, str]]:
        managed = {
            STACK_TAG: self.stack_name,
            "dropship:model": release.model,
            "dropship:version": release.version,
            "dropship:execution": release.execution_arn.rsplit(":", 1)[-1],
        }
        return [{"Key": k, "Value": v} for k, v in {**release.deployment.tags, **managed}.items()]

    def _create(self, call: Any, **kwargs: Any) -> None:
        try:
            call(**kwargs)
        except ClientError as exc:
            if not _already_exists(exc):
                raise

    def create_model(self, release: Release, execution_role_arn: str) -> None:
        container: dict[str, Any] = {
            "Image": release.deployment.image_uri,
            "ModelDataUrl": release.artifact_uri,
            "Environment": release.deployment.environment,
        }
        self._create(
            self.client.create_model,
            ModelName=release.resource_name,
            PrimaryContainer=container,
            ExecutionRoleArn=execution_role_arn,
            Tags=self.tags(release),
        )

    def create_endpoint_config(self, release: Release) -> None:
        deployment = release.deployment
        variant: dict[str, Any] = {"VariantName": "AllTraffic", "ModelName": release.resource_name}
        if deployment.serverless is not None:
            variant["ServerlessConfig"] = {
                "MemorySizeInMB": deployment.serverless.memory_size_mb,
                "MaxConcurrency": deployment.serverless.max_concurrency,
            }
        else:
            variant["InstanceType"] = deployment.instance_type
            variant["InitialInstanceCount"] = deployment.initial_instance_count
            variant["InitialVariantWeight"] = 1.0
        self._create(
            self.client.create_endpoint_config,
            EndpointConfigName=release.resource_name,
            ProductionVariants=[variant],
            Tags=self.tags(release),
        )

    def create_endpoint(self, release: Release) -> None:
        self._create(
            self.client.create_endpoint,
            EndpointName=release.resource_name,
            EndpointConfigName=release.resource_name,
            Tags=self.tags(release),
        )

    def check_endpoint(self, release: Release, now: datetime | None = None) -> EndpointState:
        """The endpoint's status; ``Failed`` and a wait beyond the release's timeout raise typed errors."""
        described = self.client.describe_endpoint(EndpointName=release.resource_name)
        status = described["EndpointStatus"]
        if status == "Failed":
            reason = described.get("FailureReason") or "SageMaker gave no reason"
            raise EndpointFailedError(
                f"endpoint {release.resource_name} failed to start: {reason}. "
                "Check the model's CloudWatch logs (/aws/sagemaker/Endpoints/"
                f"{release.resource_name}) and that the artifact works with the image."
            )
        created = described.get("CreationTime") or release.started_at
        waited = ((now or datetime.now(UTC)) - created).total_seconds()
        if status != "InService" and waited > release.endpoint_timeout_s:
            raise EndpointTimeoutError(
                f"endpoint {release.resource_name} was still {status} after {int(waited)} s "
                f"(EndpointTimeoutSeconds is {release.endpoint_timeout_s}); raise the stack parameter "
                "if large models need longer to load"
            )
        return EndpointState(status=status, failure_reason=described.get("FailureReason"))

    def delete(self, name: str) -> tuple[list[str], list[str]]:
        """Delete the endpoint, endpoint config and model named ``name``, each on its own.

        Returns what was deleted and what could not be (with the reason). Only what exists is deleted:
        the delete permissions are limited to resources tagged with the stack, which an absent resource
        cannot show.
        """
        deleted: list[str] = []
        failed: list[str] = []
        for kind, describe, delete, param in (
            ("endpoint", self.client.describe_endpoint, self.client.delete_endpoint, "EndpointName"),
            (
                "endpoint-config",
                self.client.describe_endpoint_config,
                self.client.delete_endpoint_config,
                "EndpointConfigName",
            ),
            ("model", self.client.describe_model, self.client.delete_model, "ModelName"),
        ):
            try:
                describe(**{param: name})
                delete(**{param: name})
                deleted.append(kind)
            except ClientError as exc:
                if not _not_found(exc):
                    failed.append(
                        f"{kind} {name}: {error_code(exc)} {exc.response.get('Error', {}).get('Message', '')}"
                    )
        return deleted, failed

"""Creating and removing the SageMaker model, endpoint config and endpoint of one release.

All three share the release's resource name, unique to its execution, so every create is idempotent
under Lambda retries: "already exists" means this execution created it on an earlier attempt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from dropship.aws import error_code
from dropship.release import Release
from dropship.waits import SETTLED, EndpointStatus, normalise_status

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


VARIANT = "AllTraffic"
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"


def scaling_resource_id(endpoint_name: str, variant: str = VARIANT) -> str:
    return f"endpoint/{endpoint_name}/variant/{variant}"


def capture_uri(bucket: str, model: str) -> str:
    """Where a model's data capture goes: the same prefix on every release of the model."""
    return f"s3://{bucket}/capture/{model}/"


def _explain(exc: ClientError) -> str:
    return f"{error_code(exc)} {exc.response.get('Error', {}).get('Message', '')}".strip()


class Endpoints:
    """``autoscaling``: an Application Auto Scaling client; given, a variant's scalable target is
    deregistered before its endpoint is deleted (SageMaker refuses the delete otherwise)."""

    def __init__(self, client: Any, stack_name: str = "dropship", autoscaling: Any = None) -> None:
        self.client = client
        self.stack_name = stack_name
        self.autoscaling = autoscaling

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

    def create_endpoint_config(self, release: Release, capture: dict[str, Any] | None = None) -> None:
        """``capture``: the endpoint config's DataCaptureConfig (None: no capture)."""
        deployment = release.deployment
        variant: dict[str, Any] = {"VariantName": VARIANT, "ModelName": release.resource_name}
        if deployment.serverless is not None:
            variant["ServerlessConfig"] = {
                "MemorySizeInMB": deployment.serverless.memory_size_mb,
                "MaxConcurrency": deployment.serverless.max_concurrency,
            }
        else:
            variant["InstanceType"] = deployment.instance_type
            variant["InitialInstanceCount"] = deployment.initial_instance_count
            variant["InitialVariantWeight"] = 1.0
        extra = {"DataCaptureConfig": capture} if capture else {}
        self._create(
            self.client.create_endpoint_config,
            EndpointConfigName=release.resource_name,
            ProductionVariants=[variant],
            Tags=self.tags(release),
            **extra,
        )

    def create_endpoint(self, release: Release) -> None:
        self._create(
            self.client.create_endpoint,
            EndpointName=release.resource_name,
            EndpointConfigName=release.resource_name,
            Tags=self.tags(release),
        )

    def create_all(self, release: Release, execution_role_arn: str, capture: dict[str, Any] | None = None) -> None:
        """The model, endpoint config and endpoint of a release, in that order (each idempotent)."""
        self.create_model(release, execution_role_arn)
        self.create_endpoint_config(release, capture)
        self.create_endpoint(release)

    def fleet(self, name: str) -> Fleet | None:
        """What a running endpoint has now: its instance count and data capture (None if it is gone)."""
        try:
            endpoint = self.client.describe_endpoint(EndpointName=name)
            config = self.client.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
        except ClientError as exc:
            if _not_found(exc):
                return None
            raise
        variants = endpoint.get("ProductionVariants") or [{}]
        capture = config.get("DataCaptureConfig") or None
        return Fleet(
            instance_count=int(variants[0].get("CurrentInstanceCount") or 0),
            capture=capture if capture and capture.get("EnableCapture") else None,
        )

    def register_autoscaling(self, release: Release) -> None:
        """A scalable target and a target-tracking policy on the release's variant (idempotent)."""
        config = release.deployment.autoscaling
        if config is None or self.autoscaling is None:
            return
        target = {
            "ServiceNamespace": "sagemaker",
            "ResourceId": scaling_resource_id(release.endpoint_name),
            "ScalableDimension": SCALABLE_DIMENSION,
        }
        self.autoscaling.register_scalable_target(
            **target, MinCapacity=config.min_instances, MaxCapacity=config.max_instances
        )
        self.autoscaling.put_scaling_policy(
            PolicyName=f"{release.endpoint_name}-invocations-per-instance",
            PolicyType="TargetTrackingScaling",
            TargetTrackingScalingPolicyConfiguration={
                "TargetValue": float(config.target_invocations_per_instance),
                "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
                "ScaleInCooldown": config.scale_in_cooldown_s,
                "ScaleOutCooldown": config.scale_out_cooldown_s,
            },
            **target,
        )

    def deregister_autoscaling(self, name: str) -> None:
        """Remove the variant's scalable target (and with it its policies), if it has one."""
        if self.autoscaling is None:
            return
        try:
            self.autoscaling.deregister_scalable_target(
                ServiceNamespace="sagemaker", ResourceId=scaling_resource_id(name), ScalableDimension=SCALABLE_DIMENSION
            )
        except ClientError as exc:
            if error_code(exc) not in ("ObjectNotFoundException", "ValidationException"):
                raise

    def describe(self, name: str) -> EndpointView | None:
        """The endpoint's status (normalised), failure reason and creation time; None if it does not exist."""
        try:
            described = self.client.describe_endpoint(EndpointName=name)
        except ClientError as exc:
            if _not_found(exc):
                return None
            raise
        return EndpointView(
            status=normalise_status(described["EndpointStatus"]) or "Failed",
            failure_reason=described.get("FailureReason"),
            created=described.get("CreationTime"),
        )

    def delete(self, name: str) -> Deletion:
        """Delete the endpoint, endpoint config and model named ``name``, each on its own.

        Returns what was deleted and what could not be (with the reason). Only what exists is deleted:
        the delete permissions are limited to resources tagged with the stack, which an absent resource
        cannot show. SageMaker refuses to delete an endpoint it is still creating or updating: then nothing
        is deleted and ``busy`` says the status, so the caller can delete it once it settles.
        """
        view = self.describe(name)
        if view is not None and view.status not in (*SETTLED, "Deleting"):
            return Deletion(busy=view.status)
        deleted: list[str] = []
        failed: list[str] = []
        try:
            self.deregister_autoscaling(name)
        except ClientError as exc:
            failed.append(f"autoscaling of {name}: {_explain(exc)}")
        resources: list[tuple[str, Any, Any, str]] = [
            (
                "endpoint-config",
                self.client.describe_endpoint_config,
                self.client.delete_endpoint_config,
                "EndpointConfigName",
            ),
            ("model", self.client.describe_model, self.client.delete_model, "ModelName"),
        ]
        if view is not None:  # described above
            resources.insert(0, ("endpoint", None, self.client.delete_endpoint, "EndpointName"))
        for kind, describe, delete, param in resources:
            try:
                if describe is not None:
                    describe(**{param: name})
                delete(**{param: name})
                deleted.append(kind)
            except ClientError as exc:
                if not _not_found(exc):
                    failed.append(f"{kind} {name}: {_explain(exc)}")
        return Deletion(deleted=deleted, failed=failed)


@dataclass(frozen=True)
class Fleet:
    instance_count: int
    capture: dict[str, Any] | None


@dataclass(frozen=True)
class EndpointView:
    status: EndpointStatus
    failure_reason: str | None
    created: datetime | None


@dataclass(frozen=True)
class Deletion:
    """What ``Endpoints.delete`` did: deleted kinds, failures (with reasons), or the status that kept it."""

    deleted: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    busy: EndpointStatus | None = None

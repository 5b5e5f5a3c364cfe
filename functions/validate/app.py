"""Validate Artifact: check the key, manifest and tarball; copy it to its content-addressed key; record the
release as started and announce it.

Code: the tarball is streamed and inspected member by member, and the manifest resolved against the stack.
"""

from typing import Any

from dropship import clients, outcome, settings
from dropship.artifact import ArtifactLimits
from dropship.history import ReleaseTable
from dropship.notify import Notifier
from dropship.observability import task
from dropship.validate import ReleaseDefaults, ValidateInput, validate_release


class Env(settings.Settings):
    table_name: str
    event_bus_name: str
    default_image_uri: str
    allowed_image_prefixes: str
    default_instance_type: str
    default_instance_count: int
    default_smoke_body: str
    default_smoke_content_type: str
    max_artifact_bytes: int
    max_uncompressed_bytes: int
    max_artifact_members: int
    lock_poll_seconds: int
    endpoint_check_seconds: int
    endpoint_timeout_seconds: int
    lock_timeout_seconds: int
    default_bake_seconds: int = 0
    default_max_error_rate: float = 0.0
    default_max_p99_latency_ms: int = 0
    watch_period_seconds: int = 60
    allow_package_sources: bool = False

    def defaults(self) -> ReleaseDefaults:
        return ReleaseDefaults(
            image_uri=self.default_image_uri,
            allowed_image_prefixes=settings.csv(self.allowed_image_prefixes),
            instance_type=self.default_instance_type,
            instance_count=self.default_instance_count,
            smoke_body=self.default_smoke_body,
            smoke_content_type=self.default_smoke_content_type,
            limits=ArtifactLimits(
                max_compressed_bytes=self.max_artifact_bytes,
                max_uncompressed_bytes=self.max_uncompressed_bytes,
                max_members=self.max_artifact_members,
            ),
            poll_interval_s=self.lock_poll_seconds,
            endpoint_check_s=self.endpoint_check_seconds,
            endpoint_timeout_s=self.endpoint_timeout_seconds,
            lock_timeout_s=self.lock_timeout_seconds,
            bake_s=self.default_bake_seconds,
            max_error_rate=self.default_max_error_rate or None,  # 0 (the parameter's "off") is no guard
            max_p99_latency_ms=self.default_max_p99_latency_ms or None,
            watch_period_s=self.watch_period_seconds,
            allow_package_sources=self.allow_package_sources,
        )


@task
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    env = settings.load(Env)
    request = ValidateInput.model_validate(event)
    table = ReleaseTable(clients.dynamodb(), env.table_name)
    validated = validate_release(
        request.event,
        execution_arn=request.execution_arn,
        started_at=request.started_at,
        defaults=env.defaults(),
        s3=clients.s3(),
        table=table,
    )
    if validated.release is not None:
        outcome.announce_started(table, Notifier(clients.events(), env.event_bus_name), validated.release)
    return validated.model_dump(mode="json")

"""Validate Artifact: from the S3 event to a ``Release`` (or a duplicate to ignore).

Checks the key, reads the manifest, streams the tarball once (never to memory or /tmp) to check it and
compute its sha256, then copies that exact object version to its immutable content-addressed key.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field

from dropship.artifact import ArtifactLimits, inspect_artifact
from dropship.aws import error_code
from dropship.errors import (
    ArtifactTooLargeError,
    ImageNotAllowedError,
    InvalidArtifactError,
    InvalidManifestError,
)
from dropship.events import S3ObjectCreated
from dropship.history import ReleaseTable
from dropship.manifest import ALLOW_PACKAGE_SOURCES_ENV, Manifest, SmokeSample, WatchConfig, parse_manifest
from dropship.names import MANIFEST_PIN, NO_MANIFEST, DropKey, parse_drop_key, released_key, resource_name
from dropship.release import Deployment, Release, WatchPlan, aligned_check

# Keeps the execution state (which carries the manifest's samples) far below Step Functions' 256 KiB.
MANIFEST_MAX_BYTES = 32 * 1024
_SEQUENCER_WIDTH = 32
# Where an image reference's registry, repository, tag and digest parts meet.
_IMAGE_NAME_BOUNDARIES = "/:@"


class ReleaseDefaults(BaseModel):
    """What the stack decides when the manifest does not."""

    model_config = ConfigDict(defer_build=True, frozen=True)

    image_uri: str
    allowed_image_prefixes: tuple[str, ...]
    instance_type: str
    instance_count: int
    smoke_body: str
    smoke_content_type: str
    limits: ArtifactLimits
    poll_interval_s: int = Field(ge=1)
    endpoint_check_s: int = Field(ge=1)
    bake_s: int = Field(0, ge=0)
    max_error_rate: float | None = None
    max_p99_latency_ms: int | None = None
    watch_period_s: int = Field(60, ge=10)
    allow_package_sources: bool = False
    endpoint_timeout_s: int = Field(ge=1)
    lock_timeout_s: int = Field(ge=1)


class ValidateInput(BaseModel):
    model_config = ConfigDict(defer_build=True)

    event: S3ObjectCreated
    execution_arn: str
    started_at: datetime


class Validated(BaseModel):
    """The task's result: either a release to run or a duplicate event to ignore."""

    model_config = ConfigDict(defer_build=True)

    duplicate: bool
    release: Release | None = None


def object_identity(event: S3ObjectCreated) -> str:
    """What makes two S3 events "the same upload": the object version, else its etag and sequencer."""
    obj = event.detail.object
    return obj.version_id or f"{obj.etag}.{obj.sequencer or ''}"


def upload_order(event: S3ObjectCreated) -> str:
    """A sortable key that totally orders uploads: the event time (S3 gives whole seconds), then S3's
    sequencer compared as a hexadecimal number (it increases with every write; AWS documents it for
    ordering the events of one key, and it is all S3 offers within a second), then the key."""
    sequencer = (event.detail.object.sequencer or "").upper().zfill(_SEQUENCER_WIDTH)
    moment = event.time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{moment}#{sequencer}#{event.detail.object.key}"


def validate_release(
    event: S3ObjectCreated,
    execution_arn: str,
    started_at: datetime,
    defaults: ReleaseDefaults,
    s3: Any,
    table: ReleaseTable,
) -> Validated:
    bucket, key = event.detail.bucket.name, event.detail.object.key
    if not table.claim_object(bucket, key, object_identity(event), execution_arn):
        return Validated(duplicate=True)

    drop = parse_drop_key(key)
    version_id = event.detail.object.version_id
    head = _head(s3, bucket, key, version_id)
    manifest_version, raw_manifest = _pinned_manifest(s3, bucket, drop, head, version_id)
    manifest = parse_manifest(raw_manifest)
    deployment = resolve_deployment(manifest, defaults)
    report = _inspect(s3, bucket, key, version_id, head, defaults.limits)
    target = released_key(drop.model, report.sha256)
    _copy_if_absent(s3, bucket, key, version_id, target)

    return Validated(
        duplicate=False,
        release=Release(
            model=drop.model,
            version=drop.version,
            alias=manifest.alias,
            execution_arn=execution_arn,
            bucket=bucket,
            key=key,
            object_version=version_id,
            uploaded_at=event.time,
            upload_order=upload_order(event),
            manifest_version=manifest_version,
            started_at=started_at,
            sha256=report.sha256,
            compressed_bytes=report.compressed_bytes,
            uncompressed_bytes=report.uncompressed_bytes,
            artifact_key=target,
            resource_name=resource_name(drop.model, drop.version, execution_arn),
            deployment=deployment,
            retain=manifest.retain,
            smoke_test=manifest.smoke_test or [default_sample(defaults)],
            watch=resolve_watch(manifest, defaults),
            default_smoke=not manifest.smoke_test,
            poll_interval_s=defaults.poll_interval_s,
            endpoint_check_s=aligned_check(defaults.endpoint_check_s, defaults.endpoint_timeout_s),
            endpoint_timeout_s=defaults.endpoint_timeout_s,
            lock_timeout_s=defaults.lock_timeout_s,
        ),
    )


def default_sample(defaults: ReleaseDefaults) -> SmokeSample:
    """One request with the stack's default body; any 2xx passes, a 4xx warns (see ``smoke.evaluate_default``)."""
    return SmokeSample(body=defaults.smoke_body, content_type=defaults.smoke_content_type, accept="*/*")


def resolve_watch(manifest: Manifest, defaults: ReleaseDefaults) -> WatchPlan:
    """The manifest's watch, its missing fields from the stack's defaults (a guard the manifest names wins)."""
    watch = manifest.watch or WatchConfig()
    bake_s = defaults.bake_s if watch.bake_s is None else watch.bake_s
    return WatchPlan.of(
        bake_s,
        alarms=list(watch.alarms),
        max_error_rate=watch.max_error_rate if watch.max_error_rate is not None else defaults.max_error_rate,
        max_p99_latency_ms=(
            watch.max_p99_latency_ms if watch.max_p99_latency_ms is not None else defaults.max_p99_latency_ms
        ),
        period_s=defaults.watch_period_s,
    )


def resolve_deployment(manifest: Manifest, defaults: ReleaseDefaults) -> Deployment:
    """What SageMaker is asked to create. The stack's own variables join the manifest's environment."""
    environment = dict(manifest.environment)
    if defaults.allow_package_sources:
        environment[ALLOW_PACKAGE_SOURCES_ENV] = "true"
    image = manifest.image_uri or defaults.image_uri
    if manifest.image_uri is not None and not any(
        image_matches_prefix(manifest.image_uri, prefix) for prefix in defaults.allowed_image_prefixes
    ):
        raise ImageNotAllowedError(
            f"image_uri {manifest.image_uri!r} is not allowed: it must be in a registry or repository named by "
            f"one of {list(defaults.allowed_image_prefixes)} (stack parameter AllowedImagePrefixes; a prefix "
            "not ending in '/', ':' or '@' must be followed by one of them in the image)"
        )
    if manifest.serverless is not None:
        return Deployment(
            image_uri=image,
            serverless=manifest.serverless,
            environment=environment,
            tags=manifest.tags,
        )
    return Deployment(
        image_uri=image,
        instance_type=manifest.instance_type or defaults.instance_type,
        initial_instance_count=manifest.initial_instance_count or defaults.instance_count,
        instance_count_from_manifest=manifest.initial_instance_count is not None,
        environment=environment,
        tags=manifest.tags,
        autoscaling=manifest.autoscaling,
        data_capture=manifest.data_capture,
    )


def _pinned_manifest(
    s3: Any, bucket: str, drop: DropKey, head: dict[str, Any], version_id: str | None
) -> tuple[str | None, bytes | None]:
    """The release.json that applies to this tarball: ``(its version id, its bytes)``, or ``(None, None)``.

    The version the CLI pinned in the tarball's metadata, else the newest version written no later than the
    tarball. S3 keeps write times to the second, so a manifest written in the same second counts as before.
    """
    pinned = (head.get("Metadata") or {}).get(MANIFEST_PIN)
    if pinned == NO_MANIFEST:
        return None, None
    if pinned:
        try:
            return pinned, _read_manifest(s3, bucket, drop.manifest_key, pinned)
        except ClientError as exc:
            if error_code(exc) in ("NoSuchKey", "NoSuchVersion", "404", "InvalidArgument"):
                raise InvalidManifestError(
                    f"the release.json version {pinned!r} pinned in the tarball's metadata ({MANIFEST_PIN}) is gone"
                ) from exc
            raise
    if version_id is None:  # an unversioned bucket keeps only the current manifest
        return None, _read_current_manifest(s3, bucket, drop.manifest_key)
    written = _last_write_before(s3, bucket, drop.manifest_key, head["LastModified"])
    if written is None:
        return None, None
    return written, _read_manifest(s3, bucket, drop.manifest_key, written)


def _last_write_before(s3: Any, bucket: str, key: str, moment: datetime) -> str | None:
    """The version id of ``key`` current at ``moment`` (None if it did not exist or had been deleted)."""
    newest: tuple[datetime, str | None] | None = None
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=key):
        entries = [(v, v["VersionId"]) for v in page.get("Versions", [])]
        entries += [(marker, None) for marker in page.get("DeleteMarkers", [])]
        for entry, version in entries:
            if (
                entry["Key"] == key
                and entry["LastModified"] <= moment
                and (newest is None or entry["LastModified"] > newest[0])
            ):
                newest = (entry["LastModified"], version)
    return newest[1] if newest else None


def image_matches_prefix(image: str, prefix: str) -> bool:
    """Whether ``image`` is under ``prefix`` at a registry or repository boundary.

    A plain ``startswith`` would let ``123.dkr.ecr.us-east-1.amazonaws.com`` admit
    ``123.dkr.ecr.us-east-1.amazonaws.com.evil.io/x`` and ``repo`` admit ``repo-evil``.
    """
    if not prefix or not image.startswith(prefix):
        return False
    rest = image[len(prefix) :]
    return prefix[-1] in _IMAGE_NAME_BOUNDARIES or rest == "" or rest[0] in _IMAGE_NAME_BOUNDARIES


def _read_current_manifest(s3: Any, bucket: str, key: str) -> bytes | None:
    try:
        return _read_manifest(s3, bucket, key, None)
    except ClientError as exc:
        if error_code(exc) in ("NoSuchKey", "404"):
            return None
        raise


def _read_manifest(s3: Any, bucket: str, key: str, version_id: str | None) -> bytes:
    response = s3.get_object(Bucket=bucket, Key=key, **_version_args(version_id))
    body: bytes = response["Body"].read(MANIFEST_MAX_BYTES + 1)
    if len(body) > MANIFEST_MAX_BYTES:
        raise InvalidManifestError(f"release.json is larger than {MANIFEST_MAX_BYTES} bytes")
    return body


def _version_args(version_id: str | None) -> dict[str, str]:
    return {"VersionId": version_id} if version_id else {}


def _head(s3: Any, bucket: str, key: str, version_id: str | None) -> dict[str, Any]:
    try:
        return dict(s3.head_object(Bucket=bucket, Key=key, **_version_args(version_id)))
    except ClientError as exc:
        if error_code(exc) in ("NoSuchKey", "404", "NoSuchVersion"):
            raise InvalidArtifactError(
                f"s3://{bucket}/{key} is gone (deleted or overwritten before it could be validated)"
            ) from exc
        raise


def _inspect(
    s3: Any, bucket: str, key: str, version_id: str | None, head: dict[str, Any], limits: ArtifactLimits
) -> Any:
    if head["ContentLength"] > limits.max_compressed_bytes:
        raise ArtifactTooLargeError(
            f"model.tar.gz is {head['ContentLength']} bytes, over the {limits.max_compressed_bytes} byte limit "
            "(stack parameter MaxArtifactBytes)"
        )
    body = s3.get_object(Bucket=bucket, Key=key, **_version_args(version_id))["Body"]
    try:
        return inspect_artifact(body, limits)
    finally:
        body.close()


def _copy_if_absent(s3: Any, bucket: str, key: str, version_id: str | None, target: str) -> None:
    """Copy the validated object version to ``target``, unless that content was released before."""
    try:
        s3.head_object(Bucket=bucket, Key=target)
        return
    except ClientError as exc:
        if error_code(exc) not in ("404", "NoSuchKey"):
            raise
    source = {"Bucket": bucket, "Key": key, **_version_args(version_id)}
    s3.copy(source, bucket, target)  # managed copy: multipart for large objects (CopyObject stops at 5 GB)

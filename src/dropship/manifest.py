"""The optional release manifest, ``models/<model>/<version>/release.json`` (CONTRACT.md section 1).

This pydantic model is the one definition of the manifest; ``schemas/release.schema.json`` is generated
from it (``python -m dropship.manifest > schemas/release.schema.json``) and a test keeps the two in sync.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
    model_validator,
)

from dropship.alias import DEFAULT_ALIAS
from dropship.errors import InvalidManifestError
from dropship.names import MODEL_MAX_LENGTH, MODEL_PATTERN

ENV_KEY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,1023}$"
RESERVED_ENV_PREFIX = "DROPSHIP_"
# Set on a model when the stack lets code/requirements.txt name its own package sources (--index-url ...).
ALLOW_PACKAGE_SOURCES_ENV = "DROPSHIP_ALLOW_PACKAGE_SOURCES"
INSTANCE_TYPE_PATTERN = r"^ml\.[a-z0-9]+\.[a-z0-9]+$"
TAG_KEY_PATTERN = r"^(?!aws:)[\w.:/=+\-@ ]{1,128}$"
SERVERLESS_MEMORY_SIZES = (1024, 2048, 3072, 4096, 5120, 6144)


class _Strict(BaseModel):
    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True)


class Expectation(_Strict):
    """What a smoke-test response must look like. At most one of the body checks."""

    status: int = Field(200, ge=100, le=599, description="Expected HTTP status of the container.")
    json_equals: Any = Field(None, description="The response body, parsed as JSON, must equal this.")
    json_schema: dict[str, Any] | None = Field(
        None, description="The response body, parsed as JSON, must validate against this JSON Schema."
    )
    contains: str | None = Field(None, description="The response body, as text, must contain this.")

    @model_serializer(mode="wrap")
    def _only_given_checks(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Serialise only the checks that were given, so the result validates back to the same expectation."""
        data: dict[str, Any] = handler(self)
        return {k: v for k, v in data.items() if k == "status" or k in self.model_fields_set}

    @model_validator(mode="after")
    def _one_body_check(self) -> Expectation:
        checks = [name for name in ("json_equals", "json_schema", "contains") if name in self.model_fields_set]
        if len(checks) > 1:
            raise ValueError(f"expect takes at most one of json_equals, json_schema, contains (got {checks})")
        return self


class SmokeSample(_Strict):
    """One request sent to the new endpoint before the alias moves."""

    body: str | None = Field(None, description="Request body as text.")
    body_base64: str | None = Field(None, description="Request body as base64, for binary payloads.")
    content_type: str = Field("application/json", min_length=1, max_length=1024)
    accept: str = Field("application/json", min_length=1, max_length=1024)
    expect: Expectation = Field(default_factory=Expectation)
    max_latency_ms: int | None = Field(None, gt=0, le=60_000, description="Latency budget for this request.")

    @model_validator(mode="after")
    def _one_body(self) -> SmokeSample:
        if (self.body is None) == (self.body_base64 is None):
            raise ValueError("a smoke_test sample needs exactly one of body or body_base64")
        if self.body_base64 is not None:
            try:
                base64.b64decode(self.body_base64, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ValueError(f"body_base64 is not valid base64: {exc}") from exc
        return self

    def payload(self) -> bytes:
        if self.body_base64 is not None:
            return base64.b64decode(self.body_base64)
        return (self.body or "").encode()


class ServerlessConfig(_Strict):
    memory_size_mb: int = Field(2048, description=f"One of {SERVERLESS_MEMORY_SIZES}.")
    max_concurrency: int = Field(5, ge=1, le=200)

    @model_validator(mode="after")
    def _memory_size(self) -> ServerlessConfig:
        if self.memory_size_mb not in SERVERLESS_MEMORY_SIZES:
            raise ValueError(f"memory_size_mb must be one of {SERVERLESS_MEMORY_SIZES}")
        return self


class WatchConfig(_Strict):
    """How the release is watched once live; a tripped alarm or guard rolls the alias back (AlarmTriggered)."""

    bake_s: int | None = Field(
        None, ge=0, le=86_400, description="How long to watch after the alias moves; 0 turns the watch off."
    )
    alarms: list[str] = Field(
        default_factory=list, max_length=10, description="CloudWatch alarms (by name) that roll the release back."
    )
    max_error_rate: float | None = Field(
        None, gt=0, le=1, description="Guard: the share of invocations the model answers with a 5xx."
    )
    max_p99_latency_ms: int | None = Field(
        None, gt=0, le=600_000, description="Guard: the model's p99 latency (SageMaker's ModelLatency)."
    )

    @model_validator(mode="after")
    def _alarm_names(self) -> WatchConfig:
        for name in self.alarms:
            if not 1 <= len(name) <= 255 or any(ord(ch) < 32 for ch in name):
                raise ValueError(f"alarm name {name!r} is not a CloudWatch alarm name")
        return self


class AutoscalingConfig(_Strict):
    """Application Auto Scaling on the endpoint's variant: target tracking of invocations per instance."""

    min_instances: int = Field(ge=1, le=100)
    max_instances: int = Field(ge=1, le=100)
    target_invocations_per_instance: int = Field(ge=1, le=1_000_000)
    scale_in_cooldown_s: int = Field(300, ge=0, le=86_400)
    scale_out_cooldown_s: int = Field(60, ge=0, le=86_400)

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingConfig:
        if self.max_instances < self.min_instances:
            raise ValueError("max_instances must be at least min_instances")
        return self


CaptureMode = Literal["input", "output"]
CAPTURE_MODES: tuple[CaptureMode, ...] = ("input", "output")


class DataCaptureManifest(_Strict):
    """SageMaker data capture to s3://<ModelBucket>/capture/<model>/ (the same on every release of the model)."""

    sampling_percent: int = Field(ge=0, le=100, description="0 turns capture off.")
    capture: list[CaptureMode] = Field(default_factory=lambda: list(CAPTURE_MODES), min_length=1, max_length=2)


class Manifest(_Strict):
    """``release.json``: how to release this version. Every field is optional; unknown fields are errors."""

    model_config = ConfigDict(
        defer_build=True,
        extra="forbid",
        frozen=True,
        title="dropship release manifest",
        json_schema_extra={"$id": "https://github.com/dropship/dropship/schemas/release.schema.json"},
    )

    instance_type: str | None = Field(None, pattern=INSTANCE_TYPE_PATTERN, examples=["ml.m5.large"])
    initial_instance_count: int | None = Field(None, ge=1, le=100)
    serverless: ServerlessConfig | None = None
    environment: dict[str, str] = Field(
        default_factory=dict, max_length=100, description="Container environment variables."
    )
    image_uri: str | None = Field(
        None, min_length=1, max_length=255, description="Must start with one of the stack's allowed prefixes."
    )
    alias: str = Field(
        DEFAULT_ALIAS, pattern=MODEL_PATTERN, max_length=MODEL_MAX_LENGTH, description="Alias to move on success."
    )
    retain: int = Field(1, ge=0, le=10, description="Previous releases that keep their endpoints.")
    smoke_test: list[SmokeSample] = Field(default_factory=list, max_length=20)
    watch: WatchConfig | None = None
    autoscaling: AutoscalingConfig | None = None
    data_capture: DataCaptureManifest | None = None
    tags: dict[str, str] = Field(default_factory=dict, max_length=40)

    @model_validator(mode="after")
    def _check(self) -> Manifest:
        if self.serverless is not None and (self.instance_type is not None or self.initial_instance_count is not None):
            raise ValueError("serverless cannot be combined with instance_type or initial_instance_count")
        if self.serverless is not None and (self.autoscaling is not None or self.data_capture is not None):
            raise ValueError("serverless endpoints take neither autoscaling nor data_capture (SageMaker scales them)")
        for key, value in self.environment.items():
            if not _matches(ENV_KEY_PATTERN, key):
                raise ValueError(f"environment variable name {key!r} is not valid")
            if key.startswith(RESERVED_ENV_PREFIX):
                raise ValueError(f"environment variable {key!r} is reserved ({RESERVED_ENV_PREFIX}* is the stack's)")
            if len(value) > 1024:
                raise ValueError(f"environment variable {key!r} is longer than 1024 characters")
        for key, value in self.tags.items():
            if not _matches(TAG_KEY_PATTERN, key) or key.startswith("dropship:"):
                raise ValueError(f"tag key {key!r} is not allowed (aws: and dropship: are reserved)")
            if len(value) > 256:
                raise ValueError(f"tag {key!r} has a value longer than 256 characters")
        return self


def _matches(pattern: str, value: str) -> bool:
    return re.fullmatch(pattern, value) is not None


def parse_manifest(raw: bytes | str | None) -> Manifest:
    """Parse ``release.json`` (None when there is none), raising ``InvalidManifestError`` naming the field."""
    if raw is None:
        return Manifest()
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidManifestError(f"release.json is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidManifestError("release.json must be a JSON object")
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}" for err in exc.errors()
        )
        raise InvalidManifestError(f"release.json is invalid: {problems}") from exc


def json_schema() -> dict[str, Any]:
    return Manifest.model_json_schema(mode="validation")


if __name__ == "__main__":
    print(json.dumps(json_schema(), indent=2, sort_keys=True))

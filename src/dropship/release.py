"""The typed data that flows between the states of the ``Release`` state machine.

``Release`` is ``$.release`` in the execution state: written once by Validate Artifact, read by every
later task. The outputs of later tasks are small models of their own, kept beside it.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from dropship.alias import AliasRecord
from dropship.manifest import AutoscalingConfig, DataCaptureManifest, ServerlessConfig, SmokeSample
from dropship.notify import ErrorDetail


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """``2026-11-25T12:00:00Z``: the timestamp format of the alias record and the events."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Data(BaseModel):
    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True)


class Deployment(_Data):
    """What SageMaker is asked to create, resolved from the manifest and the stack's defaults."""

    image_uri: str
    instance_type: str | None = None
    initial_instance_count: int | None = None
    # False when the count is the stack's default: the new fleet then starts at least as large as the live one.
    instance_count_from_manifest: bool = False
    serverless: ServerlessConfig | None = None
    environment: dict[str, str] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    autoscaling: AutoscalingConfig | None = None
    # None: keep what the live release of the model captures (capture is never silently lost).
    data_capture: DataCaptureManifest | None = None


def aligned_check(check_s: int, timeout_s: int) -> int:
    """At most ``check_s`` between a wait's own looks, and a whole number of them in ``timeout_s``, so that
    the last look comes as the timeout ends (an EndpointTimeout or the end of a watch is then on time)."""
    looks = max(1, math.ceil(timeout_s / check_s))
    return max(1, math.ceil(timeout_s / looks))


class WatchPlan(_Data):
    """How long the live release is watched and what rolls it back, resolved from manifest and stack."""

    bake_s: int = Field(ge=0)
    alarms: list[str] = Field(default_factory=list)
    max_error_rate: float | None = None
    max_p99_latency_ms: int | None = None
    period_s: int = Field(60, description="The guards' CloudWatch alarm period.")
    check_s: int = Field(60, ge=1, description="How often the watch looks itself, should an alarm event be lost.")

    @classmethod
    def of(cls, bake_s: int, **fields: Any) -> WatchPlan:
        """A plan whose checks come at most a minute apart and fit the bake a whole number of times, so the
        last one ends it on time."""
        return cls(bake_s=bake_s, check_s=aligned_check(60, bake_s), **fields)


class Release(_Data):
    model: str
    version: str
    alias: str
    execution_arn: str
    bucket: str
    key: str
    object_version: str | None = None
    uploaded_at: datetime
    upload_order: str = Field(description="Where this upload stands among all uploads (see validate.upload_order).")
    manifest_version: str | None = Field(None, description="The release.json object version applied, if any.")
    started_at: datetime
    sha256: str
    compressed_bytes: int
    uncompressed_bytes: int
    artifact_key: str
    resource_name: str
    deployment: Deployment
    retain: int
    smoke_test: list[SmokeSample]
    watch: WatchPlan = Field(default_factory=lambda: WatchPlan(bake_s=0))
    default_smoke: bool = Field(False, description="smoke_test is the stack's default sample, not the manifest's.")
    poll_interval_s: int = Field(description="How often a release waiting for the model's lock tries again.")
    endpoint_check_s: int = Field(
        300, description="How often Wait For InService checks the endpoint itself, should its event be lost."
    )
    endpoint_timeout_s: int
    lock_timeout_s: int

    @property
    def artifact_uri(self) -> str:
        return f"s3://{self.bucket}/{self.artifact_key}"

    @property
    def endpoint_name(self) -> str:
        return self.resource_name


class LockResult(_Data):
    acquired: bool
    holder: str | None = None


class EndpointState(_Data):
    status: str
    failure_reason: str | None = None


class SmokeResult(_Data):
    sample: int
    label: str = Field("", description="Which sample: 'the stack's default sample' or 'sample N of release.json'.")
    passed: bool
    status: int
    latency_ms: float
    problems: list[str] = Field(default_factory=list)
    warning: str | None = None


class SmokeReport(_Data):
    passed: bool
    summary: str
    results: list[SmokeResult]

    @property
    def warnings(self) -> list[str]:
        return [result.warning for result in self.results if result.warning]


class WatchFigures(_Data):
    """What the watch saw of the new endpoint (recorded in the history, shown by the CLI)."""

    until: str = Field(description="When the bake ends (UTC).")
    invocations: int = 0
    errors_5xx: int = 0
    errors_4xx: int = Field(0, description="Shown, not guarded: a 4xx is the request's fault as the model sees it.")
    p99_latency_ms: float | None = None

    @property
    def error_rate(self) -> float | None:
        return self.errors_5xx / self.invocations if self.invocations else None

    def describe(self) -> str:
        rate = f"{self.error_rate:.1%} 5xx" if self.error_rate is not None else "no 5xx share yet"
        if self.errors_4xx and self.invocations:
            rate += f", {self.errors_4xx / self.invocations:.1%} 4xx"
        p99 = f"p99 {self.p99_latency_ms:.0f} ms" if self.p99_latency_ms is not None else "no latency yet"
        return f"{self.invocations} invocations, {rate}, {p99}"


class WatchOutcome(_Data):
    """``$.watch``: how the watch ended when it did not roll the release back."""

    watched_s: int = 0
    figures: WatchFigures | None = None
    ended_by_hand: str | None = Field(None, description="Set when `dropship rollback` ended the watch early.")


class AliasUpdate(_Data):
    """``$.alias``: the alias record Update Alias wrote, and the one it replaced (what a watch rolls back to)."""

    record: AliasRecord
    previous: AliasRecord | None = None


class StateError(BaseModel):
    """``$.error`` as Step Functions' Catch writes it."""

    model_config = ConfigDict(defer_build=True, populate_by_name=True, extra="ignore")

    error: str = Field("States.Runtime", alias="Error")
    cause: str = Field("", alias="Cause")


class ExecutionState(BaseModel):
    """The whole execution state, as the clean-up and notify tasks receive it (``Payload.$: "$"``)."""

    model_config = ConfigDict(defer_build=True, extra="allow")

    release: Release | None = None
    error: StateError | None = None
    smoke: SmokeReport | None = None
    alias: AliasUpdate | None = None
    watch: WatchOutcome | None = None
    failure: ErrorDetail | None = None
    cleanup_error: StateError | None = None
    finish_error: StateError | None = None  # Finish Release failed: the reaper finishes the release
    detail: dict[str, Any] = Field(default_factory=dict)


class NotifyInput(BaseModel):
    """Payload of Finish Release and Clean Up: the whole state plus the execution's identity."""

    model_config = ConfigDict(defer_build=True, extra="forbid")

    state: ExecutionState
    execution_arn: str
    started_at: datetime

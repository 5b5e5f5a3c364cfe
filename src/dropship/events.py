"""The S3 event that starts a release: ``Object Created`` as EventBridge delivers it (tests/events/ holds
AWS's documented example, and the handler tests feed it to Validate Artifact).

dropship's own model of the fields it reads, rather than Powertools' ``S3EventNotificationEventBridgeModel``:
importing Powertools' parser models imports every event model it has, about 75 ms of every cold start
of Validate Artifact (benchmarks/cold_start.py).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class _Event(BaseModel):
    model_config = ConfigDict(defer_build=True, extra="ignore", populate_by_name=True, frozen=True)


class S3Bucket(_Event):
    name: str


class S3Object(_Event):
    key: str
    size: int | None = None
    etag: str | None = None
    version_id: str | None = Field(None, alias="version-id", description="Absent on an unversioned bucket.")
    sequencer: str | None = Field(None, description="Orders the events of one key (a hexadecimal number).")


class S3ObjectDetail(_Event):
    bucket: S3Bucket
    object: S3Object
    reason: str | None = None


class S3ObjectCreated(_Event):
    """An S3 ``Object Created`` event on EventBridge (source ``aws.s3``)."""

    id: str
    source: str
    detail_type: str = Field(alias="detail-type")
    time: datetime = Field(description="When S3 finished the request (whole seconds).")
    account: str
    region: str
    detail: S3ObjectDetail

"""The stack's DynamoDB table: release history, the per-model lock and its queue, duplicate claims,
alias watermarks and endpoint waits.

One table, keyed ``pk``/``sk``:

- ``MODEL#<model>`` / ``RELEASE#<started_at>#<execution>``: one ``ReleaseRecord`` per release attempt.
- ``MODEL#<model>`` / ``LOCK``: the per-model lock, with a lease so a lost execution cannot hold it forever.
- ``MODEL#<model>`` / ``QUEUE#<upload order>#<execution>``: releases waiting for the lock. The lock goes to
  the waiter whose upload came first, so releases of one model run in upload order.
- ``MODEL#<model>`` / ``ALIAS#<alias>``: the newest upload ever made live on that alias (its upload order),
  so an older upload that finishes late never moves the alias back over a newer one.
- ``OBJECT#<bucket>/<key>#<version>`` / ``CLAIM``: which execution owns an S3 object version, so
  duplicate S3 events start at most one release. Expires (TTL) after 30 days.
"""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from dropship.aws import conditional_write
from dropship.release import SmokeResult, WatchFigures

CLAIM_TTL_S = 30 * 24 * 3600
_serializer = TypeSerializer()
_deserializer = TypeDeserializer()

STAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"

Outcome = Literal["RUNNING", "SUCCEEDED", "FAILED"]
# What became of a release's endpoint: serving or retained for rollback, deleted by retention, or deleted
# because the release failed.
EndpointLifecycle = Literal["active", "retired", "deleted"]
FINAL_OUTCOMES: tuple[Outcome, ...] = ("SUCCEEDED", "FAILED")


class ReleaseRecord(BaseModel):
    """One release attempt in the history table: the one definition the pipeline and the CLI share."""

    model_config = ConfigDict(defer_build=True, extra="ignore", frozen=True)

    model: str
    execution_arn: str
    started_at: str = Field(description="When the execution started (STAMP_FORMAT, UTC).")
    version: str = "(unknown)"
    outcome: Outcome = "RUNNING"
    stage: str | None = None
    path: list[str] = Field(default_factory=list, description="Every stage reached, in order.")
    key: str | None = None
    sha256: str | None = None
    endpoint_name: str | None = None
    alias: str | None = None
    uploaded_at: str | None = None
    upload_order: str | None = None
    manifest_version: str | None = None
    finished_at: str | None = None
    duration_s: float | None = None
    error_code: str | None = None
    error_message: str | None = None
    warnings: list[str] = Field(default_factory=list)
    smoke: list[SmokeResult] = Field(default_factory=list)
    watch: WatchFigures | None = Field(None, description="What the watch saw of the live release.")
    released_at: str | None = None
    live_at: str | None = Field(None, description="When it last became live (released or rolled back to).")
    rolled_back_from: str | None = Field(None, description="The version a rollback made this release replace.")
    rolled_back_at: str | None = Field(None, description="When a rollback (by hand or by a watch) replaced it.")
    rolled_back_to: str | None = Field(None, description="The version that rollback went back to.")
    rollback_reason: str | None = Field(None, description="Why it was rolled back (a watch's alarm, or by hand).")
    endpoint_state: EndpointLifecycle | None = None

    @property
    def finished(self) -> bool:
        return self.outcome in FINAL_OUTCOMES

    @property
    def started(self) -> datetime:
        return parse_stamp(self.started_at)

    def live_order(self) -> tuple[str, str]:
        """Sort key: when it last became live on its alias (released or rolled back to)."""
        return self.live_at or self.released_at or "", self.started_at


@functools.cache
def _field_adapter(name: str) -> TypeAdapter[Any]:
    field = ReleaseRecord.model_fields.get(name)
    if field is None:
        raise ValueError(f"ReleaseRecord has no field {name!r}")
    return TypeAdapter(field.annotation)


def stamp(moment: datetime) -> str:
    """Sortable, microsecond timestamp used in keys."""
    return moment.astimezone(UTC).strftime(STAMP_FORMAT)


def parse_stamp(text: str) -> datetime:
    return datetime.strptime(text, STAMP_FORMAT).replace(tzinfo=UTC)


def execution_name(execution_arn: str) -> str:
    return execution_arn.rsplit(":", 1)[-1]


def execution_start(started_at: datetime) -> str:
    """An execution's start time as records are keyed: to the millisecond, as Step Functions reports it
    (``$$.Execution.StartTime``, and ``startDate`` in its events)."""
    return stamp(started_at.replace(microsecond=started_at.microsecond // 1000 * 1000))


def release_sk(started_at: datetime, execution_arn: str) -> str:
    return f"RELEASE#{execution_start(started_at)}#{execution_name(execution_arn)}"


def claim_pk(bucket: str, key: str, object_identity: str) -> str:
    """Key of the claim an execution holds on one S3 object version (``object_identity``: its version id)."""
    return f"OBJECT#{bucket}/{key}#{object_identity}"


def _model_pk(model: str) -> str:
    return f"MODEL#{model}"


def _queue_sk(upload_order: str, execution_arn: str) -> str:
    return f"QUEUE#{upload_order}#{execution_name(execution_arn)}"


def _dynamo(value: Any) -> Any:
    """DynamoDB takes numbers as Decimal, never float."""
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, list):
        return [_dynamo(v) for v in value]
    if isinstance(value, dict):
        return {k: _dynamo(v) for k, v in value.items()}
    return value


def _serialize(value: Any) -> dict[str, Any]:
    return dict(_serializer.serialize(_dynamo(value)))


def _to_item(values: dict[str, Any]) -> dict[str, Any]:
    return {k: _serialize(v) for k, v in values.items() if v is not None}


def _from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _plain(_deserializer.deserialize(v)) for k, v in item.items()}


def _plain(value: Any) -> Any:
    """DynamoDB numbers come back as Decimal: give ints and floats back."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _record_values(values: dict[str, Any]) -> dict[str, Any]:
    """Check each field against ``ReleaseRecord`` and turn it into what the table stores."""
    return {
        name: _field_adapter(name).dump_python(_field_adapter(name).validate_python(v), mode="json")
        for name, v in values.items()
    }


def _update_expression(values: dict[str, Any]) -> tuple[str, dict[str, str], dict[str, Any]]:
    names = {f"#{k}": k for k in values}
    vals = {f":{k}": _serialize(v) for k, v in values.items()}
    return "SET " + ", ".join(f"#{k} = :{k}" for k in values), names, vals


class ReleaseTable:
    def __init__(self, client: Any, table_name: str) -> None:
        self.client = client
        self.table = table_name

    # -- duplicate detection -------------------------------------------------------------------

    def claim_object(self, bucket: str, key: str, object_identity: str, execution_arn: str) -> bool:
        """True if this execution owns the object version (first to claim it, or claiming again on retry)."""
        return conditional_write(
            self.client.put_item,
            TableName=self.table,
            Item=_to_item(
                {
                    "pk": claim_pk(bucket, key, object_identity),
                    "sk": "CLAIM",
                    "execution_arn": execution_arn,
                    "expires_at": int(time.time()) + CLAIM_TTL_S,
                }
            ),
            ConditionExpression="attribute_not_exists(pk) OR execution_arn = :me",
            ExpressionAttributeValues={":me": {"S": execution_arn}},
        )

    def claimant(self, bucket: str, key: str, object_identity: str) -> str | None:
        """The execution that claimed an S3 object version, once Validate Artifact has run for it."""
        item = self.client.get_item(
            TableName=self.table,
            Key=_to_item({"pk": claim_pk(bucket, key, object_identity), "sk": "CLAIM"}),
            ConsistentRead=True,
        ).get("Item")
        return str(_from_item(item)["execution_arn"]) if item else None

    # -- release records -----------------------------------------------------------------------

    def _record_key(self, model: str, started_at: datetime, execution_arn: str) -> dict[str, Any]:
        return _to_item({"pk": _model_pk(model), "sk": release_sk(started_at, execution_arn)})

    def put_release(self, model: str, started_at: datetime, execution_arn: str, **values: Any) -> None:
        """Create or overwrite fields of one release attempt's record (each checked against ``ReleaseRecord``)."""
        expression, names, vals = _update_expression(
            {
                "model": model,
                "execution_arn": execution_arn,
                "started_at": execution_start(started_at),
                **_record_values(values),
            }
        )
        self.client.update_item(
            TableName=self.table,
            Key=self._record_key(model, started_at, execution_arn),
            UpdateExpression=expression,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=vals,
        )

    def finish_release(
        self, model: str, started_at: datetime, execution_arn: str, outcome: Outcome, **values: Any
    ) -> bool:
        """Record a final outcome once: False if the record was already final (nothing is written then)."""
        expression, names, vals = _update_expression(
            {
                "model": model,
                "execution_arn": execution_arn,
                "started_at": execution_start(started_at),
                **_record_values({"outcome": outcome, **values}),
            }
        )
        vals[":running"] = {"S": "RUNNING"}
        return conditional_write(
            self.client.update_item,
            TableName=self.table,
            Key=self._record_key(model, started_at, execution_arn),
            UpdateExpression=expression,
            ConditionExpression="attribute_not_exists(#outcome) OR #outcome = :running",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=vals,
        )

    def enter_stage(self, model: str, started_at: datetime, execution_arn: str, stage: str) -> None:
        """Record the state a release has reached, appending it to the release's state path."""
        self.client.update_item(
            TableName=self.table,
            Key=self._record_key(model, started_at, execution_arn),
            UpdateExpression="SET #stage = :stage, #path = list_append(if_not_exists(#path, :empty), :step)",
            ExpressionAttributeNames={"#stage": "stage", "#path": "path"},
            ExpressionAttributeValues={
                ":stage": {"S": stage},
                ":step": {"L": [{"S": stage}]},
                ":empty": {"L": []},
            },
        )

    def add_warnings(self, model: str, started_at: datetime, execution_arn: str, warnings: list[str]) -> None:
        """Append warnings (something went wrong that did not fail the release) to its record."""
        if not warnings:
            return
        self.client.update_item(
            TableName=self.table,
            Key=self._record_key(model, started_at, execution_arn),
            UpdateExpression="SET #warnings = list_append(if_not_exists(#warnings, :empty), :new)",
            ExpressionAttributeNames={"#warnings": "warnings"},
            ExpressionAttributeValues={":new": _serialize(list(warnings)), ":empty": {"L": []}},
        )

    def release(self, model: str, started_at: datetime, execution_arn: str) -> ReleaseRecord | None:
        item = self.client.get_item(
            TableName=self.table, Key=self._record_key(model, started_at, execution_arn), ConsistentRead=True
        ).get("Item")
        return ReleaseRecord.model_validate(_from_item(item)) if item else None

    def records(self, model: str, newest_first: bool = True) -> list[ReleaseRecord]:
        """Every release attempt of a model, by start time."""
        pages = self.client.get_paginator("query").paginate(
            TableName=self.table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ExpressionAttributeValues={":pk": {"S": _model_pk(model)}, ":prefix": {"S": "RELEASE#"}},
            ScanIndexForward=not newest_first,
        )
        return [ReleaseRecord.model_validate(_from_item(item)) for page in pages for item in page.get("Items", [])]

    def releases(self, model: str, newest_first: bool = True) -> list[dict[str, Any]]:
        """``records`` as plain JSON values (what ``--json`` prints)."""
        return [record.model_dump(mode="json", exclude_none=True) for record in self.records(model, newest_first)]

    def models(self) -> list[str]:
        pages = self.client.get_paginator("scan").paginate(
            TableName=self.table,
            FilterExpression="begins_with(pk, :m) AND begins_with(sk, :r)",
            ExpressionAttributeValues={":m": {"S": "MODEL#"}, ":r": {"S": "RELEASE#"}},
            ProjectionExpression="pk",
        )
        return sorted({item["pk"]["S"][len("MODEL#") :] for page in pages for item in page.get("Items", [])})

    # -- the per-model lock and its queue ------------------------------------------------------

    def acquire_lock(self, model: str, execution_arn: str, lease_s: int) -> str | None:
        """Take the model's lock. Returns None when taken, else the execution ARN holding it."""
        now = int(time.time())
        taken = conditional_write(
            self.client.put_item,
            TableName=self.table,
            Item=_to_item(
                {
                    "pk": _model_pk(model),
                    "sk": "LOCK",
                    "holder": execution_arn,
                    "acquired_at": now,
                    "lease_until": now + lease_s,
                }
            ),
            ConditionExpression="attribute_not_exists(pk) OR holder = :me OR lease_until < :now",
            ExpressionAttributeValues={":me": {"S": execution_arn}, ":now": {"N": str(now)}},
        )
        if taken:
            return None
        return self.lock_holder(model) or "(released meanwhile)"

    def lock_holder(self, model: str) -> str | None:
        item = self.client.get_item(
            TableName=self.table, Key=_to_item({"pk": _model_pk(model), "sk": "LOCK"}), ConsistentRead=True
        ).get("Item")
        return str(_from_item(item)["holder"]) if item else None

    def release_lock(self, model: str, execution_arn: str) -> bool:
        """Release the lock if this execution holds it. True if it did."""
        return conditional_write(
            self.client.delete_item,
            TableName=self.table,
            Key=_to_item({"pk": _model_pk(model), "sk": "LOCK"}),
            ConditionExpression="holder = :me",
            ExpressionAttributeValues={":me": {"S": execution_arn}},
        )

    def enqueue(self, model: str, upload_order: str, execution_arn: str, lease_s: int) -> None:
        """Join the model's lock queue (again: the lease is renewed). The lease outlives a lost execution."""
        self.client.put_item(
            TableName=self.table,
            Item=_to_item(
                {
                    "pk": _model_pk(model),
                    "sk": _queue_sk(upload_order, execution_arn),
                    "execution_arn": execution_arn,
                    "lease_until": int(time.time()) + lease_s,
                    "expires_at": int(time.time()) + lease_s,
                }
            ),
        )

    def dequeue(self, model: str, upload_order: str, execution_arn: str) -> None:
        self.client.delete_item(
            TableName=self.table, Key=_to_item({"pk": _model_pk(model), "sk": _queue_sk(upload_order, execution_arn)})
        )

    def first_waiter(self, model: str) -> str | None:
        """The execution whose upload came first among those waiting for the lock (expired waits skipped)."""
        now = int(time.time())
        pages = self.client.get_paginator("query").paginate(
            TableName=self.table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ExpressionAttributeValues={":pk": {"S": _model_pk(model)}, ":prefix": {"S": "QUEUE#"}},
            ConsistentRead=True,
        )
        for page in pages:
            for item in page.get("Items", []):
                entry = _from_item(item)
                if int(entry.get("lease_until", 0)) >= now:
                    return str(entry["execution_arn"])
        return None

    # -- alias watermark -----------------------------------------------------------------------

    def newest_live_upload(self, model: str, alias: str) -> dict[str, Any] | None:
        item = self.client.get_item(
            TableName=self.table,
            Key=_to_item({"pk": _model_pk(model), "sk": f"ALIAS#{alias}"}),
            ConsistentRead=True,
        ).get("Item")
        return _from_item(item) if item else None

    def advance_alias_watermark(self, model: str, alias: str, upload_order: str, version: str) -> bool:
        """Record ``upload_order`` as the newest upload made live on the alias; False unless it is newer
        than every upload made live before (strictly: the same upload never goes live twice)."""
        return conditional_write(
            self.client.put_item,
            TableName=self.table,
            Item=_to_item(
                {"pk": _model_pk(model), "sk": f"ALIAS#{alias}", "upload_order": upload_order, "version": version}
            ),
            ConditionExpression="attribute_not_exists(upload_order) OR upload_order < :mine",
            ExpressionAttributeValues={":mine": {"S": upload_order}},
        )

"""The stack's DynamoDB table: release history, the per-model lock, duplicate claims, alias watermarks.

One table, keyed ``pk``/``sk``:

- ``MODEL#<model>`` / ``RELEASE#<started_at>#<execution>``: one item per release attempt.
- ``MODEL#<model>`` / ``LOCK``: the per-model lock, with a lease so a lost execution cannot hold it forever.
- ``MODEL#<model>`` / ``ALIAS#<alias>``: the newest upload ever made live on that alias, so an older
  upload that finishes late never moves the alias back over a newer one.
- ``OBJECT#<bucket>/<key>#<version>`` / ``CLAIM``: which execution owns an S3 object version, so
  duplicate S3 events start at most one release. Expires (TTL) after 30 days.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from dropship.aws import error_code

CLAIM_TTL_S = 30 * 24 * 3600
_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


STAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def stamp(moment: datetime) -> str:
    """Sortable, microsecond timestamp used in keys."""
    return moment.astimezone(UTC).strftime(STAMP_FORMAT)


def parse_stamp(text: str) -> datetime:
    return datetime.strptime(text, STAMP_FORMAT).replace(tzinfo=UTC)


def live_order(item: dict[str, Any]) -> tuple[str, str]:
    """Sort key of a release record: when it last became live on its alias (released or rolled back to)."""
    return str(item.get("live_at") or item.get("released_at", "")), str(item.get("started_at", ""))


def execution_name(execution_arn: str) -> str:
    return execution_arn.rsplit(":", 1)[-1]


def release_sk(started_at: datetime, execution_arn: str) -> str:
    return f"RELEASE#{stamp(started_at)}#{execution_name(execution_arn)}"


def _model_pk(model: str) -> str:
    return f"MODEL#{model}"


def _claim_key(bucket: str, key: str, version: str) -> dict[str, str]:
    return {"pk": f"OBJECT#{bucket}/{key}#{version}", "sk": "CLAIM"}


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


def _update_expression(values: dict[str, Any]) -> tuple[str, dict[str, str], dict[str, Any]]:
    names = {f"#{k}": k for k in values}
    vals = {f":{k}": _serialize(v) for k, v in values.items()}
    return "SET " + ", ".join(f"#{k} = :{k}" for k in values), names, vals


class ReleaseTable:
    def __init__(self, client: Any, table_name: str) -> None:
        self.client = client
        self.table = table_name

    # -- duplicate detection -------------------------------------------------------------------

    def claim_object(self, bucket: str, key: str, version: str, execution_arn: str) -> bool:
        """True if this execution owns the object version (first to claim it, or claiming again on retry)."""
        try:
            self.client.put_item(
                TableName=self.table,
                Item=_to_item(
                    {
                        **_claim_key(bucket, key, version),
                        "execution_arn": execution_arn,
                        "expires_at": int(time.time()) + CLAIM_TTL_S,
                    }
                ),
                ConditionExpression="attribute_not_exists(pk) OR execution_arn = :me",
                ExpressionAttributeValues={":me": {"S": execution_arn}},
            )
            return True
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise

    def claim_owner(self, bucket: str, key: str, version: str) -> str | None:
        """The execution that claimed the object version, or None while none has."""
        item = self.client.get_item(
            TableName=self.table, Key=_to_item(_claim_key(bucket, key, version)), ConsistentRead=True
        ).get("Item")
        return str(_from_item(item)["execution_arn"]) if item else None

    # -- release records -----------------------------------------------------------------------

    def put_release(self, model: str, started_at: datetime, execution_arn: str, **values: Any) -> None:
        """Create or overwrite the fields of one release attempt's record."""
        expression, names, vals = _update_expression(
            {"model": model, "execution_arn": execution_arn, "started_at": stamp(started_at), **values}
        )
        self.client.update_item(
            TableName=self.table,
            Key=_to_item({"pk": _model_pk(model), "sk": release_sk(started_at, execution_arn)}),
            UpdateExpression=expression,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=vals,
        )

    def enter_stage(self, model: str, started_at: datetime, execution_arn: str, stage: str) -> None:
        """Record the state a release has reached, appending it to the release's state path."""
        self.client.update_item(
            TableName=self.table,
            Key=_to_item({"pk": _model_pk(model), "sk": release_sk(started_at, execution_arn)}),
            UpdateExpression="SET #stage = :stage, #path = list_append(if_not_exists(#path, :empty), :step)",
            ExpressionAttributeNames={"#stage": "stage", "#path": "path"},
            ExpressionAttributeValues={
                ":stage": {"S": stage},
                ":step": {"L": [{"S": stage}]},
                ":empty": {"L": []},
            },
        )

    def releases(self, model: str, newest_first: bool = True) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {":pk": {"S": _model_pk(model)}, ":prefix": {"S": "RELEASE#"}},
            "ScanIndexForward": not newest_first,
        }
        while True:
            page = self.client.query(**kwargs)
            items.extend(_from_item(item) for item in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def models(self) -> list[str]:
        found: set[str] = set()
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "FilterExpression": "begins_with(pk, :m) AND begins_with(sk, :r)",
            "ExpressionAttributeValues": {":m": {"S": "MODEL#"}, ":r": {"S": "RELEASE#"}},
            "ProjectionExpression": "pk",
        }
        while True:
            page = self.client.scan(**kwargs)
            found.update(item["pk"]["S"][len("MODEL#") :] for item in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return sorted(found)
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # -- the per-model lock --------------------------------------------------------------------

    def acquire_lock(self, model: str, execution_arn: str, lease_s: int) -> str | None:
        """Take the model's lock. Returns None when taken, else the execution ARN holding it."""
        now = int(time.time())
        try:
            self.client.put_item(
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
            return None
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
        item = self.client.get_item(
            TableName=self.table, Key=_to_item({"pk": _model_pk(model), "sk": "LOCK"}), ConsistentRead=True
        ).get("Item")
        return _from_item(item)["holder"] if item else "(released meanwhile)"

    def release_lock(self, model: str, execution_arn: str) -> bool:
        """Release the lock if this execution holds it. True if it did."""
        try:
            self.client.delete_item(
                TableName=self.table,
                Key=_to_item({"pk": _model_pk(model), "sk": "LOCK"}),
                ConditionExpression="holder = :me",
                ExpressionAttributeValues={":me": {"S": execution_arn}},
            )
            return True
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise

    # -- alias watermark -----------------------------------------------------------------------

    def newest_live_upload(self, model: str, alias: str) -> dict[str, Any] | None:
        item = self.client.get_item(
            TableName=self.table,
            Key=_to_item({"pk": _model_pk(model), "sk": f"ALIAS#{alias}"}),
            ConsistentRead=True,
        ).get("Item")
        return _from_item(item) if item else None

    def advance_alias_watermark(self, model: str, alias: str, uploaded_at: str, version: str) -> bool:
        """Record ``uploaded_at`` as the newest upload made live on the alias; False if a newer one was."""
        try:
            self.client.put_item(
                TableName=self.table,
                Item=_to_item(
                    {
                        "pk": _model_pk(model),
                        "sk": f"ALIAS#{alias}",
                        "uploaded_at": uploaded_at,
                        "version": version,
                    }
                ),
                ConditionExpression="attribute_not_exists(pk) OR uploaded_at <= :mine",
                ExpressionAttributeValues={":mine": {"S": uploaded_at}},
            )
            return True
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise

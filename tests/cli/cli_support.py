"""Support for the CLI tests: a stand-in for the dropship stack in a moto account, and CLI results.

The stand-in has what the CLI touches: the versioned model bucket, the releases table (pk/sk), the event
bus, and a CloudFormation stack ``dropship`` whose Outputs name them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from dropship.alias import AliasRecord, AliasStore
from dropship.history import ReleaseTable

REGION = "us-east-1"
BUCKET = "dropship-modelbucket-test"
TABLE = "dropship-ReleasesTable-test"
BUS = "dropship-releases"
PREFIX = "/dropship"
STATE_MACHINE_ARN = f"arn:aws:states:{REGION}:123456789012:stateMachine:dropship-Release"


@dataclass
class Result:
    code: int
    out: str
    err: str

    def assert_error(self, *fragments: str) -> str:
        """Exit 1 and exactly one ``dropship: error: ...`` line on stderr, holding every fragment."""
        assert self.code == 1, self
        lines = self.err.strip().splitlines()
        assert len(lines) == 1, self.err
        assert lines[0].startswith("dropship: error: "), lines[0]
        for fragment in fragments:
            assert fragment in lines[0], (fragment, lines[0])
        return lines[0]


@dataclass
class Account:
    """Clients of the moto account plus the stack's resources, and helpers to seed release history."""

    s3: Any
    ddb: Any
    ssm: Any
    sagemaker: Any
    sqs: Any
    events_queue_url: str
    logs: Any
    cloudformation: Any
    table: ReleaseTable = field(init=False)
    aliases: AliasStore = field(init=False)

    def __post_init__(self) -> None:
        self.table = ReleaseTable(self.ddb, TABLE)
        self.aliases = AliasStore(self.ssm, PREFIX)

    def endpoint(self, name: str) -> str:
        """A SageMaker endpoint (moto makes it InService at once)."""
        self.sagemaker.create_model(
            ModelName=name,
            PrimaryContainer={"Image": "local/dropship:latest", "ModelDataUrl": f"s3://{BUCKET}/released/x"},
            ExecutionRoleArn="arn:aws:iam::123456789012:role/sagemaker",
        )
        self.sagemaker.create_endpoint_config(
            EndpointConfigName=name,
            ProductionVariants=[
                {
                    "VariantName": "AllTraffic",
                    "ModelName": name,
                    "InstanceType": "ml.m5.large",
                    "InitialInstanceCount": 1,
                }
            ],
        )
        self.sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
        return name

    def release(
        self,
        model: str,
        version: str,
        started: str,
        outcome: str = "SUCCEEDED",
        endpoint_state: str | None = "active",
        alias: str = "live",
        **values: Any,
    ) -> dict[str, Any]:
        """A release record as the state machine writes it; ``started`` like ``2026-11-25T12:00:00``."""
        path = values.pop("path", None)
        started_at = datetime.fromisoformat(started).replace(tzinfo=UTC)
        arn = f"arn:aws:states:{REGION}:123456789012:execution:dropship-Release:{model}-{version}-{started[-8:]}"
        record: dict[str, Any] = {
            "version": version,
            "outcome": outcome,
            "alias": alias,
            "endpoint_name": f"{model}-{version}-{started[-2:]}",
            "sha256": f"sha-{model}-{version}",
            **values,
        }
        if outcome == "SUCCEEDED":
            record.setdefault("released_at", started.split(".")[0] + "Z")
            record.setdefault("duration_s", Decimal("125.5"))
            record["endpoint_state"] = endpoint_state
        elif endpoint_state != "active":  # a failed release's endpoint: "deleted" by its clean-up
            record["endpoint_state"] = endpoint_state
        record = {k: v for k, v in record.items() if v is not None}  # endpoint_name=None: it never got one
        self.table.put_release(model, started_at, arn, **record)
        if path is None:
            path = ["Started", "Locked", "Live"] if outcome == "SUCCEEDED" else ["Started", "Locked"]
        for stage in path:
            self.table.enter_stage(model, started_at, arn, stage)
        return {**record, "execution_arn": arn, "model": model}

    def point(self, alias: str, item: dict[str, Any]) -> AliasRecord:
        record = AliasRecord(
            model=item["model"],
            version=item["version"],
            endpoint_name=item["endpoint_name"],
            sha256=item["sha256"],
            released_at=item.get("released_at", "2026-11-25T12:00:00Z"),
            execution_arn=item["execution_arn"],
        )
        self.aliases.put(alias, record)
        return record

    def events(self) -> list[dict[str, Any]]:
        """dropship events delivered so far (through an EventBridge rule to SQS)."""
        messages = self.sqs.receive_message(QueueUrl=self.events_queue_url, MaxNumberOfMessages=10).get("Messages", [])
        return [json.loads(message["Body"]) for message in messages]


STACK_TEMPLATE = {
    # The artifact limits the CLI checks a folder against before uploading it (template.yaml's defaults).
    "Parameters": {
        "MaxArtifactBytes": {"Type": "Number", "Default": 10737418240},
        "MaxUncompressedBytes": {"Type": "Number", "Default": 21474836480},
        "MaxArtifactMembers": {"Type": "Number", "Default": 100000},
    },
    "Resources": {"Marker": {"Type": "AWS::Logs::LogGroup", "Properties": {"LogGroupName": "dropship-marker"}}},
    "Outputs": {
        "ModelBucketName": {"Value": BUCKET},
        "ReleaseStateMachineArn": {"Value": STATE_MACHINE_ARN},
        "EventBusName": {"Value": BUS},
        "ReleasesTableName": {"Value": TABLE},
        "AliasPrefix": {"Value": PREFIX},
    },
}

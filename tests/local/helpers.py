"""What the observability tests share: endpoints of the sample model, and events caught on the default bus."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

from dropship.local import LocalStack
from tests.local.conftest import wait_until
from tests.local.sample_project import model_tarball

ACCOUNT, REGION = "123456789012", "us-east-1"


def start_endpoint(
    aws: Callable[[str], Any],
    stack: LocalStack,
    name: str,
    *,
    coef: list[float] | None = None,
    instances: int = 1,
    capture: dict[str, Any] | None = None,
) -> None:
    """Upload the sample linear model and create its model, endpoint config and endpoint, all called ``name``."""
    bucket = stack.outputs["BucketName"]
    key = f"released/{name}/model.tar.gz"
    aws("s3").put_object(
        Bucket=bucket, Key=key, Body=model_tarball({"model.json": json.dumps({"coef": coef or [1.0]}).encode()})
    )
    sagemaker = aws("sagemaker")
    sagemaker.create_model(
        ModelName=name,
        ExecutionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/sagemaker",
        PrimaryContainer={"Image": "local/dropship-serve:latest", "ModelDataUrl": f"s3://{bucket}/{key}"},
    )
    extra = {"DataCaptureConfig": capture} if capture else {}
    sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": name,
                "InitialInstanceCount": instances,
                "InstanceType": "ml.m5.large",
            }
        ],
        **extra,
    )
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)


def in_service(aws: Callable[[str], Any], name: str) -> dict[str, Any]:
    """DescribeEndpoint once the endpoint is InService (fails the test if it settles otherwise)."""
    sagemaker = aws("sagemaker")
    described: dict[str, Any] = wait_until(
        lambda: (
            (d := sagemaker.describe_endpoint(EndpointName=name))["EndpointStatus"] not in ("Creating", "Updating")
            and d
        ),
        60,
    )
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")
    return described


class EventSink:
    """A queue receiving the default bus's events that match ``pattern`` (as a user's rule would)."""

    def __init__(self, aws: Callable[[str], Any], pattern: dict[str, Any]) -> None:
        self.sqs = aws("sqs")
        name = f"sink-{uuid.uuid4().hex[:12]}"
        self.url = self.sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events = aws("events")
        events.put_rule(Name=name, EventPattern=json.dumps(pattern))
        events.put_targets(Rule=name, Targets=[{"Id": "queue", "Arn": arn}])
        self.received: list[dict[str, Any]] = []

    def drain(self) -> list[dict[str, Any]]:
        """Every event received so far."""
        while True:
            messages = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                return self.received
            for message in messages:
                self.received.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])

    def await_event(self, matches: Callable[[dict[str, Any]], bool], timeout_s: float = 30.0) -> dict[str, Any]:
        event: dict[str, Any] = wait_until(
            lambda: next((e for e in self.drain() if matches(e)), None), timeout_s, interval_s=0.2
        )
        return event

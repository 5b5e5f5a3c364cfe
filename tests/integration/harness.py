"""Driving and observing releases the way a user does: S3 uploads in, AWS APIs out."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3

from dropship.names import MANIFEST_NAME

TEST_PARAMETERS = {
    "LockPollSeconds": "1",
    "EndpointCheckSeconds": "3",
    "DefaultBakeSeconds": "0",
    "WatchPeriodSeconds": "10",
    "EndpointTimeoutSeconds": "25",
    "LockTimeoutSeconds": "120",
    "MaxUncompressedBytes": str(8 * 1024 * 1024),
    "DefaultImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/dropship-serve:0.1.0",
}
TERMINAL = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")


@dataclass
class Outcome:
    execution_arn: str
    status: str
    error: str | None
    cause: str | None
    states: list[str]
    output: dict[str, Any] = field(default_factory=dict)


class Harness:
    """What a test needs to drive releases the way a user does: S3 uploads, then AWS APIs to observe."""

    def __init__(self, endpoint_url: str, outputs: dict[str, str]) -> None:
        self.outputs = outputs
        session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")

        def client(name: str) -> Any:
            return session.client(name, endpoint_url=endpoint_url)

        self.s3, self.sfn, self.ssm = client("s3"), client("stepfunctions"), client("ssm")
        self.dynamodb, self.sagemaker, self.runtime = (
            client("dynamodb"),
            client("sagemaker"),
            client("sagemaker-runtime"),
        )
        self.events, self.sqs = client("events"), client("sqs")
        self.lambda_, self.cfn = client("lambda"), client("cloudformation")
        self.cloudwatch, self.autoscaling = client("cloudwatch"), client("application-autoscaling")
        self.bucket = outputs["ModelBucketName"]
        self.state_machine = outputs["ReleaseStateMachineArn"]
        self.queue_url = self._subscribe_to_release_events()

    def _subscribe_to_release_events(self) -> str:
        queue_url = self.sqs.create_queue(QueueName="dropship-test-events")["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        bus = self.outputs["EventBusName"]
        self.events.put_rule(Name="all-releases", EventBusName=bus, EventPattern=json.dumps({"source": ["dropship"]}))
        self.events.put_targets(Rule="all-releases", EventBusName=bus, Targets=[{"Id": "q", "Arn": queue_arn}])
        return str(queue_url)

    # -- acting as a user -----------------------------------------------------------------------

    def upload(self, model: str, version: str, artifact: bytes, manifest: dict[str, Any] | None = None) -> str:
        """Upload manifest then tarball to the drop key; returns the tarball's S3 version id."""
        prefix = f"models/{model}/{version}/"
        if manifest is not None:
            self.s3.put_object(Bucket=self.bucket, Key=prefix + MANIFEST_NAME, Body=json.dumps(manifest).encode())
        return str(self.s3.put_object(Bucket=self.bucket, Key=prefix + "model.tar.gz", Body=artifact)["VersionId"])

    def release(self, model: str, version: str, artifact: bytes, manifest: dict[str, Any] | None = None) -> Outcome:
        key = f"models/{model}/{version}/model.tar.gz"
        version_id = self.upload(model, version, artifact, manifest)
        return self.wait(self.execution_for(key, version_id))

    # -- observing ------------------------------------------------------------------------------

    def executions_for(self, key: str, version_id: str | None = None) -> list[str]:
        found = []
        for page in self.sfn.get_paginator("list_executions").paginate(stateMachineArn=self.state_machine):
            for execution in page["executions"]:
                described = self.sfn.describe_execution(executionArn=execution["executionArn"])
                detail = json.loads(described["input"]).get("detail", {}).get("object", {})
                if detail.get("key") == key and (version_id is None or detail.get("version-id") == version_id):
                    found.append(execution["executionArn"])
        return found

    def execution_for(self, key: str, version_id: str | None = None, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.executions_for(key, version_id)
            if found:
                return found[0]
            time.sleep(0.2)
        raise AssertionError(f"no execution started for {key} ({version_id}) within {timeout} s")

    def wait(self, execution_arn: str, timeout: float = 180) -> Outcome:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            described = self.sfn.describe_execution(executionArn=execution_arn)
            if described["status"] in TERMINAL:
                return Outcome(
                    execution_arn=execution_arn,
                    status=described["status"],
                    error=described.get("error"),
                    cause=described.get("cause"),
                    states=self.states_entered(execution_arn),
                    output=json.loads(described.get("output") or "{}"),
                )
            time.sleep(0.25)
        raise AssertionError(f"{execution_arn} still running after {timeout} s")

    def await_condition(self, condition: Callable[[], bool], timeout: float = 30, what: str = "") -> None:
        """Poll an observable condition (an AWS API's answer) until it holds."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"still not {what or 'true'} after {timeout} s")
            time.sleep(0.2)

    def states_entered(self, execution_arn: str) -> list[str]:
        history = self.sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
        return [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]

    def history_events(self, execution_arn: str) -> list[dict[str, Any]]:
        return list(self.sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"])

    def alias(self, model: str, alias: str = "live") -> dict[str, Any] | None:
        name = f"{self.outputs['AliasPrefix']}/{model}/{alias}"
        try:
            return dict(json.loads(self.ssm.get_parameter(Name=name)["Parameter"]["Value"]))
        except self.ssm.exceptions.ParameterNotFound:
            return None

    def releases(self, model: str) -> list[dict[str, Any]]:
        from dropship.history import ReleaseTable

        return ReleaseTable(self.dynamodb, self.outputs["ReleasesTableName"]).releases(model)

    def sagemaker_resources(self, model: str) -> dict[str, list[str]]:
        """Every SageMaker model, endpoint config and endpoint whose name belongs to ``model``."""
        prefix = f"{model}-"
        return {
            "models": [
                m["ModelName"] for m in self.sagemaker.list_models()["Models"] if m["ModelName"].startswith(prefix)
            ],
            "configs": [
                c["EndpointConfigName"]
                for c in self.sagemaker.list_endpoint_configs()["EndpointConfigs"]
                if c["EndpointConfigName"].startswith(prefix)
            ],
            "endpoints": [
                e["EndpointName"]
                for e in self.sagemaker.list_endpoints()["Endpoints"]
                if e["EndpointName"].startswith(prefix)
            ],
        }

    def release_events(self, model: str) -> list[dict[str, Any]]:
        """Drain the test queue; keep this model's events (others are put back for their tests)."""
        mine, others = [], []
        while True:
            messages = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                break
            for message in messages:
                event = json.loads(message["Body"])
                (mine if event["detail"].get("model") == model else others).append(event)
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        for event in others:
            self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=json.dumps(event))
        return mine

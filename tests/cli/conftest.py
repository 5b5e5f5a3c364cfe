"""Fixtures: the command line against an in-process moto account holding a stand-in for the dropship stack."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from cli_support import BUCKET, BUS, REGION, STACK_TEMPLATE, TABLE, Account, Result
from moto import mock_aws

from dropship.cli import main


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    for name in (
        "DROPSHIP_ENDPOINT_URL",
        "DROPSHIP_LOCAL_PORT",
        "DROPSHIP_STACK_NAME",
        "AWS_ENDPOINT_URL",
        "DROPSHIP_PROJECT_DIR",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DROPSHIP_HOME", str(tmp_path / "dropship-home"))


def deploy_stand_in(client: Callable[[str], Any], template: dict[str, Any] = STACK_TEMPLATE) -> Account:
    """The stand-in for the dropship stack, created with ``client(service)`` clients."""
    s3 = client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    ddb = client("dynamodb")
    ddb.create_table(
        TableName=TABLE,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
    )
    events = client("events")
    events.create_event_bus(Name=BUS)
    sqs = client("sqs")
    queue_url = sqs.create_queue(QueueName="dropship-events")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="all-dropship", EventBusName=BUS, EventPattern=json.dumps({"source": ["dropship"]}))
    events.put_targets(Rule="all-dropship", EventBusName=BUS, Targets=[{"Id": "queue", "Arn": queue_arn}])
    client("cloudformation").create_stack(StackName="dropship", TemplateBody=json.dumps(template))
    return Account(
        s3=s3,
        ddb=ddb,
        ssm=client("ssm"),
        sagemaker=client("sagemaker"),
        sqs=sqs,
        events_queue_url=queue_url,
        logs=client("logs"),
        cloudformation=client("cloudformation"),
    )


@pytest.fixture
def aws(clean_env: None) -> Iterator[Account]:
    """Given a moto account with the dropship stack deployed."""
    with mock_aws():
        yield deploy_stand_in(lambda service: boto3.client(service, region_name=REGION))


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """Run ``dropship ARGS...`` in process; returns the exit code and what it printed."""

    def run(*args: str) -> Result:
        code = main(list(args))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run

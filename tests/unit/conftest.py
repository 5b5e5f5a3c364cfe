"""The unit tests' set-up.

- Hypothesis: deterministic by default, no example database on disk; ``HYPOTHESIS_PROFILE=explore`` runs
  the property tests with fresh random seeds and many more examples.
- ``account``: an emulated AWS account (moto, in process) with the stack's table, bus and alias
  parameters, for the domain logic's tests: real API semantics (conditions, pagination) without a network.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, settings
from moto import mock_aws

from dropship.alias import AliasStore
from dropship.endpoints import Endpoints
from dropship.history import ReleaseTable
from dropship.notify import Notifier
from dropship.parts import Parts
from dropship.waits import EndpointWaits
from dropship.watch import Watches

settings.register_profile("default", derandomize=True, database=None, deadline=None)
settings.register_profile(
    "explore", max_examples=2000, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

TABLE = "releases"
BUS = "dropship-releases"


@dataclass
class Account:
    dynamodb: Any
    sagemaker: Any
    ssm: Any
    events: Any
    sqs: Any
    stepfunctions: Any
    cloudwatch: Any
    autoscaling: Any
    queue_url: str

    @property
    def table(self) -> ReleaseTable:
        return ReleaseTable(self.dynamodb, TABLE)

    @property
    def endpoints(self) -> Endpoints:
        return Endpoints(self.sagemaker, autoscaling=self.autoscaling)

    @property
    def aliases(self) -> AliasStore:
        return AliasStore(self.ssm)

    @property
    def waits(self) -> EndpointWaits:
        return EndpointWaits(self.dynamodb, TABLE, self.stepfunctions)

    @property
    def notifier(self) -> Notifier:
        return Notifier(self.events, BUS)

    @property
    def watches(self) -> Watches:
        return Watches(self.dynamodb, TABLE, self.cloudwatch, self.stepfunctions)

    def parts(self, **replaced: Any) -> Parts:
        """The stack's parts on this account (some replaced, to inject failures)."""
        built = {
            "table": self.table,
            "endpoints": self.endpoints,
            "aliases": self.aliases,
            "waits": self.waits,
            "watches": self.watches,
            "notifier": self.notifier,
        }
        return Parts(**{**built, **replaced})

    def events_put(self) -> list[dict[str, Any]]:
        """Every dropship event put on the bus so far (drained)."""
        import json

        found = []
        while messages := self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages"):
            for message in messages:
                found.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return found


@pytest.fixture
def account() -> Iterator[Account]:
    with mock_aws():
        region = {"region_name": "us-east-1"}
        dynamodb = boto3.client("dynamodb", **region)
        dynamodb.create_table(
            TableName=TABLE,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk")],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        )
        events, sqs = boto3.client("events", **region), boto3.client("sqs", **region)
        events.create_event_bus(Name=BUS)
        queue_url = sqs.create_queue(QueueName="events")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name="all", EventBusName=BUS, EventPattern='{"source": ["dropship"]}')
        events.put_targets(Rule="all", EventBusName=BUS, Targets=[{"Id": "q", "Arn": queue_arn}])
        yield Account(
            dynamodb=dynamodb,
            sagemaker=boto3.client("sagemaker", **region),
            ssm=boto3.client("ssm", **region),
            events=events,
            sqs=sqs,
            stepfunctions=boto3.client("stepfunctions", **region),
            cloudwatch=boto3.client("cloudwatch", **region),
            autoscaling=boto3.client("application-autoscaling", **region),
            queue_url=queue_url,
        )

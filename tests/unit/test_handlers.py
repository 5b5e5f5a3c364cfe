"""The functions' handlers, called directly with AWS's documented events and a fake Lambda context: their
decorator stack (logging, metrics, tracing off), input parsing and settings, against the emulated account."""

from __future__ import annotations

import copy
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from dropship.errors import InternalError
from dropship.history import ReleaseTable
from dropship.settings import load
from tests.artifacts import iris_artifact
from tests.unit.conftest import BUS, TABLE, Account

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
EVENTS = Path(__file__).resolve().parents[1] / "events"
BUCKET = "models-bucket"


def event(name: str) -> dict[str, Any]:
    return dict(json.loads((EVENTS / name).read_text()))


def handler_module(function: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"handler_{function}", FUNCTIONS / function / "app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class FakeContext:
    """What the Lambda runtime passes a handler (the attributes Powertools reads)."""

    function_name: str = "dropship-Test"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:dropship-Test"
    aws_request_id: str = "52fdfc07-2182-154f-163f-5f0f9a621d72"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


@pytest.fixture
def environment(account: Account, monkeypatch: pytest.MonkeyPatch) -> Account:
    """The functions' environment as template.yaml sets it, on the emulated account."""
    variables = {
        "POWERTOOLS_SERVICE_NAME": "dropship",
        "POWERTOOLS_METRICS_NAMESPACE": "Dropship",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "TABLE_NAME": TABLE,
        "STACK_NAME": "dropship",
        "ALIAS_PREFIX": "/dropship",
        "EVENT_BUS_NAME": BUS,
        "DEFAULT_IMAGE_URI": "123456789012.dkr.ecr.us-east-1.amazonaws.com/dropship-serve:1",
        "ALLOWED_IMAGE_PREFIXES": "123456789012.dkr.ecr.us-east-1.amazonaws.com/",
        "DEFAULT_INSTANCE_TYPE": "ml.m5.large",
        "DEFAULT_INSTANCE_COUNT": "1",
        "DEFAULT_SMOKE_BODY": '{"instances": [[5.1, 3.5, 1.4, 0.2]]}',
        "DEFAULT_SMOKE_CONTENT_TYPE": "application/json",
        "MAX_ARTIFACT_BYTES": str(10 * 1024 * 1024),
        "MAX_UNCOMPRESSED_BYTES": str(20 * 1024 * 1024),
        "MAX_ARTIFACT_MEMBERS": "1000",
        "LOCK_POLL_SECONDS": "10",
        "ENDPOINT_CHECK_SECONDS": "300",
        "ENDPOINT_TIMEOUT_SECONDS": "1800",
        "LOCK_TIMEOUT_SECONDS": "3600",
        "DEFAULT_BAKE_SECONDS": "0",
    }
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    load.cache_clear()
    yield account
    load.cache_clear()


def test_validate_takes_s3s_documented_event_and_announces_the_release(environment: Account) -> None:
    import boto3

    # Given a tarball uploaded to a drop key of a versioned bucket
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    key = "models/churn/3/model.tar.gz"
    version_id = s3.put_object(Bucket=BUCKET, Key=key, Body=iris_artifact())["VersionId"]
    # And S3's event for it, as AWS documents it
    s3_event = copy.deepcopy(event("s3_object_created.json"))
    s3_event["detail"]["bucket"]["name"] = BUCKET
    s3_event["detail"]["object"].update({"key": key, "version-id": version_id})
    arn = "arn:aws:states:us-east-1:123456789012:execution:dropship-Release:handler-test"

    # When Validate Artifact's handler runs, as the state machine calls it
    result = handler_module("validate").handler(
        {"event": s3_event, "execution_arn": arn, "started_at": "2021-11-12T00:00:01.123Z"}, FakeContext()
    )

    # Then it returns the release, recorded as running and announced
    assert result["duplicate"] is False
    release = result["release"]
    assert (release["model"], release["version"], release["object_version"]) == ("churn", "3", version_id)
    assert release["upload_order"] == f"2021-11-12T00:00:00Z#{'00617F08299329D189'.zfill(32)}#{key}"
    (record,) = ReleaseTable(environment.dynamodb, TABLE).records("churn")
    assert record.outcome == "RUNNING" and record.path == ["Started"]
    assert [e["detail-type"] for e in environment.events_put()] == ["Release Started"]


def test_endpoint_events_take_sagemakers_documented_event(environment: Account) -> None:
    documented = {
        "version": "0",
        "id": "d2921b5a-b0ad-cace-a8e3-0f159d018e06",
        "detail-type": "SageMaker Endpoint State Change",
        "source": "aws.sagemaker",
        "account": "123456789012",
        "time": "1583831889050",
        "region": "us-west-2",
        "resources": ["arn:aws:sagemaker:us-west-2:123456789012:endpoint/myendpoint"],
        "detail": {
            "EndpointName": "MyEndpoint",
            "EndpointArn": "arn:aws:sagemaker:us-west-2:123456789012:endpoint/myendpoint",
            "EndpointConfigName": "MyEndpointConfig",
            "ProductionVariants": [{"DesiredWeight": 1.0, "DesiredInstanceCount": 1.0}],
            "EndpointStatus": "IN_SERVICE",
            "CreationTime": 1592411992203.0,
            "LastModifiedTime": 1592411994287.0,
            "Tags": {},
        },
    }
    result = handler_module("endpoint_events").handler(documented, FakeContext())
    assert result == {"outcome": "nothing waits for it"}


def test_watch_takes_cloudwatchs_documented_alarm_event(environment: Account) -> None:
    result = handler_module("watch").handler(event("cloudwatch_alarm_state_change.json"), FakeContext())
    assert result == {"failed": []}  # no release watches ServerCpuTooHigh


def test_the_reaper_takes_step_functions_documented_event(environment: Account) -> None:
    documented = {
        "version": "0",
        "id": "315c1398-40ff-a850-213b-158f73e60175",
        "detail-type": "Step Functions Execution Status Change",
        "source": "aws.states",
        "account": "123456789012",
        "time": "2019-02-26T19:42:21Z",
        "region": "us-east-1",
        "resources": ["arn:aws:states:us-east-1:123456789012:execution:state-machine-name:execution-name"],
        "detail": {
            "executionArn": "arn:aws:states:us-east-1:123456789012:execution:state-machine-name:execution-name",
            "stateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:state-machine",
            "name": "execution-name",
            "status": "SUCCEEDED",
            "startDate": 1551224926156,
            "stopDate": 1551224927157,
            "input": "{}",
            "output": "{}",
        },
    }
    assert handler_module("clean_up").reap(documented, FakeContext()) == {"outcome": "succeeded: accounted for"}


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("TABLE_NAME", None, "TABLE_NAME: Field required"),
        ("TABLE_NAME", "", "TABLE_NAME: String should have at least 1 character"),
        ("EVENT_BUS_NAME", None, "EVENT_BUS_NAME: Field required"),
    ],
)
def test_a_misconfigured_function_says_which_variable(
    environment: Account, monkeypatch: pytest.MonkeyPatch, variable: str, value: str | None, message: str
) -> None:
    if value is None:
        monkeypatch.delenv(variable)
    else:
        monkeypatch.setenv(variable, value)
    load.cache_clear()
    state = {"state": {"error": {"Error": "InvalidKeyError", "Cause": "{}"}}}
    request = {**state, "execution_arn": "arn:aws:states:::execution:x:y", "started_at": "2021-11-12T00:00:00Z"}
    with pytest.raises(InternalError, match=message):
        handler_module("clean_up").handler(request, FakeContext())

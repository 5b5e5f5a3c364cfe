"""S3 -> EventBridge -> Step Functions, with the real state machine and handlers."""

from __future__ import annotations

import json

from dropship.local import LocalStack
from dropship.local.events_bridge import target_input
from tests.local.conftest import wait_until


def _executions(aws, stack: LocalStack) -> list[dict]:
    return aws("stepfunctions").list_executions(stateMachineArn=stack.outputs["FlowArn"])["executions"]


def _upload_and_wait(aws, stack: LocalStack, key: str) -> dict:
    """Upload ``key`` and return the finished execution it started."""
    before = {e["executionArn"] for e in _executions(aws, stack)}
    aws("s3").put_object(Bucket=stack.outputs["BucketName"], Key=key, Body=b"model bytes")
    started = wait_until(lambda: [e for e in _executions(aws, stack) if e["executionArn"] not in before], 10)
    assert len(started) == 1
    sfn = aws("stepfunctions")
    return wait_until(
        lambda: (d := sfn.describe_execution(executionArn=started[0]["executionArn"]))["status"] != "RUNNING" and d,
        30,
    )


def test_an_upload_matching_the_wildcard_runs_the_state_machine_with_the_s3_event(stack: LocalStack, aws) -> None:
    # When a model tarball lands under models/<model>/<version>/
    execution = _upload_and_wait(aws, stack, "models/churn/3/model.tar.gz")

    # Then the execution succeeded, its input is the S3 event as AWS shapes it,
    # and the real handler saw it
    assert execution["status"] == "SUCCEEDED"
    event = json.loads(execution["input"])
    assert event["source"] == "aws.s3"
    assert event["detail-type"] == "Object Created"
    assert event["time"].endswith("Z")
    obj = event["detail"]["object"]
    assert obj["key"] == "models/churn/3/model.tar.gz"
    assert obj["size"] == len(b"model bytes")
    assert set(obj) >= {"etag", "version-id", "sequencer"}
    assert event["detail"]["bucket"]["name"] == stack.outputs["BucketName"]
    assert event["detail"]["reason"] == "PutObject"
    assert json.loads(execution["output"])["result"]["key"] == "models/churn/3/model.tar.gz"


def test_other_keys_start_nothing(stack: LocalStack, aws) -> None:
    # Given the executions so far
    before = len(_executions(aws, stack))
    # When objects that do not match the pattern are uploaded
    for key in ("models/churn/3/release.json", "other/churn/3/model.tar.gz", "models/model.tar.gz.bak"):
        aws("s3").put_object(Bucket=stack.outputs["BucketName"], Key=key, Body=b"{}")
    # Then no execution started (delivery is synchronous with the upload here, so no wait is needed)
    assert len(_executions(aws, stack)) == before


def test_a_named_exception_is_retried_by_the_state_machine(stack: LocalStack, aws) -> None:
    # When the handler raises FlakyError on its first attempt
    execution = _upload_and_wait(aws, stack, "models/flaky/1/model.tar.gz")
    # Then Retry on that name called it again and the execution succeeded
    assert execution["status"] == "SUCCEEDED"
    item = aws("dynamodb").get_item(
        TableName=stack.outputs["TableName"], Key={"pk": {"S": "models/flaky/1/model.tar.gz"}}
    )["Item"]
    assert item["attempts"] == {"N": "2"}


def test_a_named_exception_is_caught_and_fails_the_execution_with_its_name(stack: LocalStack, aws) -> None:
    # When the handler raises FatalError
    execution = _upload_and_wait(aws, stack, "models/fatal/1/model.tar.gz")
    # Then Catch on that name reached the Fail state, which reports the exception name
    assert execution["status"] == "FAILED"
    assert execution["error"] == "FatalError"
    assert "cannot process models/fatal/1/model.tar.gz" in execution["cause"]


def test_a_target_input_and_input_path_are_honoured() -> None:
    event = {"id": "1", "detail": {"object": {"key": "k"}}, "source": "aws.s3"}
    assert target_input({"Arn": "a"}, event) == event
    assert target_input({"Arn": "a", "Input": '{"fixed": true}'}, event) == {"fixed": True}
    assert target_input({"Arn": "a", "InputPath": "$.detail.object"}, event) == {"key": "k"}

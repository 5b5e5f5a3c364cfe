"""S3 -> EventBridge -> Step Functions, with the real state machine and handlers."""

from __future__ import annotations

import json

from dropship.local import LocalStack
from dropship.local.events_bridge import target_input
from tests.local.conftest import wait_until
from tests.local.documented import assert_shaped_like, documented


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


def test_a_runtime_that_dies_is_retried_by_the_state_machine_by_name(stack: LocalStack, aws) -> None:
    # When the handler's runtime is SIGKILLed on its first attempt (the flow retries Runtime.ExitError)
    execution = _upload_and_wait(aws, stack, "models/crash/1/model.tar.gz")
    # Then Retry on that name called it again and the execution succeeded
    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    item = aws("dynamodb").get_item(
        TableName=stack.outputs["TableName"], Key={"pk": {"S": "models/crash/1/model.tar.gz"}}
    )["Item"]
    assert item["attempts"] == {"N": "2"}
    history = aws("stepfunctions").get_execution_history(executionArn=execution["executionArn"])["events"]
    failures = [e["taskFailedEventDetails"] for e in history if "taskFailedEventDetails" in e]
    assert [f["error"] for f in failures] == ["Runtime.ExitError"]
    assert "Runtime exited with error: signal: killed" in failures[0]["cause"]


# -- Step Functions Execution Status Change -------------------------------------------------------

_status_events: dict[str, list[dict]] = {}


def _status_changes(aws, stack: LocalStack, execution_arn: str) -> list[dict]:
    """The Step Functions Execution Status Change events of one execution received so far, in order."""
    sqs = aws("sqs")
    url = stack.outputs["ExecutionEventsUrl"]
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        for message in messages:
            event = json.loads(message["Body"])
            _status_events.setdefault(event["detail"]["executionArn"], []).append(event)
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return _status_events.get(execution_arn, [])


def _statuses(aws, stack: LocalStack, execution_arn: str, count: int) -> list[dict]:
    return wait_until(lambda: len(events := _status_changes(aws, stack, execution_arn)) >= count and events, 15)


def _assert_documented(event: dict, status: str) -> None:
    """Every field of AWS's example for this status, of the same types; the rest is DescribeExecution's."""
    example = documented("step_functions_execution_status_change.json")[status]
    assert_shaped_like(event, example)
    assert set(event["detail"]) - set(example["detail"]) == {"inputDetails", "outputDetails", "error", "cause"}
    assert event["resources"] == [event["detail"]["executionArn"]]
    assert event["detail"]["status"] == status


def test_a_succeeding_execution_puts_running_then_succeeded(stack: LocalStack, aws) -> None:
    # When an upload starts an execution that succeeds
    execution = _upload_and_wait(aws, stack, "models/events/1/model.tar.gz")
    assert execution["status"] == "SUCCEEDED"

    # Then RUNNING then SUCCEEDED were put on the default bus, shaped as AWS documents them
    running, succeeded = _statuses(aws, stack, execution["executionArn"], 2)
    _assert_documented(running, "RUNNING")
    _assert_documented(succeeded, "SUCCEEDED")
    detail = succeeded["detail"]
    assert detail["stateMachineArn"] == stack.outputs["FlowArn"]
    assert detail["name"] == execution["name"]
    assert json.loads(detail["input"]) == json.loads(execution["input"])
    assert json.loads(detail["output"]) == json.loads(execution["output"])
    assert detail["startDate"] == int(execution["startDate"].timestamp() * 1000)
    assert detail["stopDate"] >= detail["startDate"]
    assert (detail["inputDetails"], detail["outputDetails"]) == ({"included": True}, {"included": True})
    assert running["detail"]["stopDate"] is None and running["detail"]["output"] is None


def test_a_failing_execution_puts_failed_with_its_error(stack: LocalStack, aws) -> None:
    execution = _upload_and_wait(aws, stack, "models/fatal/2/model.tar.gz")
    assert execution["status"] == "FAILED"
    _, failed = _statuses(aws, stack, execution["executionArn"], 2)
    _assert_documented(failed, "FAILED")
    assert failed["detail"]["error"] == "FatalError"
    assert failed["detail"]["cause"] == execution["cause"]
    assert failed["detail"]["output"] is None


def _waiting_machine(aws, name: str, timeout_seconds: int | None = None) -> str:
    definition: dict = {"StartAt": "Wait", "States": {"Wait": {"Type": "Wait", "Seconds": 60, "End": True}}}
    if timeout_seconds is not None:
        definition["TimeoutSeconds"] = timeout_seconds
    return aws("stepfunctions").create_state_machine(
        name=name, definition=json.dumps(definition), roleArn="arn:aws:iam::123456789012:role/sfn"
    )["stateMachineArn"]


def _recorded_by_the_lambda_target(aws, stack: LocalStack, execution_arn: str, status: str) -> dict:
    """The event the RecordEventFunction (a rule's Lambda target) stored, once it has."""
    table = stack.outputs["TableName"]
    key = {"pk": {"S": f"event:{execution_arn}:{status}"}}
    item = wait_until(lambda: aws("dynamodb").get_item(TableName=table, Key=key).get("Item"), 20)
    return json.loads(item["event"]["S"])


def test_a_stopped_execution_puts_aborted_and_a_lambda_target_receives_it(stack: LocalStack, aws) -> None:
    # Given an execution waiting in a Wait state
    sfn = aws("stepfunctions")
    execution_arn = sfn.start_execution(stateMachineArn=_waiting_machine(aws, "waits"), input='{"n": 1}')[
        "executionArn"
    ]
    _statuses(aws, stack, execution_arn, 1)

    # When it is stopped
    sfn.stop_execution(executionArn=execution_arn)

    # Then ABORTED is put, shaped as AWS documents it
    _, aborted = _statuses(aws, stack, execution_arn, 2)
    _assert_documented(aborted, "ABORTED")
    assert json.loads(aborted["detail"]["input"]) == {"n": 1}
    # And the rule's Lambda target ran the real handler with the event, as EventBridge delivers it
    received = _recorded_by_the_lambda_target(aws, stack, execution_arn, "ABORTED")
    assert received["detail"] == aborted["detail"]
    assert received["source"] == "aws.states"
    assert received["time"].endswith("Z")
    assert "ingestion-time" not in received


def test_an_execution_past_its_timeout_puts_timed_out(stack: LocalStack, aws) -> None:
    # Given a state machine whose definition allows 1 s, waiting for 60
    execution_arn = aws("stepfunctions").start_execution(
        stateMachineArn=_waiting_machine(aws, "times-out", timeout_seconds=1)
    )["executionArn"]

    # Then the execution times out, and TIMED_OUT is put and delivered to the Lambda target
    _, timed_out = _statuses(aws, stack, execution_arn, 2)
    _assert_documented(timed_out, "TIMED_OUT")
    assert aws("stepfunctions").describe_execution(executionArn=execution_arn)["status"] == "TIMED_OUT"
    assert timed_out["detail"]["stopDate"] - timed_out["detail"]["startDate"] < 30_000
    _recorded_by_the_lambda_target(aws, stack, execution_arn, "TIMED_OUT")


def test_express_workflows_put_no_status_events(stack: LocalStack, aws) -> None:
    sfn = aws("stepfunctions")
    arn = sfn.create_state_machine(
        name="express",
        definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}),
        roleArn="arn:aws:iam::123456789012:role/sfn",
        type="EXPRESS",
    )["stateMachineArn"]
    execution_arn = sfn.start_execution(stateMachineArn=arn)["executionArn"]
    # A standard execution started after it is seen, and the express one never
    later = _upload_and_wait(aws, stack, "models/after-express/1/model.tar.gz")
    _statuses(aws, stack, later["executionArn"], 2)
    assert _status_changes(aws, stack, execution_arn) == []


def test_a_throttled_task_fails_as_lambda_too_many_requests(stack: LocalStack, aws) -> None:
    from dropship.local.lambda_runtime import Limits

    # Given the flow's function may not run at all (reserved concurrency 0) and throttling is immediate
    name = stack.outputs["WorkFunctionName"]
    runtime = stack.lambda_runtime
    original = runtime.limits
    aws("lambda").put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    runtime.limits = Limits(account=original.account, function=original.function, throttle_wait_s=0)
    try:
        # When an upload starts the flow
        execution = _upload_and_wait(aws, stack, "models/throttled/1/model.tar.gz")
    finally:
        runtime.limits = original
        aws("lambda").delete_function_concurrency(FunctionName=name)
    # Then Step Functions names the error as it names Lambda's 429 (what the release state machine retries)
    assert execution["status"] == "FAILED"
    assert execution["error"] == "Lambda.TooManyRequestsException"
    assert "Rate Exceeded." in execution["cause"]

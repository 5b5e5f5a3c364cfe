"""What careful operators do to a release pipeline: many uploads at once, stopping executions, a manifest
uploaded at the wrong moment, and failures injected into the failure path and after the alias moved.
Whatever happens, every execution ends accounted for."""

from __future__ import annotations

import json
import time
from typing import Any

from tests.artifacts import IRIS_REQUEST, inference_artifact, iris_artifact
from tests.integration.harness import Harness, Outcome
from tests.integration.test_release_pipeline import _release_rule_name, _s3_event

SLOW_START = """
import time

def model_fn(model_dir):
    time.sleep(12)
    return object()

def transform_fn(model, body, content_type, accept):
    return body, content_type
"""


def lock_item(stack: Harness, model: str) -> dict[str, Any] | None:
    found = stack.dynamodb.get_item(
        TableName=stack.outputs["ReleasesTableName"], Key={"pk": {"S": f"MODEL#{model}"}, "sk": {"S": "LOCK"}}
    )
    return found.get("Item")


def test_the_alias_always_ends_on_the_last_of_many_uploads(stack: Harness) -> None:
    # Given ten versions of one model uploaded as fast as a client can (within a second or two),
    # repeated, since the race this guards against does not show every time
    for round_ in range(2):
        model = f"burst-{round_}"
        uploads = [(str(n), stack.upload(model, str(n), iris_artifact())) for n in range(1, 11)]
        outcomes = [stack.wait(stack.execution_for(f"models/{model}/{v}/model.tar.gz", vid)) for v, vid in uploads]

        # Then every release ended (none lost), and the alias is on the last upload
        assert all(o.status in ("SUCCEEDED", "FAILED") for o in outcomes)
        assert {o.error for o in outcomes if o.status == "FAILED"} <= {"AliasConflict"}, [o.cause for o in outcomes]
        alias = stack.alias(model)
        assert alias is not None and alias["version"] == "10", f"round {round_}: alias on {alias}"
        assert outcomes[-1].status == "SUCCEEDED"
        # And the model's lock is free and nothing beyond the live and the retained endpoint runs
        assert lock_item(stack, model) is None
        assert len(stack.sagemaker_resources(model)["endpoints"]) <= 2


def test_a_stopped_release_leaves_nothing_running_and_is_accounted_for(stack: Harness) -> None:
    # Given a release whose endpoint takes a while to start
    model = "stopped"
    version_id = stack.upload(model, "1", inference_artifact(SLOW_START))
    execution_arn = stack.execution_for(f"models/{model}/1/model.tar.gz", version_id)
    stack.await_condition(lambda: "Wait For InService" in stack.states_entered(execution_arn), what="waiting")

    # When an operator stops it from the console
    stack.sfn.stop_execution(executionArn=execution_arn, error="Operator", cause="wrong model")
    assert stack.wait(execution_arn).status == "ABORTED"

    # Then the reaper frees the lock, finishes the history and announces it as Aborted
    stack.await_condition(lambda: _record(stack, model).get("outcome") == "FAILED", what="recorded")
    record = _record(stack, model)
    assert record["error_code"] == "Aborted" and "was stopped" in record["error_message"]
    assert lock_item(stack, model) is None
    failed = [e for e in stack.release_events(model) if e["detail-type"] == "Release Failed"]
    assert [e["detail"]["error"]["code"] for e in failed] == ["Aborted"]
    # And the endpoint, which SageMaker would not delete while creating it, is gone once it settles
    stack.await_condition(lambda: not any(stack.sagemaker_resources(model).values()), timeout=60, what="deleted")
    # And the next release of the model is not held up
    assert stack.release(model, "2", iris_artifact()).status == "SUCCEEDED"


def _record(stack: Harness, model: str) -> dict[str, Any]:
    records = stack.releases(model)  # newest first
    return records[0] if records else {}


def test_a_failure_path_that_fails_still_ends_with_a_contract_code(stack: Harness) -> None:
    # Given Clean Up itself is broken (its configuration points at a table that does not exist)
    clean_up = _function(stack, "CleanUpFunction")
    original = stack.lambda_.get_function_configuration(FunctionName=clean_up)["Environment"]["Variables"]
    broken = {**original, "TABLE_NAME": "no-such-table"}
    stack.lambda_.update_function_configuration(FunctionName=clean_up, Environment={"Variables": broken})
    try:
        # When a release fails (its smoke test cannot pass)
        manifest = {
            "environment": {"API_KEY": "hunter2"},
            "smoke_test": [{"body": IRIS_REQUEST, "expect": {"contains": "no such class"}}],
        }
        outcome = stack.release("double-fault", "1", iris_artifact(), manifest)
    finally:
        stack.lambda_.update_function_configuration(FunctionName=clean_up, Environment={"Variables": original})

    # Then the execution still ends with a contract code, and its cause carries no state or secret
    assert (outcome.status, outcome.error) == ("FAILED", "InternalError")
    assert outcome.states[-3:] == ["Clean Up", "Clean Up Failed", "Release Failed"]
    assert "hunter2" not in (outcome.cause or "") and "{" not in (outcome.cause or "")
    # And the reaper compensates and announces it
    stack.await_condition(lambda: _record(stack, "double-fault").get("outcome") == "FAILED", what="recorded")
    stack.await_condition(lambda: not any(stack.sagemaker_resources("double-fault").values()), what="deleted")
    assert lock_item(stack, "double-fault") is None
    assert [e["detail"]["error"]["code"] for e in stack.release_events("double-fault") if "error" in e["detail"]] == [
        "InternalError"
    ]


def _function(stack: Harness, logical_id: str) -> str:
    resources = stack.cfn.describe_stack_resources(StackName="dropship")["StackResources"]
    return next(r["PhysicalResourceId"] for r in resources if r["LogicalResourceId"] == logical_id)


def test_a_manifest_uploaded_after_the_tarball_applies_only_to_the_next_upload(stack: Harness) -> None:
    # Given a manifest, then the tarball, whose S3 event is delivered late
    model = "pinned"
    good = {"smoke_test": [{"body": IRIS_REQUEST, "expect": {"json_equals": {"predictions": [0]}}}]}
    rule = _release_rule_name(stack)
    stack.events.disable_rule(Name=rule)
    try:
        version_id = stack.upload(model, "1", iris_artifact(), good)
        uploaded = stack.s3.head_object(Bucket=stack.bucket, Key=f"models/{model}/1/model.tar.gz")["LastModified"]
        # And, a moment later (S3 keeps times to the second), another manifest that would fail the release
        _next_second(uploaded.timestamp())
        stack.s3.put_object(
            Bucket=stack.bucket, Key=f"models/{model}/1/release.json", Body=json.dumps({"instance_typo": 1}).encode()
        )
    finally:
        stack.events.enable_rule(Name=rule)

    # When the tarball's event arrives after both
    event = _s3_event(stack.bucket, f"models/{model}/1/model.tar.gz", version_id, uploaded)
    started = stack.sfn.start_execution(stateMachineArn=stack.state_machine, name="pinned-1", input=json.dumps(event))
    outcome: Outcome = stack.wait(started["executionArn"])

    # Then the manifest uploaded before the tarball is the one applied
    assert outcome.status == "SUCCEEDED", outcome.cause
    assert _record(stack, model)["smoke"][0]["label"] == "sample 0 of release.json"


def _next_second(after: float) -> None:
    """Await the next second of the clock S3 stamps objects with."""
    while time.time() < int(after) + 1:
        time.sleep(0.05)


def test_a_pinned_manifest_wins_over_a_newer_one(stack: Harness) -> None:
    # Given the CLI's way: a manifest, then the tarball pinning that manifest's version in its metadata
    model = "pinned-cli"
    prefix = f"models/{model}/1/"
    good = {"smoke_test": [{"body": IRIS_REQUEST, "expect": {"json_equals": {"predictions": [0]}}}]}
    manifest_version = stack.s3.put_object(
        Bucket=stack.bucket, Key=prefix + "release.json", Body=json.dumps(good).encode()
    )["VersionId"]
    # And someone overwrites the manifest in the same second, before the tarball lands
    stack.s3.put_object(Bucket=stack.bucket, Key=prefix + "release.json", Body=b'{"instance_typo": 1}')
    version_id = stack.s3.put_object(
        Bucket=stack.bucket,
        Key=prefix + "model.tar.gz",
        Body=iris_artifact(),
        Metadata={"dropship-manifest-version": manifest_version},
    )["VersionId"]
    # Then the pinned manifest is applied
    outcome = stack.wait(stack.execution_for(prefix + "model.tar.gz", version_id))
    assert outcome.status == "SUCCEEDED", outcome.cause
    assert _record(stack, model)["manifest_version"] == manifest_version


def test_a_retirement_failure_is_a_warning_not_a_swallowed_error(stack: Harness) -> None:
    # Given version 1 and 2 are live and retained
    model = "warned"
    for version in ("1", "2"):
        assert stack.release(model, version, iris_artifact()).status == "SUCCEEDED"
    # And someone hand-edited another alias of the model into something that is not an alias record
    broken = f"{stack.outputs['AliasPrefix']}/{model}/canary"
    stack.ssm.put_parameter(Name=broken, Value="v2, probably", Type="String")
    try:
        # When version 3 is released
        outcome = stack.release(model, "3", iris_artifact())
    finally:
        stack.ssm.delete_parameter(Name=broken)

    # Then the release succeeds with a warning on its record and its event, and nothing was retired
    assert outcome.status == "SUCCEEDED", outcome.cause
    record = _record(stack, model)
    assert record["version"] == "3" and record["outcome"] == "SUCCEEDED"
    assert any("retiring old releases failed" in w for w in record["warnings"]), record
    succeeded = [e for e in stack.release_events(model) if e["detail-type"] == "Release Succeeded"][-1]
    assert succeeded["detail"]["warnings"] == record["warnings"]
    assert len(stack.sagemaker_resources(model)["endpoints"]) == 3


def _endpoint_rule(stack: Harness) -> str:
    for rule in stack.events.list_rules()["Rules"]:
        if "EndpointStateChanged" in rule["Name"]:
            return str(rule["Name"])
    raise AssertionError("no rule for SageMaker's endpoint state changes")


def test_a_lost_endpoint_event_costs_a_check_never_the_release(stack: Harness) -> None:
    # Given SageMaker's state-change events do not arrive (the rule is off)
    rule = _endpoint_rule(stack)
    stack.events.disable_rule(Name=rule)
    try:
        # When a release waits for its endpoint
        outcome = stack.release("lost-event", "1", iris_artifact())
    finally:
        stack.events.enable_rule(Name=rule)
    # Then the wait's own check (every EndpointCheckSeconds) finds the endpoint InService and it goes live
    assert outcome.status == "SUCCEEDED", outcome.cause
    assert outcome.states.count("Wait For InService") == 1  # one state, resumed by its retried check
    retried = [e for e in stack.history_events(outcome.execution_arn) if e["type"] == "TaskTimedOut"]
    assert retried, "the wait should have timed out and looked for itself"


def test_duplicate_or_early_endpoint_events_never_resume_a_release_early(stack: Harness) -> None:
    # Given a release whose endpoint takes a while to start
    version_id = stack.upload("early-event", "1", inference_artifact(SLOW_START))
    execution = stack.execution_for("models/early-event/1/model.tar.gz", version_id)
    stack.await_condition(lambda: "Wait For InService" in stack.states_entered(execution), what="waiting")
    endpoint = next(r for r in stack.releases("early-event"))["endpoint_name"]
    # When SageMaker's IN_SERVICE event arrives early, three times (a stale or duplicated event)
    detail = {"EndpointName": endpoint, "EndpointStatus": "IN_SERVICE", "Tags": {"dropship:stack": "dropship"}}
    for _ in range(3):
        stack.events.put_events(Entries=[{
            "Source": "aws.sagemaker", "DetailType": "SageMaker Endpoint State Change", "Detail": json.dumps(detail),
        }])  # fmt: skip
    # Then the release still waits for the endpoint really to be InService, and then goes live once
    assert stack.sagemaker.describe_endpoint(EndpointName=endpoint)["EndpointStatus"] == "Creating"
    outcome = stack.wait(execution)
    assert outcome.status == "SUCCEEDED", outcome.cause
    history = stack.history_events(execution)
    smoke = next(e for e in history if e.get("stateEnteredEventDetails", {}).get("name") == "Smoke Test")
    in_service = stack.sagemaker.describe_endpoint(EndpointName=endpoint)["LastModifiedTime"]
    assert smoke["timestamp"] >= in_service
    assert outcome.states.count("Smoke Test") == 1

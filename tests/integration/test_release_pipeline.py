"""The Release state machine end to end: real ASL, real handlers, real container, AWS APIs emulated."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.artifacts import (
    ECHO_MODEL,
    FAILING_MODEL_FN,
    IRIS_REQUEST,
    SLOW_MODEL_FN,
    inference_artifact,
    iris_artifact,
    oversized_artifact,
    unsafe_artifact,
)
from tests.integration.harness import Harness

SCHEMA_SMOKE = {
    "smoke_test": [
        {
            "body": IRIS_REQUEST,
            "expect": {"status": 200, "json_schema": {"type": "object", "required": ["predictions"]}},
            "max_latency_ms": 10000,
        }
    ]
}
HAPPY_PATH = [
    "Validate Artifact",
    "Is Duplicate?",
    "Acquire Lock",
    "Lock Acquired?",
    "Create Endpoint",
    "Wait For InService",
    "Smoke Test",
    "Update Alias",
    "Watch",
    "Finish Release",
]


def assert_nothing_left(stack: Harness, model: str, keep: set[str] | None = None) -> None:
    resources = stack.sagemaker_resources(model)
    for kind, names in resources.items():
        assert set(names) <= (keep or set()), f"{kind} left behind: {names}"


def test_a_dropped_model_becomes_a_tested_endpoint_behind_the_alias(stack: Harness) -> None:
    # Given a trained model and a manifest with a smoke test
    artifact = iris_artifact()

    # When it is dropped into the bucket
    outcome = stack.release("iris-happy", "1", artifact, SCHEMA_SMOKE)

    # Then the release succeeds through every state, in order
    assert outcome.status == "SUCCEEDED", outcome.cause
    assert outcome.states == HAPPY_PATH, outcome.output.get("finish_error")

    # And the alias names the new endpoint, which serves real predictions
    alias = stack.alias("iris-happy")
    assert alias is not None
    sha256 = hashlib.sha256(artifact).hexdigest()
    assert alias["model"] == "iris-happy" and alias["version"] == "1" and alias["sha256"] == sha256
    assert alias["execution_arn"] == outcome.execution_arn
    assert set(alias) == {"model", "version", "endpoint_name", "sha256", "released_at", "execution_arn"}
    response = stack.runtime.invoke_endpoint(
        EndpointName=alias["endpoint_name"], Body=IRIS_REQUEST, ContentType="application/json"
    )
    assert json.loads(response["Body"].read())["predictions"] == [0]

    # And SageMaker loads the immutable content-addressed copy, not the upload
    model = stack.sagemaker.describe_model(ModelName=alias["endpoint_name"])
    released = f"released/iris-happy/{sha256}/model.tar.gz"
    assert model["PrimaryContainer"]["ModelDataUrl"] == f"s3://{stack.bucket}/{released}"
    assert stack.s3.get_object(Bucket=stack.bucket, Key=released)["Body"].read() == artifact
    tags = {t["Key"]: t["Value"] for t in stack.sagemaker.list_tags(ResourceArn=model["ModelArn"])["Tags"]}
    assert tags["dropship:stack"] == "dropship" and tags["dropship:version"] == "1"

    # And the history records the attempt, its path and its smoke results
    (record,) = stack.releases("iris-happy")
    assert record["outcome"] == "SUCCEEDED" and record["version"] == "1"
    assert record["path"] == ["Started", "Locked", "Live", "Succeeded"]
    assert record["smoke"][0]["passed"] is True and record["endpoint_state"] == "active"
    assert record["duration_s"] > 0

    # And Release Started and Release Succeeded were announced
    events = stack.release_events("iris-happy")
    assert [e["detail-type"] for e in events] == ["Release Started", "Release Succeeded"]
    succeeded = events[1]["detail"]
    assert succeeded["execution_arn"] == outcome.execution_arn
    assert succeeded["endpoint_name"] == alias["endpoint_name"] and succeeded["alias"] == "live"
    assert succeeded["duration_s"] > 0


FAILURES: list[tuple[str, str, Any, dict[str, Any] | None, str]] = [
    ("InvalidManifest", "bad-manifest", iris_artifact, {"instance_typo": "ml.m5.large"}, "instance_typo"),
    ("InvalidArtifact", "bad-gzip", lambda: b"this is not a gzip file", None, "gzip"),
    ("ArtifactTooLarge", "too-big", lambda: oversized_artifact(9 * 1024 * 1024), None, "MaxUncompressedBytes"),
    ("UnsafeArtifact", "unsafe", unsafe_artifact, None, "../../etc/cron.d/evil"),
    ("ImageNotAllowed", "bad-image", iris_artifact, {"image_uri": "docker.io/evil/miner:1"}, "AllowedImagePrefixes"),
    ("EndpointFailed", "broken-model", lambda: inference_artifact(FAILING_MODEL_FN), None, "weights.bin is missing"),
    ("EndpointTimeout", "slow-model", lambda: inference_artifact(SLOW_MODEL_FN), None, "EndpointTimeoutSeconds"),
    (
        "SmokeTestFailed",
        "wrong-answer",
        iris_artifact,
        {"smoke_test": [{"body": IRIS_REQUEST, "expect": {"json_equals": {"predictions": [2]}}}]},
        "not equal",
    ),
]


@pytest.mark.parametrize(("code", "model", "make_artifact", "manifest", "hint"), FAILURES, ids=[f[0] for f in FAILURES])
def test_a_failed_release_cleans_up_and_says_why(
    stack: Harness, code: str, model: str, make_artifact: Any, manifest: dict[str, Any] | None, hint: str
) -> None:
    # When a release fails
    outcome = stack.release(model, "1", make_artifact(), manifest)

    # Then the execution fails with the contract's code and an actionable message
    assert outcome.status == "FAILED"
    assert outcome.error == code, outcome.cause
    assert hint in (outcome.cause or "")
    assert outcome.states[-2:] == ["Clean Up", "Release Failed"]

    # And nothing it created is left (an endpoint SageMaker was still creating goes once it settles),
    # no alias was written, the lock is free
    if code == "EndpointTimeout":
        stack.await_condition(lambda: not any(stack.sagemaker_resources(model).values()), timeout=60)
    assert_nothing_left(stack, model)
    assert stack.alias(model) is None
    lock = stack.dynamodb.get_item(
        TableName=stack.outputs["ReleasesTableName"], Key={"pk": {"S": f"MODEL#{model}"}, "sk": {"S": "LOCK"}}
    )
    assert "Item" not in lock

    # And the failure is recorded and announced with the same code and message
    (record,) = stack.releases(model)
    assert record["outcome"] == "FAILED" and record["error_code"] == code
    if code == "SmokeTestFailed":  # the smoke results of a failed attempt are kept too
        assert [result["passed"] for result in record["smoke"]] == [False]
    if code in ("EndpointFailed", "EndpointTimeout", "SmokeTestFailed"):
        assert record["endpoint_state"] == "deleted"
    failed = stack.release_events(model)[-1]
    assert failed["detail-type"] == "Release Failed"
    assert failed["detail"]["error"] == {"code": code, "message": outcome.cause}
    assert failed["detail"]["model"] == model and failed["detail"]["version"] == "1"


def test_a_bad_key_under_models_is_a_failed_release(stack: Harness) -> None:
    # When a tarball lands under models/ with a model name that breaks the rules
    key = "models/Bad_Name/1/model.tar.gz"
    version_id = stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=iris_artifact())["VersionId"]

    # Then the release fails as InvalidKey, saying what is wrong, and is announced
    outcome = stack.wait(stack.execution_for(key, version_id))
    assert (outcome.status, outcome.error) == ("FAILED", "InvalidKey")
    assert "'Bad_Name' is not allowed" in (outcome.cause or "")
    assert stack.release_events("Bad_Name")[-1]["detail"]["error"]["code"] == "InvalidKey"


def test_other_keys_start_nothing(stack: Harness) -> None:
    # When objects other than a drop key are written
    before = len(stack.sfn.list_executions(stateMachineArn=stack.state_machine)["executions"])
    stack.s3.put_object(Bucket=stack.bucket, Key="models/quiet/1/release.json", Body=b"{}")
    stack.s3.put_object(Bucket=stack.bucket, Key="notes/model.tar.gz", Body=b"x")
    stack.s3.put_object(Bucket=stack.bucket, Key="models/quiet/1/model.tar.gz.bak", Body=b"x")
    # Then no release starts (a later drop does, proving the rule is live)
    marker = stack.release("quiet", "2", iris_artifact())
    executions = stack.sfn.list_executions(stateMachineArn=stack.state_machine)["executions"]
    assert len(executions) == before + 1 and marker.status == "SUCCEEDED"


def test_a_failed_release_leaves_the_alias_and_the_live_endpoint_alone(stack: Harness) -> None:
    # Given version 1 is live
    assert stack.release("steady", "1", iris_artifact(), SCHEMA_SMOKE).status == "SUCCEEDED"
    live = stack.alias("steady")
    assert live is not None

    # When version 2 fails its smoke test
    bad = {"smoke_test": [{"body": IRIS_REQUEST, "expect": {"contains": "no such class"}}]}
    outcome = stack.release("steady", "2", iris_artifact(), bad)
    assert outcome.error == "SmokeTestFailed"

    # Then the alias still names version 1, whose endpoint still answers; only version 2 was removed
    assert stack.alias("steady") == live
    stack.runtime.invoke_endpoint(EndpointName=live["endpoint_name"], Body=IRIS_REQUEST, ContentType="application/json")
    assert_nothing_left(stack, "steady", keep={live["endpoint_name"]})


def test_duplicate_events_start_one_release(stack: Harness) -> None:
    # Given a release that ran
    first = stack.release("dupe", "1", iris_artifact(), SCHEMA_SMOKE)
    assert first.status == "SUCCEEDED"
    event = stack.sfn.describe_execution(executionArn=first.execution_arn)["input"]

    # When EventBridge delivers the same S3 event twice more
    repeats = [
        stack.sfn.start_execution(stateMachineArn=stack.state_machine, name=f"redelivery-{n}", input=event)
        for n in range(2)
    ]

    # Then each repeat ends at once as a duplicate, creating nothing and announcing nothing
    assert len({r["executionArn"] for r in repeats}) == 2
    for repeat in repeats:
        outcome = stack.wait(repeat["executionArn"])
        assert outcome.status == "SUCCEEDED"
        assert outcome.states == ["Validate Artifact", "Is Duplicate?", "Ignore Duplicate Event"]
    assert len(stack.releases("dupe")) == 1
    assert len(stack.sagemaker_resources("dupe")["endpoints"]) == 1
    assert [e["detail-type"] for e in stack.release_events("dupe")] == ["Release Started", "Release Succeeded"]


def _critical_section(stack: Harness, execution_arn: str) -> tuple[datetime, datetime]:
    events = stack.history_events(execution_arn)
    entered = next(
        e["timestamp"] for e in events if e.get("stateEnteredEventDetails", {}).get("name") == "Create Endpoint"
    )
    exited = next(
        e["timestamp"]
        for e in events
        if e.get("stateExitedEventDetails", {}).get("name") in ("Finish Release", "Clean Up")
    )
    return entered, exited


def test_two_releases_of_one_model_never_overlap(stack: Harness) -> None:
    # When two versions are dropped at the same moment
    first = stack.upload("race", "1", iris_artifact(), SCHEMA_SMOKE)
    second = stack.upload("race", "2", iris_artifact(), SCHEMA_SMOKE)
    outcomes = [
        stack.wait(stack.execution_for("models/race/1/model.tar.gz", first)),
        stack.wait(stack.execution_for("models/race/2/model.tar.gz", second)),
    ]

    # Then one waited for the other's lock (or, uploaded earlier but late to ask, gave up as superseded):
    # their create-to-finish sections never overlap
    deployed = [o for o in outcomes if "Create Endpoint" in o.states]
    if len(deployed) == 2:
        (a_start, a_end), (b_start, b_end) = (_critical_section(stack, o.execution_arn) for o in deployed)
        assert a_end <= b_start or b_end <= a_start
    assert any("Wait For Lock" in o.states for o in outcomes) or len(deployed) == 1

    # And the alias ends on the newer upload, whatever order they ran in
    alias = stack.alias("race")
    assert alias is not None and alias["version"] == "2"
    assert outcomes[1].status == "SUCCEEDED"
    assert outcomes[0].status == "SUCCEEDED" or outcomes[0].error == "AliasConflict"


def test_an_older_upload_finishing_late_never_moves_the_alias_back(stack: Harness) -> None:
    # Given version 1 was uploaded, but its event is delayed (the rule is off for a moment)
    rule = _release_rule_name(stack)
    stack.events.disable_rule(Name=rule)
    try:
        old_version_id = stack.upload("late", "1", iris_artifact())
        uploaded_at = datetime.now(UTC) - timedelta(seconds=5)
    finally:
        stack.events.enable_rule(Name=rule)
    # And version 2, uploaded after it, is released and live
    assert stack.release("late", "2", iris_artifact()).status == "SUCCEEDED"

    # When version 1's event finally arrives
    late_event = _s3_event(stack.bucket, "models/late/1/model.tar.gz", old_version_id, uploaded_at)
    started = stack.sfn.start_execution(
        stateMachineArn=stack.state_machine, name="late-delivery", input=json.dumps(late_event)
    )
    outcome = stack.wait(started["executionArn"])

    # Then it fails as AliasConflict and the alias stays on version 2
    assert (outcome.status, outcome.error) == ("FAILED", "AliasConflict")
    assert "would move the alias back" in (outcome.cause or "")
    alias = stack.alias("late")
    assert alias is not None and alias["version"] == "2"


def _release_rule_name(stack: Harness) -> str:
    for rule in stack.events.list_rules()["Rules"]:
        targets = stack.events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
        if any(t["Arn"] == stack.state_machine for t in targets):
            return str(rule["Name"])
    raise AssertionError("no rule targets the state machine")


def _s3_event(bucket: str, key: str, version_id: str, when: datetime) -> dict[str, Any]:
    return {
        "version": "0",
        "id": "5e5b8a2c-0000-4000-8000-000000000001",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": "123456789012",
        "time": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "us-east-1",
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {"key": key, "size": 1, "etag": "0", "version-id": version_id, "sequencer": "0"},
            "request-id": "0",
            "requester": "123456789012",
            "reason": "PutObject",
        },
    }


def test_releases_beyond_retain_are_retired(stack: Harness) -> None:
    # Given three releases of one model with the default retain of 1 (and the stack's default smoke sample)
    names = []
    for version in ("1", "2", "3"):
        outcome = stack.release("keep", version, iris_artifact())
        assert outcome.status == "SUCCEEDED", outcome.cause
        alias = stack.alias("keep")
        assert alias is not None
        names.append(alias["endpoint_name"])

    # Then the live endpoint and one previous one remain; the oldest is gone with its config and model
    assert sorted(stack.sagemaker_resources("keep")["endpoints"]) == sorted(names[1:])
    assert names[0] not in stack.sagemaker_resources("keep")["models"]
    states = {r["version"]: r["endpoint_state"] for r in stack.releases("keep")}
    assert states == {"1": "retired", "2": "active", "3": "active"}


def test_a_custom_inference_script_is_served(stack: Harness) -> None:
    # Given a model whose behaviour is its own inference.py, and a smoke test for it
    manifest = {"smoke_test": [{"body": '{"x": 1}', "expect": {"json_equals": {"echo": {"x": 1}}}}]}
    # When released, Then it is live and answers with its own code
    assert stack.release("echo", "1.0.0", inference_artifact(ECHO_MODEL), manifest).status == "SUCCEEDED"
    alias = stack.alias("echo")
    assert alias is not None
    body = stack.runtime.invoke_endpoint(
        EndpointName=alias["endpoint_name"], Body=b'{"y": 2}', ContentType="application/json"
    )
    assert json.loads(body["Body"].read()) == {"echo": {"y": 2}}


def test_an_input_that_is_not_an_s3_event_fails_as_internal_error(stack: Harness) -> None:
    # When the state machine is started by hand with something that is not an S3 "Object Created" event
    started = stack.sfn.start_execution(
        stateMachineArn=stack.state_machine, name="not-an-s3-event", input=json.dumps({"hello": "world"})
    )
    outcome = stack.wait(started["executionArn"])
    # Then it fails as InternalError, naming what was wrong, and the failure is still announced
    assert (outcome.status, outcome.error) == ("FAILED", "InternalError")
    assert "validation error" in (outcome.cause or "")
    failed = stack.release_events("(unknown)")[-1]
    assert failed["detail-type"] == "Release Failed" and failed["detail"]["error"]["code"] == "InternalError"

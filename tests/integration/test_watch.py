"""A release under production traffic: watched after the alias moves and rolled back when it goes bad, with
the capacity, autoscaling and data capture a live endpoint needs. All through the local stack, whose
endpoints publish SageMaker's metrics and whose CloudWatch evaluates alarms and puts their events."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.artifacts import IRIS_REQUEST, inference_artifact, iris_artifact
from tests.integration.harness import Harness, Outcome

# Healthy for the smoke test; once live, every request that is not the smoke sample fails with a 500.
FAILS_UNDER_TRAFFIC = """
def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    if "smoke" in body:
        return '{"ok": true}', "application/json"
    raise RuntimeError("the feature store is down")
"""
HEALTHY = FAILS_UNDER_TRAFFIC.replace('raise RuntimeError("the feature store is down")', "return body, content_type")
SMOKE = {"smoke_test": [{"body": '{"smoke": 1}', "expect": {"status": 200}}]}


@contextmanager
def traffic(stack: Harness, model: str) -> Iterator[list[int]]:
    """Production traffic through the alias, as an application sends it, until the block ends."""
    stop, answers = threading.Event(), []

    def send() -> None:
        while not stop.is_set():
            alias = stack.alias(model)
            if alias is None:
                continue
            try:
                stack.runtime.invoke_endpoint(
                    EndpointName=alias["endpoint_name"], Body=b'{"x": 1}', ContentType="application/json"
                )
                answers.append(200)
            except stack.runtime.exceptions.ModelError:
                answers.append(500)
            except stack.runtime.exceptions.ValidationError:
                answers.append(0)  # the endpoint went away under us (rolled back and deleted)
            stop.wait(0.05)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        yield answers
    finally:
        stop.set()
        sender.join(timeout=10)


def of_type(events: list[dict[str, Any]], detail_type: str) -> list[dict[str, Any]]:
    return [e for e in events if e["detail-type"] == detail_type]


def record_of(stack: Harness, model: str, version: str) -> dict[str, Any]:
    """The newest release record of that version ({} before there is one)."""
    return next((r for r in stack.releases(model) if r["version"] == version), {})


def test_a_release_that_fails_under_traffic_rolls_itself_back(stack: Harness) -> None:
    # Given version 1 is live and healthy
    model = "bake-bad"
    assert stack.release(model, "1", inference_artifact(HEALTHY), SMOKE).status == "SUCCEEDED"
    live = stack.alias(model)
    assert live is not None
    # When version 2, which passes its smoke test but fails real requests, is released with a watch
    manifest = {**SMOKE, "watch": {"bake_s": 60, "max_error_rate": 0.2}}
    with traffic(stack, model):
        outcome = stack.release(model, "2", inference_artifact(FAILS_UNDER_TRAFFIC), manifest)

    # Then the watch trips well within the bake, the alias goes back to version 1, and it says why
    assert (outcome.status, outcome.error) == ("FAILED", "AlarmTriggered"), outcome.cause
    assert "5xx-share" in (outcome.cause or "") and "went to ALARM" in (outcome.cause or "")
    assert stack.alias(model) is not None and stack.alias(model)["version"] == "1"  # type: ignore[index]
    assert _watched_for(stack, outcome) < 60
    # And the rolled-back endpoint is gone, version 1's still answers
    stack.await_condition(lambda: len(stack.sagemaker_resources(model)["endpoints"]) == 1, what="deleted")
    stack.runtime.invoke_endpoint(EndpointName=live["endpoint_name"], Body=b'{"x": 1}', ContentType="application/json")
    # And the history shows both the failure and the rollback; the events say the same
    bad = record_of(stack, model, "2")
    assert bad["outcome"] == "FAILED" and bad["error_code"] == "AlarmTriggered"
    assert bad["rolled_back_to"] == "1" and "5xx-share" in bad["rollback_reason"]
    assert bad["watch"]["errors_5xx"] > 0
    assert record_of(stack, model, "1")["rolled_back_from"] == "2"
    events = stack.release_events(model)
    (rolled_back,) = of_type(events, "Release Rolled Back")
    assert rolled_back["detail"]["version"] == "1" and rolled_back["detail"]["rolled_back_from"] == "2"
    assert "5xx-share" in rolled_back["detail"]["reason"]
    assert of_type(events, "Release Failed")[-1]["detail"]["error"]["code"] == "AlarmTriggered"


def _watched_for(stack: Harness, outcome: Outcome) -> float:
    events = stack.history_events(outcome.execution_arn)
    entered = next(e["timestamp"] for e in events if e.get("stateEnteredEventDetails", {}).get("name") == "Watch")
    left = next(e["timestamp"] for e in events if e.get("stateEnteredEventDetails", {}).get("name") == "Clean Up")
    return float((left - entered).total_seconds())


def test_a_healthy_release_survives_its_watch_and_only_then_retires_the_old_one(stack: Harness) -> None:
    model = "bake-good"
    assert stack.release(model, "1", inference_artifact(HEALTHY), {**SMOKE, "retain": 0}).status == "SUCCEEDED"
    first = stack.alias(model)
    assert first is not None
    manifest = {**SMOKE, "retain": 0, "watch": {"bake_s": 15, "max_error_rate": 0.2}}
    key = f"models/{model}/2/model.tar.gz"
    execution = stack.execution_for(key, stack.upload(model, "2", inference_artifact(HEALTHY), manifest))
    with traffic(stack, model) as answers:
        # While version 2 is watched, version 1's endpoint still runs (it is what a rollback would go to)
        stack.await_condition(lambda: "Watch" in stack.states_entered(execution), what="watching")
        assert first["endpoint_name"] in stack.sagemaker_resources(model)["endpoints"]
        outcome = stack.wait(execution)
    assert outcome.status == "SUCCEEDED", outcome.cause
    assert 500 not in answers
    # Then, after the watch, version 1 retired; the history has what the watch saw
    assert stack.sagemaker_resources(model)["endpoints"] == [stack.alias(model)["endpoint_name"]]  # type: ignore[index]
    assert record_of(stack, model, "1")["endpoint_state"] == "retired"
    watched = record_of(stack, model, "2")["watch"]
    assert watched["invocations"] > 0 and watched["errors_5xx"] == 0


def test_a_named_alarm_in_alarm_rolls_the_release_back(stack: Harness) -> None:
    # Given the team's own alarm on a business metric, and version 1 live
    model = "bake-user-alarm"
    stack.cloudwatch.put_metric_alarm(
        AlarmName="checkout-conversion", Namespace="Shop", MetricName="Conversions", Statistic="Sum",
        Period=60, EvaluationPeriods=1, Threshold=1, ComparisonOperator="LessThanThreshold",
    )  # fmt: skip
    assert stack.release(model, "1", iris_artifact()).status == "SUCCEEDED"
    # When version 2 is watched on that alarm and the alarm goes off during the watch
    manifest = {"watch": {"bake_s": 120, "alarms": ["checkout-conversion"]}}
    key = f"models/{model}/2/model.tar.gz"
    execution = stack.execution_for(key, stack.upload(model, "2", iris_artifact(), manifest))
    stack.await_condition(lambda: "Watch" in stack.states_entered(execution), what="watching")
    stack.cloudwatch.set_alarm_state(
        AlarmName="checkout-conversion", StateValue="ALARM", StateReason="conversions fell to 0 after the release"
    )
    outcome = stack.wait(execution)
    # Then the release is rolled back, naming the alarm and its reason
    assert (outcome.status, outcome.error) == ("FAILED", "AlarmTriggered")
    assert "checkout-conversion" in (outcome.cause or "") and "conversions fell to 0" in (outcome.cause or "")
    assert stack.alias(model)["version"] == "1"  # type: ignore[index]


def test_the_new_fleet_is_never_smaller_than_the_live_one(stack: Harness) -> None:
    model = "bake-capacity"
    assert stack.release(model, "1", iris_artifact(), {"initial_instance_count": 3}).status == "SUCCEEDED"
    assert stack.release(model, "2", iris_artifact()).status == "SUCCEEDED"  # the stack's default is 1
    endpoint = stack.alias(model)["endpoint_name"]  # type: ignore[index]
    config = stack.sagemaker.describe_endpoint_config(EndpointConfigName=endpoint)
    assert config["ProductionVariants"][0]["InitialInstanceCount"] == 3
    # Unless the manifest says otherwise
    assert stack.release(model, "3", iris_artifact(), {"initial_instance_count": 1}).status == "SUCCEEDED"
    endpoint = stack.alias(model)["endpoint_name"]  # type: ignore[index]
    config = stack.sagemaker.describe_endpoint_config(EndpointConfigName=endpoint)
    assert config["ProductionVariants"][0]["InitialInstanceCount"] == 1


def test_autoscaling_is_registered_before_the_alias_moves_and_deregistered_on_retirement(stack: Harness) -> None:
    model = "bake-scaling"
    scaling = {"min_instances": 1, "max_instances": 4, "target_invocations_per_instance": 100}
    assert stack.release(model, "1", iris_artifact(), {"autoscaling": scaling, "retain": 0}).status == "SUCCEEDED"
    first = stack.alias(model)["endpoint_name"]  # type: ignore[index]
    targets = stack.autoscaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    mine = [t for t in targets if t["ResourceId"] == f"endpoint/{first}/variant/AllTraffic"]
    assert [(t["MinCapacity"], t["MaxCapacity"]) for t in mine] == [(1, 4)]
    policies = stack.autoscaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    assert any(p["ResourceId"] == f"endpoint/{first}/variant/AllTraffic" for p in policies)
    # When version 2 retires version 1, its scalable target goes with it
    assert stack.release(model, "2", iris_artifact(), {"autoscaling": scaling, "retain": 0}).status == "SUCCEEDED"
    targets = stack.autoscaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert not [t for t in targets if t["ResourceId"] == f"endpoint/{first}/variant/AllTraffic"]


def test_data_capture_writes_sagemakers_capture_files_and_is_kept_on_the_next_release(stack: Harness) -> None:
    model = "bake-capture"
    manifest = {"data_capture": {"sampling_percent": 100}}
    assert stack.release(model, "1", iris_artifact(), manifest).status == "SUCCEEDED"
    endpoint = stack.alias(model)["endpoint_name"]  # type: ignore[index]
    stack.runtime.invoke_endpoint(EndpointName=endpoint, Body=IRIS_REQUEST, ContentType="application/json")
    prefix = f"capture/{model}/{endpoint}/AllTraffic/"

    def captured() -> list[dict[str, Any]]:
        listed = stack.s3.list_objects_v2(Bucket=stack.bucket, Prefix=prefix).get("Contents", [])
        return [
            json.loads(line)
            for item in listed
            for line in stack.s3.get_object(Bucket=stack.bucket, Key=item["Key"])["Body"].read().splitlines()
        ]

    stack.await_condition(lambda: any(IRIS_REQUEST in r["captureData"]["endpointInput"]["data"] for r in captured()))
    record = next(r for r in captured() if IRIS_REQUEST in r["captureData"]["endpointInput"]["data"])
    assert record["captureData"]["endpointInput"]["mode"] == "INPUT"
    assert record["captureData"]["endpointOutput"]["mode"] == "OUTPUT"
    assert json.loads(record["captureData"]["endpointOutput"]["data"])["predictions"] == [0]
    assert record["eventMetadata"]["eventId"] and record["eventVersion"] == "0"
    # And a release whose manifest says nothing of capture keeps it
    assert stack.release(model, "2", iris_artifact()).status == "SUCCEEDED"
    endpoint = stack.alias(model)["endpoint_name"]  # type: ignore[index]
    config = stack.sagemaker.describe_endpoint_config(EndpointConfigName=endpoint)
    assert config["DataCaptureConfig"]["DestinationS3Uri"] == f"s3://{stack.bucket}/capture/{model}/"


def test_status_shows_the_watch_and_a_rollback_by_hand_ends_it(
    stack: Harness, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from dropship.cli import main

    monkeypatch.setenv("DROPSHIP_ENDPOINT_URL", stack.endpoint_url)
    model = "bake-by-hand"
    assert stack.release(model, "1", iris_artifact()).status == "SUCCEEDED"
    execution = stack.execution_for(
        f"models/{model}/2/model.tar.gz", stack.upload(model, "2", iris_artifact(), {"watch": {"bake_s": 300}})
    )
    stack.await_condition(lambda: record_of(stack, model, "2").get("stage") == "Watching", what="watching")

    # When the team looks at the model while version 2 is watched
    assert main(["status", model]) == 0
    # Then they see the watch and what it has seen so far
    assert "watching until" in capsys.readouterr().out

    # When they roll back by hand during the watch
    assert main(["rollback", model]) == 0
    said = capsys.readouterr().out
    assert "-> version 1" in said and "Ended the watch of version 2" in said
    # Then the alias is on version 1 at once, and the release finishes without waiting out its bake
    assert stack.alias(model)["version"] == "1"  # type: ignore[index]
    outcome = stack.wait(execution, timeout=60)
    assert outcome.status == "SUCCEEDED" and outcome.states[-2:] == ["Watch", "Finish Release"]
    record = record_of(stack, model, "2")
    assert any("ended by hand" in warning for warning in record["warnings"])
    assert record["rolled_back_to"] == "1"

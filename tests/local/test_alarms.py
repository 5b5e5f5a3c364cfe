"""CloudWatch alarms evaluated as CloudWatch evaluates them, with the state change events it puts."""

from __future__ import annotations

import json
import logging
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from moto.cloudwatch.models import CloudWatchBackend

from dropship.local import LocalStack
from dropship.local.alarms import Decision, decide, explain, java_double, look
from dropship.local.metrics import MetricIndex
from dropship.release import Release, WatchPlan
from dropship.watch import Watches, WatchRecord, guard_names
from tests.local.conftest import wait_until
from tests.local.documented import EVENTS, assert_shaped_like
from tests.local.helpers import EventSink, in_service, start_endpoint

# The CloudWatch User Guide's tables ("How alarm state is evaluated when data is missing"): the evaluation
# range's datapoints oldest first (0 not breaching, X breaching, - missing), and the state for each
# TreatMissingData; None where the alarm keeps its state.
THREE_OF_THREE = [
    ("0 - X - X", "OK", "OK", "OK", "OK"),
    ("0 - - - -", "OK", "OK", "OK", "OK"),
    ("- - - - -", "INSUFFICIENT_DATA", None, "ALARM", "OK"),
    ("0 X X - X", "ALARM", "ALARM", "ALARM", "ALARM"),
    ("- - - - X", "INSUFFICIENT_DATA", None, "ALARM", "OK"),
    ("X - - - -", "ALARM", None, "ALARM", "OK"),
]
TWO_OF_THREE = [
    ("0 - X - X", "ALARM", "ALARM", "ALARM", "ALARM"),
    ("0 0 X 0 X", "ALARM", "ALARM", "ALARM", "ALARM"),
    ("0 - X - -", "OK", "OK", "ALARM", "OK"),
    ("- - - - 0", "OK", "OK", "ALARM", "OK"),
    ("- - - - X", "INSUFFICIENT_DATA", None, "ALARM", "OK"),
]
TREATMENTS = ("missing", "ignore", "breaching", "notBreaching")


@pytest.mark.parametrize(
    ("datapoints_to_alarm", "row"),
    [(3, row) for row in THREE_OF_THREE] + [(2, row) for row in TWO_OF_THREE],
)
def test_missing_data_is_treated_as_the_user_guide_tabulates(datapoints_to_alarm: int, row: tuple[Any, ...]) -> None:
    points, *expected = row
    flags = [{"0": False, "X": True, "-": None}[p] for p in points.split()]
    for treat, state in zip(TREATMENTS, expected, strict=True):
        assert decide(flags, 3, datapoints_to_alarm, treat).state == state, (points, treat)


def test_the_newest_datapoints_decide_when_there_are_enough() -> None:
    # 1 out of 1: the newest real datapoint, however old the others
    assert decide([True, None, False], 1, 1, "notBreaching") == Decision("OK", (2,))
    assert decide([False, None, True], 1, 1, "notBreaching") == Decision("ALARM", (2,))
    assert decide([None, True, None], 1, 1, "notBreaching") == Decision("ALARM", (1,))
    assert decide([None, None, None], 1, 1, "notBreaching") == Decision("OK", (), 1)


@pytest.mark.parametrize(
    ("value", "printed"),
    [
        (99.50160229693434, "99.50160229693434"),
        (0.0666851903306472, "0.0666851903306472"),
        (50.0, "50.0"),
        (45628.0, "45628.0"),
        (0.05, "0.05"),
        (0.0, "0.0"),
        (1e7, "1.0E7"),
        (12345678.5, "1.23456785E7"),
        (0.0001, "1.0E-4"),
        (-2.5e-5, "-2.5E-5"),
    ],
)
def test_numbers_are_printed_as_cloudwatch_prints_them(value: float, printed: str) -> None:
    assert java_double(value) == printed


def _backend_with(
    values: dict[datetime, float], *, statistic: str = "Average", n: int = 3, m: int = 2, treat: str = "missing"
) -> tuple[CloudWatchBackend, Any]:
    """A CloudWatch backend of its own (the stack's evaluator never sees it) with one alarm and its data."""
    backend = CloudWatchBackend("eu-west-3", "000000000000")
    dims = [{"Name": "Host", "Value": "a"}]
    alarm = backend.put_metric_alarm(
        name="cpu",
        namespace="Test/Reasons",
        metric_name="CPU",
        comparison_operator="GreaterThanThreshold",
        evaluation_periods=n,
        datapoints_to_alarm=m,
        period=60,
        threshold=3.0,
        statistic=statistic,
        description="cpu too high",
        dimensions=dims,
        alarm_actions=[],
        treat_missing_data=treat,
    )
    backend.put_metric_data(
        "Test/Reasons",
        [
            {"MetricName": "CPU", "Dimensions": dims, "Value": value, "Timestamp": when.replace(tzinfo=None)}
            for when, value in values.items()
        ],
    )
    return backend, alarm


AT = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
NOW = AT + timedelta(minutes=4, seconds=40, milliseconds=123)  # the newest complete minute starts at 10:03


def test_reasons_are_worded_as_cloudwatch_words_them() -> None:
    # Given 2 of the 3 newest minutes breach a 3.0 threshold (M of N = 2 of 3)
    backend, alarm = _backend_with(
        {
            AT + timedelta(minutes=1, seconds=10): 5.0,
            AT + timedelta(minutes=2, seconds=20): 4.0,
            AT + timedelta(minutes=3): 1.0,
        }
    )
    looked = look(alarm, MetricIndex(backend.metric_data), NOW)
    assert looked.decision.state == "ALARM"

    # Then the reason names the breaching datapoints, newest first, as in the User Guide's examples
    evaluation = explain(looked, "OK")
    assert evaluation.reason == (
        "Threshold Crossed: 2 out of the last 3 datapoints [4.0 (05/01/26 10:02:00), 5.0 (05/01/26 10:01:00)] "
        "were greater than the threshold (3.0) (minimum 2 datapoints for OK -> ALARM transition)."
    )
    data = json.loads(evaluation.reason_data)
    assert data == {
        "version": "1.0",
        "queryDate": "2026-01-05T10:04:40.123+0000",
        "startDate": "2026-01-05T10:01:00.000+0000",
        "statistic": "Average",
        "period": 60,
        "recentDatapoints": [5.0, 4.0, 1.0],
        "threshold": 3.0,
        "evaluatedDatapoints": [
            {"timestamp": "2026-01-05T10:03:00.000+0000", "sampleCount": 1.0, "value": 1.0},
            {"timestamp": "2026-01-05T10:02:00.000+0000", "sampleCount": 1.0, "value": 4.0},
            {"timestamp": "2026-01-05T10:01:00.000+0000", "sampleCount": 1.0, "value": 5.0},
        ],
    }
    # And coming from INSUFFICIENT_DATA the short form is used, as in AWS's examples
    assert explain(looked, "INSUFFICIENT_DATA").reason == (
        "Threshold Crossed: 2 datapoints [4.0 (05/01/26 10:02:00), 5.0 (05/01/26 10:01:00)] "
        "were greater than the threshold (3.0)."
    )


def test_ok_and_missing_data_reasons() -> None:
    # Given the newest 3 minutes are within the threshold
    backend, alarm = _backend_with({AT + timedelta(minutes=k + 1): 1.0 + k for k in range(3)})
    looked = look(alarm, MetricIndex(backend.metric_data), NOW)
    assert explain(looked, "ALARM").reason == (
        "Threshold Crossed: 3 out of the last 3 datapoints [3.0 (05/01/26 10:03:00), 2.0 (05/01/26 10:02:00), "
        "1.0 (05/01/26 10:01:00)] were not greater than the threshold (3.0) "
        "(minimum 2 datapoints for ALARM -> OK transition)."
    )
    # Given no data at all
    for treat, state, reason in (
        ("missing", "INSUFFICIENT_DATA", "Insufficient Data: 3 datapoints were unknown."),
        (
            "notBreaching",
            "OK",
            "Threshold Crossed: no datapoints were received for 3 periods and 3 missing datapoints were treated as "
            "[NonBreaching].",
        ),
        (
            "breaching",
            "ALARM",
            "Threshold Crossed: no datapoints were received for 3 periods and 3 missing datapoints were treated as "
            "[Breaching].",
        ),
    ):
        backend, alarm = _backend_with({}, treat=treat)
        looked = look(alarm, MetricIndex(backend.metric_data), NOW)
        evaluation = explain(looked, "OK" if state != "OK" else "ALARM")
        assert (evaluation.state, evaluation.reason) == (state, reason)
        data = json.loads(evaluation.reason_data)
        assert "startDate" not in data and data["recentDatapoints"] == []
        assert [e["timestamp"][11:16] for e in data["evaluatedDatapoints"]] == ["10:03", "10:02", "10:01"]


def test_a_percentile_alarm_with_few_samples_can_be_told_to_wait() -> None:
    backend, alarm = _backend_with({AT + timedelta(minutes=3): 10.0}, statistic="Average", n=1, m=1)
    alarm.statistic, alarm.extended_statistic = None, "p99"
    assert look(alarm, MetricIndex(backend.metric_data), NOW).decision.state == "ALARM"
    alarm.evaluate_low_sample_count_percentile = "ignore"  # fewer than 10/(1-0.99) = 1000 samples
    assert look(alarm, MetricIndex(backend.metric_data), NOW).decision.state is None


# -- through the API ----------------------------------------------------------------------------------


def _put_quiet_alarm(aws, name: str) -> None:
    """An alarm on a metric nobody publishes that ignores missing data: only SetAlarmState changes it."""
    aws("cloudwatch").put_metric_alarm(
        AlarmName=name,
        AlarmDescription="forced by the test",
        Namespace="Test/Quiet",
        MetricName="Nothing",
        Dimensions=[{"Name": "Host", "Value": "a"}],
        Statistic="Maximum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1.0,
        ComparisonOperator="GreaterThanThreshold",
        TreatMissingData="ignore",
    )


def _alarm(aws, name: str) -> dict[str, Any]:
    alarm: dict[str, Any] = aws("cloudwatch").describe_alarms(AlarmNames=[name])["MetricAlarms"][0]
    return alarm


def test_a_new_alarm_has_insufficient_data_and_an_update_keeps_its_state(stack: LocalStack, aws) -> None:
    # moto 5.2.5 starts an alarm OK, and starts it again when it is updated
    _put_quiet_alarm(aws, "quiet-1")
    created = _alarm(aws, "quiet-1")
    assert (created["StateValue"], created["StateReason"]) == ("INSUFFICIENT_DATA", "Unchecked: Initial alarm creation")
    assert "StateReasonData" not in created
    aws("cloudwatch").set_alarm_state(AlarmName="quiet-1", StateValue="ALARM", StateReason="forced")
    _put_quiet_alarm(aws, "quiet-1")  # PutMetricAlarm again: "its state is left unchanged"
    updated = _alarm(aws, "quiet-1")
    assert (updated["StateValue"], updated["StateReason"]) == ("ALARM", "forced")
    assert updated["StateTransitionedTimestamp"] >= created["StateTransitionedTimestamp"]
    aws("cloudwatch").delete_alarms(AlarmNames=["quiet-1"])


def test_set_alarm_state_puts_the_documented_event(stack: LocalStack, aws) -> None:
    name = f"forced-{uuid.uuid4().hex[:8]}"
    sink = EventSink(aws, {"source": ["aws.cloudwatch"], "detail": {"alarmName": [name]}})
    _put_quiet_alarm(aws, name)
    reason_data = json.dumps({"version": "1.0", "by": "test"})
    cloudwatch = aws("cloudwatch")

    # When a user forces the alarm OK, then into ALARM (as tests and demos do)
    cloudwatch.set_alarm_state(AlarmName=name, StateValue="OK", StateReason="all good", StateReasonData=reason_data)
    forced = json.dumps({"version": "1.0", "forced": True})
    cloudwatch.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason="forced by hand", StateReasonData=forced)

    # Then each change puts a CloudWatch Alarm State Change event shaped as AWS's example
    first = sink.await_event(lambda e: e["detail"]["state"]["value"] == "OK")
    assert first["detail"]["previousState"]["reason"] == "Unchecked: Initial alarm creation"
    assert "reasonData" not in first["detail"]["previousState"]  # as in AWS's example of a first change
    event = sink.await_event(lambda e: e["detail"]["state"]["value"] == "ALARM")
    example = documented_single_metric()
    assert_shaped_like(event, example)
    assert set(event["detail"]) == set(example["detail"])
    assert event["resources"] == [_alarm(aws, name)["AlarmArn"]]
    detail = event["detail"]
    assert (detail["state"]["reason"], detail["state"]["reasonData"]) == ("forced by hand", forced)
    assert detail["previousState"] == {**detail["previousState"], "value": "OK", "reasonData": reason_data}
    assert detail["configuration"]["description"] == "forced by the test"
    assert detail["configuration"]["metrics"][0]["metricStat"] == {
        "metric": {"dimensions": {"Host": "a"}, "name": "Nothing", "namespace": "Test/Quiet"},
        "period": 60,
        "stat": "Maximum",
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000", detail["state"]["timestamp"])
    # And setting the state it already has changes nothing, so puts nothing
    cloudwatch.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason="again")
    cloudwatch.delete_alarms(AlarmNames=[name])
    assert [e["detail"]["state"]["value"] for e in sink.drain()] == ["OK", "ALARM"]


def _example(path: Path) -> dict[str, Any]:
    """An alarm event example as a shape: no ``time`` (moto delivers its own), dimensions as an empty map (their
    names are the example's data)."""
    example: dict[str, Any] = json.loads(path.read_text())
    for metric in example["detail"]["configuration"]["metrics"]:
        if "metricStat" in metric:
            metric["metricStat"]["metric"]["dimensions"] = {}
    return {k: v for k, v in example.items() if k != "time"}


def documented_single_metric() -> dict[str, Any]:
    return _example(Path(__file__).resolve().parents[1] / "events" / "cloudwatch_alarm_state_change.json")


def _shaped_like_metric_math_example(event: dict[str, Any]) -> None:
    example = _example(EVENTS / "cloudwatch_alarm_state_change_metric_math.json")
    expression_example, stat_example = example["detail"]["configuration"].pop("metrics")[:2]
    assert_shaped_like(event, example)
    for metric in event["detail"]["configuration"]["metrics"]:  # each like the example's of its kind
        assert_shaped_like(metric, expression_example if "expression" in metric else stat_example)


def test_the_watch_guards_trip_when_the_new_endpoint_fails(stack: LocalStack, aws) -> None:
    # Given a live endpoint and dropship's guard alarms on it, created by the watch's own code
    name = "guarded-1"
    start_endpoint(aws, stack, name)
    in_service(aws, name)
    plan = WatchPlan(bake_s=600, max_error_rate=0.05, max_p99_latency_ms=0, period_s=10)
    release = Release.model_construct(
        model="churn", version="7", execution_arn="arn:aws:states:us-east-1:123456789012:execution:r:x",
        resource_name=name, watch=plan,
    )  # fmt: skip
    watches = Watches(None, "unused", aws("cloudwatch"), None)
    guards = guard_names(name)
    sink = EventSink(aws, {"source": ["aws.cloudwatch"], "detail": {"alarmName": list(guards.values())}})
    assert sorted(watches.put_guards(release)) == sorted(guards.values())

    # Then without traffic they settle OK (no datapoints, treated as not breaching)
    for guard in guards.values():
        settled = wait_until(lambda g=guard: (a := _alarm(aws, g))["StateValue"] == "OK" and a, 15)
        assert settled["StateReason"] == (
            "Threshold Crossed: no datapoints were received for 1 period and 1 missing datapoint was treated as "
            "[NonBreaching]."
        )
    started = datetime.now(UTC).timestamp()

    # When the endpoint answers 5xx
    for _ in range(3):
        with pytest.raises(Exception, match="ModelError"):
            aws("sagemaker-runtime").invoke_endpoint(
                EndpointName=name, Body=b'{"fail": "x"}', ContentType="application/json"
            )

    # Then both guards go to ALARM within a period or so, and each puts its event
    share = sink.await_event(
        lambda e: e["detail"]["alarmName"] == guards["errors"] and e["detail"]["state"]["value"] == "ALARM"
    )
    latency = sink.await_event(
        lambda e: e["detail"]["alarmName"] == guards["latency"] and e["detail"]["state"]["value"] == "ALARM"
    )
    assert re.fullmatch(
        r"Threshold Crossed: 1 out of the last 1 datapoints \[1\.0 \(\d\d/\d\d/\d\d \d\d:\d\d:\d\d\)\] was greater "
        r"than the threshold \(0\.05\) \(minimum 1 datapoint for OK -> ALARM transition\)\.",
        share["detail"]["state"]["reason"],
    )
    _shaped_like_metric_math_example(share)
    share_data = json.loads(share["detail"]["state"]["reasonData"])
    assert share_data["period"] == 10 and share_data["recentDatapoints"] == [1.0] and share_data["threshold"] == 0.05
    assert "statistic" not in share_data  # a metric math alarm's reason data has none
    assert share["detail"]["previousState"]["value"] == "OK"
    latency_data = json.loads(latency["detail"]["state"]["reasonData"])
    assert latency_data["statistic"] == "p99" and 1 <= latency_data["evaluatedDatapoints"][0]["sampleCount"] <= 3
    assert_shaped_like(latency, documented_single_metric())
    assert latency["detail"]["configuration"]["metrics"][0]["metricStat"]["stat"] == "p99"

    # And the watch, looking itself, sees the tripped guard and the figures (DescribeAlarms, GetMetricData)
    record = WatchRecord(
        model="churn", alias="live", execution_arn=release.execution_arn, endpoint_name=name, task_token="t",
        alarms=[guards["errors"]], started=started, until=started + 600,
    )  # fmt: skip
    tripped = watches.tripped(record)
    assert tripped is not None and tripped[0] == guards["errors"] and tripped[1].startswith("Threshold Crossed")
    figures = watches.figures(record)
    assert (figures.invocations, figures.errors_5xx, figures.errors_4xx) == (3, 3, 0)
    assert figures.p99_latency_ms is not None and figures.p99_latency_ms >= 0
    watches.delete_guards(name)
    aws("sagemaker").delete_endpoint(EndpointName=name)


def test_an_alarm_the_stack_cannot_evaluate_is_left_alone_and_said_so(
    stack: LocalStack, aws, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="dropship.local.alarms")
    aws("cloudwatch").put_metric_alarm(
        AlarmName="unsupported-1",
        Metrics=[
            {
                "Id": "m1",
                "MetricStat": {
                    "Metric": {"Namespace": "Test/Quiet", "MetricName": "Nothing"},
                    "Period": 60,
                    "Stat": "Sum",
                },
                "ReturnData": False,
            },
            {"Id": "e1", "Expression": "SUM(METRICS())", "ReturnData": True},
        ],
        EvaluationPeriods=1,
        Threshold=1.0,
        ComparisonOperator="GreaterThanThreshold",
    )
    wait_until(lambda: "alarm unsupported-1 is not evaluated" in caplog.text, 10)
    assert _alarm(aws, "unsupported-1")["StateValue"] == "INSUFFICIENT_DATA"
    aws("cloudwatch").delete_alarms(AlarmNames=["unsupported-1"])

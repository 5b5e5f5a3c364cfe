"""SageMaker's invocation metrics from local endpoints, and GetMetricData answered as CloudWatch answers it."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError
from hypothesis import given
from hypothesis import strategies as st

from dropship.local import LocalStack
from dropship.local.metrics import DistributionDatum, statistic
from tests.local.helpers import in_service, start_endpoint

SAGEMAKER_METRICS = {
    "Invocations",
    "Invocation4XXErrors",
    "Invocation5XXErrors",
    "InvocationsPerInstance",
    "ModelLatency",
    "OverheadLatency",
}


def _stat(query_id: str, metric: str, stat: str, dimensions: list[dict[str, str]], **extra: Any) -> dict[str, Any]:
    metric_stat: dict[str, Any] = {
        "Metric": {
            "Namespace": extra.pop("namespace", "AWS/SageMaker"),
            "MetricName": metric,
            "Dimensions": dimensions,
        },
        "Period": extra.pop("period", 60),
        "Stat": stat,
    }
    metric_stat.update(extra)
    return {"Id": query_id, "MetricStat": metric_stat}


def _values(aws, queries: list[dict[str, Any]], start: datetime, end: datetime) -> dict[str, list[float]]:
    results = aws("cloudwatch").get_metric_data(MetricDataQueries=queries, StartTime=start, EndTime=end)
    return {r["Id"]: r["Values"] for r in results["MetricDataResults"]}


def test_every_forwarded_invocation_records_sagemakers_metrics(stack: LocalStack, aws) -> None:
    # Given an endpoint of two instances
    start_endpoint(aws, stack, "metrics-1", instances=2)
    in_service(aws, "metrics-1")
    runtime = aws("sagemaker-runtime")
    begun = datetime.now(UTC)

    # When it answers three requests, rejects one (400) and fails on two (500)
    for body in ([[1.0]], [[2.0]], [[3.0]]):
        runtime.invoke_endpoint(EndpointName="metrics-1", Body=json.dumps(body), ContentType="application/json")
    for body in (b"not json", b'{"fail": "boom"}', b'{"fail": "boom"}'):
        with pytest.raises(ClientError):
            runtime.invoke_endpoint(EndpointName="metrics-1", Body=body, ContentType="application/json")

    # Then CloudWatch has SageMaker's invocation metrics for the variant, with the documented dimensions
    dims = [{"Name": "EndpointName", "Value": "metrics-1"}, {"Name": "VariantName", "Value": "AllTraffic"}]
    listed = aws("cloudwatch").list_metrics(Namespace="AWS/SageMaker", Dimensions=[dims[0]])["Metrics"]
    assert {m["MetricName"] for m in listed} == SAGEMAKER_METRICS
    assert all(sorted(d["Name"] for d in m["Dimensions"]) == ["EndpointName", "VariantName"] for m in listed)
    start, end = begun - timedelta(minutes=1), datetime.now(UTC) + timedelta(minutes=1)
    values = _values(
        aws,
        [
            _stat("invocations", "Invocations", "Sum", dims),
            _stat("errors4", "Invocation4XXErrors", "Sum", dims),
            _stat("errors5", "Invocation5XXErrors", "Sum", dims),
            _stat("errors5_count", "Invocation5XXErrors", "SampleCount", dims),
            _stat("per_instance", "InvocationsPerInstance", "Sum", dims),
            _stat("latency_count", "ModelLatency", "SampleCount", dims),
            _stat("latency_min", "ModelLatency", "Minimum", dims),
            _stat("latency_max", "ModelLatency", "Maximum", dims),
            _stat("latency_p99", "ModelLatency", "p99", dims),
            _stat("overhead_count", "OverheadLatency", "SampleCount", dims),
            _stat("overhead_min", "OverheadLatency", "Minimum", dims),
            _stat("latency_us", "ModelLatency", "SampleCount", dims, Unit="Microseconds"),
            _stat("latency_ms", "ModelLatency", "SampleCount", dims, Unit="Milliseconds"),
            _stat("invocations_none", "Invocations", "Sum", dims, Unit="None"),
        ],
        start,
        end,
    )
    # one per invocation, 1 for a 4xx / 5xx answer and 0 otherwise, 1/instances per invocation
    assert sum(values["invocations"]) == 6
    assert sum(values["errors4"]) == 1
    assert sum(values["errors5"]) == 2
    assert sum(values["errors5_count"]) == 6
    assert sum(values["per_instance"]) == pytest.approx(3.0)
    # latencies in microseconds, one sample per invocation (the container answers in well under a minute)
    assert sum(values["latency_count"]) == 6 and sum(values["overhead_count"]) == 6
    assert 0 < min(values["latency_min"]) <= max(values["latency_p99"]) <= max(values["latency_max"]) < 60e6
    assert min(values["overhead_min"]) >= 0
    assert sum(values["latency_us"]) == 6 and values["latency_ms"] == []
    assert sum(values["invocations_none"]) == 6
    aws("sagemaker").delete_endpoint(EndpointName="metrics-1")


def _put(aws, namespace: str, name: str, dims: list[dict[str, str]], when: datetime, **value: Any) -> None:
    aws("cloudwatch").put_metric_data(
        Namespace=namespace, MetricData=[{"MetricName": name, "Dimensions": dims, "Timestamp": when, **value}]
    )


def _minute(minutes_ago: int) -> datetime:
    return datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=minutes_ago)


def test_get_metric_data_computes_percentiles(aws) -> None:
    # moto 5.2.5 fails with a TypeError on any percentile statistic
    when = _minute(3) + timedelta(seconds=5)
    dims = [{"Name": "Case", "Value": "percentiles"}]
    _put(aws, "Test/Percentiles", "Latency", dims, when, Values=[float(v) for v in range(1, 101)])
    values = _values(
        aws,
        [
            _stat(f"p{p}", "Latency", f"p{p}", dims, namespace="Test/Percentiles")
            for p in ("50", "90", "99", "99.9", "100")
        ],
        when - timedelta(minutes=1),
        when + timedelta(minutes=1),
    )
    assert values == {"p50": [50.0], "p90": [90.0], "p99": [99.0], "p99.9": [100.0], "p100": [100.0]}


def test_a_metric_is_its_namespace_name_and_exact_dimensions(aws) -> None:
    # moto 5.2.5 ignores the namespace once dimensions are given, and misses dimensions given in another order
    when = _minute(3) + timedelta(seconds=5)
    both = [{"Name": "Host", "Value": "a"}, {"Name": "Zone", "Value": "z"}]
    _put(aws, "Test/Exact", "Requests", both, when, Value=1.0)
    _put(aws, "Test/Other", "Requests", both, when, Value=10.0)
    _put(aws, "Test/Exact", "Requests", both[:1], when, Value=100.0)
    values = _values(
        aws,
        [
            _stat("reversed", "Requests", "Sum", list(reversed(both)), namespace="Test/Exact"),
            _stat("fewer", "Requests", "Sum", both[:1], namespace="Test/Exact"),
        ],
        when - timedelta(minutes=1),
        when + timedelta(minutes=1),
    )
    assert values == {"reversed": [1.0], "fewer": [100.0]}


def test_periods_start_at_the_rounded_start_time(aws) -> None:
    # CloudWatch rounds a StartTime of less than 15 days ago down to the minute; moto 5.2.5 starts periods at it
    minute = _minute(4)
    dims = [{"Name": "Case", "Value": "rounding"}]
    _put(aws, "Test/Rounding", "Requests", dims, minute + timedelta(seconds=5), Value=2.0)
    _put(aws, "Test/Rounding", "Requests", dims, minute + timedelta(seconds=70), Value=3.0)
    results = aws("cloudwatch").get_metric_data(
        MetricDataQueries=[_stat("r", "Requests", "Sum", dims, namespace="Test/Rounding")],
        StartTime=minute + timedelta(seconds=30),
        EndTime=minute + timedelta(minutes=3),
        ScanBy="TimestampAscending",
    )["MetricDataResults"][0]
    assert results["Timestamps"] == [minute, minute + timedelta(minutes=1)]
    assert results["Values"] == [2.0, 3.0]


def test_metric_math_combines_queries_per_timestamp(aws) -> None:
    # moto 5.2.5 evaluates an expression only when it is a bare query id
    dims = [{"Name": "Case", "Value": "math"}]
    first, second, third = _minute(6), _minute(5), _minute(4)
    for when, errors, invocations in ((first, 1.0, 4.0), (second, 0.0, 0.0), (third, 2.0, None)):
        _put(aws, "Test/Math", "Errors", dims, when, Value=errors)
        if invocations is not None:
            _put(aws, "Test/Math", "Invocations", dims, when, Value=invocations)
    queries = [
        {**_stat("errors", "Errors", "Sum", dims, namespace="Test/Math"), "ReturnData": False},
        {**_stat("invocations", "Invocations", "Sum", dims, namespace="Test/Math"), "ReturnData": False},
        {"Id": "share", "Expression": "errors / invocations"},
        {"Id": "percent", "Expression": "share * 100"},
        {"Id": "both", "Expression": "(errors + invocations) - -1"},
    ]
    results = aws("cloudwatch").get_metric_data(
        MetricDataQueries=queries, StartTime=first, EndTime=_minute(2), ScanBy="TimestampAscending"
    )["MetricDataResults"]
    by_id = {r["Id"]: (r["Timestamps"], r["Values"]) for r in results}
    # a division by zero, or a timestamp only one operand has, gives no value there
    assert by_id == {
        "share": ([first], [0.25]),
        "percent": ([first], [25.0]),
        "both": ([first, second], [6.0, 1.0]),
    }
    with pytest.raises(ClientError, match="evaluates metric math with"):
        aws("cloudwatch").get_metric_data(
            MetricDataQueries=[queries[0], {"Id": "total", "Expression": "SUM(METRICS())"}],
            StartTime=first,
            EndTime=_minute(2),
        )


@given(
    st.lists(st.integers(min_value=0, max_value=1_000_000), min_size=1, max_size=200),
    st.sampled_from(["p1", "p10", "p50", "p90", "p99", "p99.9", "p100"]),
)
def test_a_percentile_is_the_nearest_rank(values: list[int], stat: str) -> None:
    """One distribution datum or one datum per value: the same statistics; pNN is the nearest-rank percentile."""
    datum = DistributionDatum("N", "M", [], datetime(2026, 1, 1), "None")
    for value in values:
        datum.add(float(value))
    ordered = sorted(values)
    rank = max(1, math.ceil(float(stat[1:]) / 100 * len(values)))
    assert statistic([datum], stat) == (ordered[rank - 1], len(values))
    assert statistic([datum], "Sum") == (sum(values), len(values))
    assert statistic([datum], "Minimum")[0] == ordered[0] and statistic([datum], "Maximum")[0] == ordered[-1]

"""Benchmark: what observing a local endpoint costs, per invocation and per alarm evaluation pass.

Not a test. Run from the repository root when the machine is quiet:

    .venv/bin/python benchmarks/observability.py [--invocations 100000]

Prints the time ``InvocationMetrics.record`` (SageMaker's six invocation metrics into moto's CloudWatch) and
``DataCapture.capture`` (a sampled record formatted and queued; S3 writes happen on the flush thread) add to one
invocation, and the time one ``AlarmEvaluator`` pass takes over dropship's two guard alarms once the endpoint
has served that many invocations (one datum per metric and second, at 6 invocations a second).
"""

from __future__ import annotations

import argparse
import os
import random
import time
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import boto3
from moto import mock_aws
from moto.cloudwatch.models import CloudWatchBackend, cloudwatch_backends

from dropship.local import alarms, metrics
from dropship.local.alarms import AlarmEvaluator
from dropship.local.capture import DataCapture, Exchange
from dropship.local.metrics import DistributionDatum, InvocationMetrics
from dropship.release import Release, WatchPlan
from dropship.watch import Watches

ACCOUNT, REGION, ENDPOINT = "123456789012", "us-east-1", "bench-1"
os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")  # moto's mock, never AWS


def per_call_us(calls: int, call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - started) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--invocations", type=int, default=100_000)
    n = parser.parse_args().invocations
    with mock_aws(), ExitStack() as patches:
        metrics.install(patches)
        alarms.install(patches)
        run(n, cloudwatch_backends[ACCOUNT][REGION])


def run(n: int, backend: CloudWatchBackend) -> None:

    recorder = InvocationMetrics()
    record_us = per_call_us(
        20_000,
        lambda: recorder.record(
            ACCOUNT,
            REGION,
            ENDPOINT,
            "AllTraffic",
            status=200,
            model_latency_us=random.uniform(500, 5000),
            overhead_latency_us=100.0,
            instance_count=1,
        ),
    )
    print(f"metrics per invocation:        {record_us:7.1f} us")

    capture = DataCapture(flush_s=3600)  # not started: measures sampling, formatting and queueing
    config = {
        "InitialSamplingPercentage": 100,
        "DestinationS3Uri": "s3://bucket/capture/bench/",
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        "CaptureContentTypeHeader": {"JsonContentTypes": ["application/json"]},
    }
    exchange = Exchange(
        ENDPOINT, "AllTraffic", b'{"instances": [[1, 2, 3]]}', "application/json", b"[6]", "application/json"
    )
    capture_us = per_call_us(20_000, lambda: capture.capture(ACCOUNT, config, exchange))
    print(f"data capture per invocation:   {capture_us:7.1f} us")

    # An endpoint's history: n invocations at 6 a second, one datum per metric and second, then the guards the
    # watch creates (through moto's API, as the Watch function creates them).
    backend.metric_data.clear()
    dims = [{"Name": "EndpointName", "Value": ENDPOINT}, {"Name": "VariantName", "Value": "AllTraffic"}]
    first = datetime.now(UTC).replace(microsecond=0, tzinfo=None) - timedelta(seconds=n // 6)
    for second in range(n // 6):
        for name, value in (("Invocations", 1.0), ("Invocation5XXErrors", 0.0), ("ModelLatency", 1000.0)):
            datum = DistributionDatum("AWS/SageMaker", name, dims, first + timedelta(seconds=second), "None")
            for _ in range(6):
                datum.add(value)
            backend.metric_data.append(datum)
    plan = WatchPlan(bake_s=600, max_error_rate=0.05, max_p99_latency_ms=1000, period_s=10)
    release = Release.model_construct(
        model="bench", version="1", execution_arn="arn:aws:states:us-east-1:123456789012:execution:r:x",
        resource_name=ENDPOINT, watch=plan,
    )  # fmt: skip
    Watches(None, "unused", boto3.client("cloudwatch", region_name=REGION), None).put_guards(release)
    evaluator = AlarmEvaluator(0)
    with mock.patch("dropship.local.alarms.put_state_change"):
        evaluator.evaluate_all()  # the first pass keys every datum
        started = time.perf_counter()
        evaluator.evaluate_all()
    pass_ms = (time.perf_counter() - started) * 1e3
    print(f"alarm pass, 2 guards, {n} invocations ({len(backend.metric_data)} datums): {pass_ms:7.1f} ms")


if __name__ == "__main__":
    main()

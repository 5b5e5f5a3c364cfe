"""SageMaker data capture of local endpoints: SageMaker's record format and S3 layout, in the emulated S3."""

from __future__ import annotations

import base64
import json
import random
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from dropship.local import LocalStack
from dropship.local.capture import DataCapture, Exchange, record
from tests.local.conftest import wait_until
from tests.local.documented import assert_shaped_like, documented
from tests.local.helpers import in_service, start_endpoint

HEADERS = {"CsvContentTypes": ["text/csv"], "JsonContentTypes": ["application/json"]}
KEY = re.compile(
    r"capture/churn/(?P<endpoint>[\w-]+)/AllTraffic/(?P<hour>\d{4}/\d\d/\d\d/\d\d)/"
    r"\d\d-\d\d-\d{3}-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.jsonl"
)


def _capture(stack: LocalStack, **overrides: Any) -> dict[str, Any]:
    return {
        "EnableCapture": True,
        "InitialSamplingPercentage": 100,
        "DestinationS3Uri": f"s3://{stack.outputs['BucketName']}/capture/churn/",
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        "CaptureContentTypeHeader": HEADERS,
        **overrides,
    }


def _records(aws, stack: LocalStack, endpoint: str) -> list[tuple[str, dict[str, Any]]]:
    """Every captured record of ``endpoint`` so far, with the key of its file."""
    s3 = aws("s3")
    bucket = stack.outputs["BucketName"]
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"capture/churn/{endpoint}/").get("Contents", [])
    found = []
    for item in sorted(listed, key=lambda i: i["Key"]):
        body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read().decode()
        assert body.endswith("\n")  # JSON Lines
        found.extend((item["Key"], json.loads(line)) for line in body.splitlines())
    return found


def test_describe_endpoint_shows_sagemakers_capture_summary(stack: LocalStack, aws) -> None:
    # Given an endpoint config capturing 40% of the traffic, one of them with a KMS key
    start_endpoint(aws, stack, "summary-1", capture=_capture(stack, InitialSamplingPercentage=40))
    start_endpoint(aws, stack, "summary-2", capture=_capture(stack, KmsKeyId="alias/capture"))
    # Then DescribeEndpoint shows SageMaker's summary of it, and KmsKeyId only when there is one
    assert in_service(aws, "summary-1")["DataCaptureConfig"] == {
        "EnableCapture": True,
        "CaptureStatus": "Started",
        "CurrentSamplingPercentage": 40,
        "DestinationS3Uri": f"s3://{stack.outputs['BucketName']}/capture/churn/",
    }
    assert in_service(aws, "summary-2")["DataCaptureConfig"]["KmsKeyId"] == "alias/capture"
    for name in ("summary-1", "summary-2"):
        aws("sagemaker").delete_endpoint(EndpointName=name)


def test_invocations_are_captured_in_sagemakers_format_and_layout(stack: LocalStack, aws) -> None:
    # Given an endpoint capturing all its input and output, CSV and JSON kept as text
    start_endpoint(aws, stack, "capture-all", coef=[1.0, 2.0], capture=_capture(stack))
    in_service(aws, "capture-all")
    runtime = aws("sagemaker-runtime")

    # When it answers a CSV request, a JSON one (with an inference id) and rejects a third
    runtime.invoke_endpoint(EndpointName="capture-all", Body=b"1,2\n3,4\n", ContentType="text/csv")
    runtime.invoke_endpoint(
        EndpointName="capture-all", Body=b'{"instances": [[1, 1]]}', ContentType="application/json", InferenceId="req-7"
    )
    with pytest.raises(ClientError):
        runtime.invoke_endpoint(EndpointName="capture-all", Body=b"not json", ContentType="application/json")

    # Then the two it answered are written to S3 as SageMaker writes them (the failed one is not)
    records = wait_until(lambda: len(found := _records(aws, stack, "capture-all")) == 2 and found, 15)
    example = documented("data_capture_record.json")
    for key, captured in records:
        assert_shaped_like(captured, example)
        match = KEY.fullmatch(key)
        assert match is not None, key
        assert match["endpoint"] == "capture-all"
        inferred = captured["eventMetadata"]["inferenceTime"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", inferred)
        assert match["hour"] == inferred[:13].replace("-", "/").replace("T", "/")  # the invocation's hour
        assert captured["eventVersion"] == "0"
    csv, answered = (captured["captureData"] for _, captured in records)
    assert csv["endpointInput"] == {
        "observedContentType": "text/csv",
        "mode": "INPUT",
        "data": "1,2\n3,4\n",
        "encoding": "CSV",
    }
    assert csv["endpointOutput"] == {
        "observedContentType": "text/csv; charset=utf-8",  # the media type decides, as in SageMaker's example
        "mode": "OUTPUT",
        "data": "5.0\n11.0",
        "encoding": "CSV",
    }
    assert answered["endpointInput"]["encoding"] == "JSON"
    assert json.loads(answered["endpointOutput"]["data"]) == {"predictions": [3.0]}
    assert records[1][1]["eventMetadata"]["inferenceId"] == "req-7"
    assert "inferenceId" not in records[0][1]["eventMetadata"]
    aws("sagemaker").delete_endpoint(EndpointName="capture-all")


def test_other_bodies_are_base64_and_only_what_is_asked_is_captured(stack: LocalStack, aws) -> None:
    # Given an endpoint capturing only its input, with no CaptureContentTypeHeader (SageMaker: base64 then)
    config = _capture(stack, CaptureOptions=[{"CaptureMode": "Input"}])
    del config["CaptureContentTypeHeader"]
    start_endpoint(aws, stack, "capture-input", capture=config)
    in_service(aws, "capture-input")

    # When it is invoked, and deleted at once
    body = b'{"instances": [[2]]}'
    aws("sagemaker-runtime").invoke_endpoint(EndpointName="capture-input", Body=body, ContentType="application/json")
    aws("sagemaker").delete_endpoint(EndpointName="capture-input")

    # Then nothing it captured is lost, and the record has the input only, in base64
    [(_, captured)] = _records(aws, stack, "capture-input")
    assert list(captured["captureData"]) == ["endpointInput"]
    assert captured["captureData"]["endpointInput"]["encoding"] == "BASE64"
    assert base64.b64decode(captured["captureData"]["endpointInput"]["data"]) == body


def test_the_sampling_percentage_decides_how_many_are_captured() -> None:
    exchange = Exchange("e", "AllTraffic", b"1", "text/csv", b"2", "text/csv")

    def captured(config: dict[str, Any]) -> int:
        capture = DataCapture(flush_s=3600, rng=random.Random(7))  # not started: nothing is written
        return sum(capture.capture("123456789012", config, exchange) for _ in range(1000))

    base = {"DestinationS3Uri": "s3://b/p", "CaptureOptions": [{"CaptureMode": "Input"}]}
    assert captured({**base, "InitialSamplingPercentage": 100}) == 1000
    assert 400 < captured({**base, "InitialSamplingPercentage": 50}) < 600
    assert captured({**base, "InitialSamplingPercentage": 0}) == 0
    assert captured({**base, "InitialSamplingPercentage": 100, "EnableCapture": False}) == 0
    assert captured({}) == 0


def test_a_body_that_is_not_text_is_kept_in_base64_whatever_its_content_type() -> None:
    config = {"CaptureOptions": [{"CaptureMode": "Input"}], "CaptureContentTypeHeader": HEADERS}
    binary = b"\x93NUMPY\xff"
    captured = record(
        config, Exchange("e", "v", binary, "text/csv", b"", "text/csv"), when=datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
    )
    assert captured["captureData"]["endpointInput"]["encoding"] == "BASE64"
    assert base64.b64decode(captured["captureData"]["endpointInput"]["data"]) == binary

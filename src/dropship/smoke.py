"""Smoke-testing a new endpoint with real requests before the alias moves."""

from __future__ import annotations

import json
import time
from typing import Any

from botocore.exceptions import ClientError, ReadTimeoutError
from botocore.exceptions import ConnectionError as BotoConnectionError

from dropship.aws import model_error
from dropship.manifest import SmokeSample
from dropship.release import SmokeReport, SmokeResult

DEFAULT_SAMPLE_LABEL = "the stack's default sample"
DEFAULT_SAMPLE_REJECTED = (
    "the model rejected the stack's default sample (status {status}); add `smoke_test` samples to release.json "
    "to check predictions"
)
NO_ANSWER = 0  # the status recorded when the endpoint gave no answer (timeout, connection lost)


def evaluate_default(status: int, body: bytes, latency_ms: float) -> SmokeResult:
    """The stack's default sample may not fit the model: only a 5xx or no answer fails it; a 4xx warns."""
    problems, warning = [], None
    if status == NO_ANSWER or status >= 500:
        problems.append(f"status {status or 'none (no answer)'}: {_snippet(body)}")
    elif status >= 400:
        warning = DEFAULT_SAMPLE_REJECTED.format(status=status)
    return SmokeResult(
        sample=0,
        label=DEFAULT_SAMPLE_LABEL,
        passed=not problems,
        status=status,
        latency_ms=round(latency_ms, 1),
        problems=problems,
        warning=warning,
    )


def evaluate(index: int, sample: SmokeSample, status: int, body: bytes, latency_ms: float) -> SmokeResult:
    """Check one response against a manifest sample's expectation. Pure: no I/O."""
    expect = sample.expect
    problems: list[str] = []
    if status != expect.status:
        problems.append(f"status {status}, expected {expect.status}: {_snippet(body)}")
    elif "contains" in expect.model_fields_set and expect.contains is not None:
        if expect.contains not in body.decode("utf-8", "replace"):
            problems.append(f"response does not contain {expect.contains!r}: {_snippet(body)}")
    elif "json_equals" in expect.model_fields_set or "json_schema" in expect.model_fields_set:
        problems.extend(
            _check_json(expect.json_equals, expect.json_schema, body, "json_schema" in expect.model_fields_set)
        )
    if sample.max_latency_ms is not None and latency_ms > sample.max_latency_ms:
        problems.append(f"took {latency_ms:.0f} ms, budget {sample.max_latency_ms} ms")
    return SmokeResult(
        sample=index,
        label=f"sample {index} of release.json",
        passed=not problems,
        status=status,
        latency_ms=round(latency_ms, 1),
        problems=problems,
    )


def _check_json(equals: Any, schema: dict[str, Any] | None, body: bytes, by_schema: bool) -> list[str]:
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return [f"response is not JSON: {_snippet(body)}"]
    if by_schema:
        from aws_lambda_powertools.utilities.validation import SchemaValidationError, validate

        try:
            validate(event=document, schema=schema or {})
        except SchemaValidationError as exc:
            return [f"response does not match json_schema: {exc.message or exc}"]
        return []
    if document != equals:
        return [f"response {_snippet(body)} is not equal to {json.dumps(equals)[:200]}"]
    return []


def _snippet(body: bytes, limit: int = 200) -> str:
    text = body.decode("utf-8", "replace").strip()
    return text if len(text) <= limit else text[:limit] + "..."


def invoke(runtime: Any, endpoint_name: str, sample: SmokeSample) -> tuple[int, bytes, float]:
    """Send one sample; a container error comes back as its original status, not as an exception."""
    started = time.perf_counter()
    try:
        response = runtime.invoke_endpoint(
            EndpointName=endpoint_name,
            Body=sample.payload(),
            ContentType=sample.content_type,
            Accept=sample.accept,
        )
        body = response["Body"].read()
        status = 200
    except (ReadTimeoutError, BotoConnectionError) as exc:
        status, body = NO_ANSWER, f"no answer from the endpoint: {exc}".encode()
    except ClientError as exc:
        answer = model_error(exc)
        if answer is None:
            raise
        status, body = answer[0], answer[1].encode()
    return status, body, (time.perf_counter() - started) * 1000


def run(runtime: Any, endpoint_name: str, samples: list[SmokeSample], default: bool = False) -> SmokeReport:
    """Send every sample (``default``: the one sample is the stack's default, judged leniently)."""
    results = []
    for index, sample in enumerate(samples):
        status, body, latency_ms = invoke(runtime, endpoint_name, sample)
        if default:
            results.append(evaluate_default(status, body, latency_ms))
        else:
            results.append(evaluate(index, sample, status, body, latency_ms))
    passed = all(r.passed for r in results)
    if not passed:
        summary = describe_failures(results)
    elif default:
        summary = f"{DEFAULT_SAMPLE_LABEL} passed" + (" with a warning" if results[0].warning else "")
    else:
        summary = f"all {len(results)} smoke-test samples passed"
    return SmokeReport(passed=passed, summary=f"endpoint {endpoint_name}: {summary}", results=results)


def describe_failures(results: list[SmokeResult]) -> str:
    failed = [r for r in results if not r.passed]
    parts = [f"{r.label}: {'; '.join(r.problems)}" for r in failed]
    return f"{len(failed)} of {len(results)} smoke-test samples failed: " + " | ".join(parts)

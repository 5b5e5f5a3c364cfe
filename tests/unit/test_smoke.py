import json

from dropship.manifest import SmokeSample
from dropship.smoke import describe_failures, evaluate


def sample(**expect: object) -> SmokeSample:
    return SmokeSample.model_validate({"body": "[[1]]", "expect": expect})


def test_status_and_json_equal_pass() -> None:
    result = evaluate(0, sample(json_equals={"predictions": [1]}), 200, b'{"predictions": [1]}', 12.0)
    assert result.passed and result.problems == []


def test_wrong_status_fails_with_body_snippet() -> None:
    result = evaluate(0, sample(), 500, b'{"error": "boom"}', 5.0)
    assert not result.passed
    assert "status 500, expected 200" in result.problems[0] and "boom" in result.problems[0]


def test_expected_error_status_passes() -> None:
    assert evaluate(0, sample(status=400), 400, b"bad", 1.0).passed


def test_json_equals_mismatch_and_not_json() -> None:
    assert "not equal" in evaluate(0, sample(json_equals=[1]), 200, b"[2]", 1.0).problems[0]
    assert "not JSON" in evaluate(0, sample(json_equals=[1]), 200, b"<html>", 1.0).problems[0]


def test_json_equals_null_is_a_real_expectation() -> None:
    assert not evaluate(0, sample(json_equals=None), 200, b"[1]", 1.0).passed
    assert evaluate(0, sample(json_equals=None), 200, b"null", 1.0).passed


def test_json_schema() -> None:
    schema = {"type": "object", "required": ["predictions"]}
    assert evaluate(0, sample(json_schema=schema), 200, b'{"predictions": []}', 1.0).passed
    failed = evaluate(0, sample(json_schema=schema), 200, b'{"other": 1}', 1.0)
    assert "json_schema" in failed.problems[0]


def test_contains() -> None:
    assert evaluate(0, sample(contains="setosa"), 200, b'["setosa"]', 1.0).passed
    assert "does not contain" in evaluate(0, sample(contains="x"), 200, b"abc", 1.0).problems[0]


def test_latency_budget() -> None:
    slow = SmokeSample.model_validate({"body": "1", "max_latency_ms": 100})
    assert evaluate(0, slow, 200, b"1", 99.0).passed
    assert "budget 100 ms" in evaluate(0, slow, 200, b"1", 150.0).problems[0]


def test_failures_are_described_for_people() -> None:
    results = [evaluate(0, sample(), 200, b"1", 1.0), evaluate(1, sample(), 404, json.dumps("x").encode(), 1.0)]
    assert describe_failures(results).startswith(
        "1 of 2 smoke-test samples failed: sample 1 of release.json: status 404"
    )

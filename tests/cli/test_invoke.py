"""``dropship invoke``: resolve the alias, call the endpoint, print its answer."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber
from cli_support import REGION, Account

import dropship.cli.stack as cli_stack

BODY = b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}'


@pytest.fixture
def runtime(aws: Account, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    """The CLI's sagemaker-runtime client, stubbed with exact expected requests."""
    client = boto3.client("sagemaker-runtime", region_name=REGION)
    stubber = Stubber(client)
    original = cli_stack.Stack.client

    def route(self: cli_stack.Stack, service: str, probe: bool = False) -> Any:
        return client if service == "sagemaker-runtime" else original(self, service, probe)

    monkeypatch.setattr(cli_stack.Stack, "client", route)
    with stubber:
        yield stubber
    stubber.assert_no_pending_responses()


@pytest.fixture
def iris(aws: Account) -> dict[str, Any]:
    item = aws.release("iris", "1", "2026-11-25T10:00:00.000001")
    aws.point("live", item)
    return item


def answer(payload: bytes) -> dict[str, Any]:
    return {"Body": StreamingBody(io.BytesIO(payload), len(payload)), "ContentType": "application/json"}


def test_invoke_calls_the_endpoint_the_alias_points_at(
    aws: Account, cli: Any, runtime: Stubber, iris: dict[str, Any]
) -> None:
    # Given the endpoint answers with a prediction
    runtime.add_response(
        "invoke_endpoint",
        answer(b'{"predictions": [0]}'),
        {"EndpointName": iris["endpoint_name"], "Body": BODY, "ContentType": "application/json"},
    )
    # When iris is invoked through its alias
    result = cli("invoke", "iris", "--body", BODY.decode())
    # Then the endpoint's answer is printed as it is
    assert result.code == 0, result.err
    assert result.out == '{"predictions": [0]}'


def test_invoke_with_a_body_file_content_type_accept_and_alias(
    aws: Account, cli: Any, runtime: Stubber, tmp_path: Path
) -> None:
    item = aws.release("iris", "2", "2026-11-25T11:00:00.000001", alias="canary")
    aws.point("canary", item)
    (tmp_path / "row.csv").write_bytes(b"5.1,3.5,1.4,0.2\n")
    runtime.add_response(
        "invoke_endpoint",
        answer(b"0\n"),
        {
            "EndpointName": item["endpoint_name"],
            "Body": b"5.1,3.5,1.4,0.2\n",
            "ContentType": "text/csv",
            "Accept": "text/csv",
        },
    )
    result = cli(
        "invoke", "iris", "--body-file", str(tmp_path / "row.csv"), "--content-type", "text/csv",
        "--accept", "text/csv", "--alias", "canary",
    )  # fmt: skip
    assert result.code == 0, result.err
    assert result.out == "0\n"


def test_a_model_error_is_one_line_with_the_containers_status_and_message(
    aws: Account, cli: Any, runtime: Stubber, iris: dict[str, Any]
) -> None:
    # Given the container answers 400
    runtime.add_client_error(
        "invoke_endpoint",
        service_error_code="ModelError",
        service_message="Received client error (400) from primary with message ...",
        http_status_code=424,
        modeled_fields={"OriginalStatusCode": 400, "OriginalMessage": 'expected {"instances": [...]}\ngot a list'},
    )
    # When iris is invoked with a bad body, Then the error names the endpoint, the status and the message
    cli("invoke", "iris", "--body", "[1, 2]").assert_error(
        f'endpoint {iris["endpoint_name"]} (iris version 1) returned 400: expected {{"instances": [...]}} got a list'
    )


def test_other_endpoint_errors_are_one_line(aws: Account, cli: Any, runtime: Stubber, iris: dict[str, Any]) -> None:
    runtime.add_client_error(
        "invoke_endpoint", service_error_code="ValidationError", service_message="Endpoint x of account y not found."
    )
    cli("invoke", "iris", "--body", "{}").assert_error("ValidationError: Endpoint x of account y not found.")


def test_invoke_of_an_unknown_model_or_alias_is_an_error(aws: Account, cli: Any, iris: dict[str, Any]) -> None:
    cli("invoke", "churn", "--body", "{}").assert_error("unknown model 'churn'", "known models: iris")
    cli("invoke", "iris", "--alias", "canary", "--body", "{}").assert_error("iris has no alias 'canary'")


def test_invoke_needs_exactly_one_body(aws: Account, cli: Any) -> None:
    result = cli("invoke", "iris")
    assert result.code == 2
    assert result.err.startswith("dropship: error: one of the arguments --body --body-file is required")
    assert cli("invoke", "iris", "--body", "{}", "--body-file", "x").code == 2

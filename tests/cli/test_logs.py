"""``dropship logs``: an endpoint's container log and a release's task logs, from CloudWatch or the local stack.

Against AWS the logs are in a moto account (CloudWatch Logs groups as SageMaker and Lambda name them);
against the local stack, a moto server stands in for the stack's API, and the log files are written where
the local stack writes them. Task log lines are made by Powertools' own Logger, as the functions log.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import logging
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_lambda_powertools import Logger
from cli_support import REGION, STACK_TEMPLATE, Account
from conftest import deploy_stand_in
from moto import mock_aws
from moto.server import ThreadedMotoServer

import dropship.cli.logs as cli_logs
from dropship.cli.errors import CliError
from dropship.cli.logs import line_time, parse_since
from dropship.local.ports import free_port

# The stand-in stack with two task functions, as SAM creates them (ListStackResources names them).
ROLE = {
    "Type": "AWS::IAM::Role",
    "Properties": {
        "AssumeRolePolicyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
            ],
        }
    },
}


def _function(handler: str) -> dict[str, Any]:
    return {
        "Type": "AWS::Lambda::Function",
        "Properties": {
            "Runtime": "python3.13",
            "Handler": handler,
            "Role": {"Fn::GetAtt": ["TaskRole", "Arn"]},
            "Code": {"ZipFile": "def handler(event, context):\n    return event\n"},
        },
    }


TEMPLATE = {
    **STACK_TEMPLATE,
    "Resources": {
        "TaskRole": ROLE,
        "ValidateFunction": _function("app.handler"),
        "SmokeTestFunction": _function("app.handler"),
    },
}
OURS = "arn:aws:states:us-east-1:123456789012:execution:dropship-Release:ours"
OTHER = "arn:aws:states:us-east-1:123456789012:execution:dropship-Release:other"


# -- task log lines, as Powertools writes them --------------------------------------------------------


class LambdaContext:
    def __init__(self, function_name: str, request_id: str) -> None:
        self.function_name = function_name
        self.memory_limit_in_mb = 512
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:123456789012:function:{function_name}"
        self.aws_request_id = request_id


_POWERTOOLS_OUTPUT = io.StringIO()
_POWERTOOLS = Logger(service="dropship", stream=_POWERTOOLS_OUTPUT)
_CLOCK: Iterator[float] = iter(())


def _set_time(record: logging.LogRecord) -> bool:
    record.created = next(_CLOCK)
    record.msecs = (record.created * 1000) % 1000
    return True


def task_lines(function_name: str, request_id: str, execution_arn: str, messages: list[str], at: float) -> list[str]:
    """What one invocation of a task logs (Powertools JSON lines, correlated with the execution), at ``at``."""
    global _CLOCK
    _CLOCK = itertools.count(at, 0.001)
    _POWERTOOLS_OUTPUT.seek(0)
    _POWERTOOLS_OUTPUT.truncate()

    @_POWERTOOLS.inject_lambda_context(clear_state=True)
    def handler(event: dict[str, Any], context: Any) -> None:
        _POWERTOOLS.set_correlation_id(event["execution_arn"])
        for message in messages:
            _POWERTOOLS.info(message)

    stamped = logging.getLogger("dropship")
    stamped.addFilter(_set_time)  # only while these lines are written: other tests log through "dropship" too
    try:
        handler({"execution_arn": execution_arn}, LambdaContext(function_name, request_id))
    finally:
        stamped.removeFilter(_set_time)
    return _POWERTOOLS_OUTPUT.getvalue().splitlines()


def now_s() -> float:
    return datetime.now(UTC).timestamp()


# -- AWS: CloudWatch Logs ------------------------------------------------------------------------------


@pytest.fixture
def account(clean_env: None) -> Iterator[Account]:
    with mock_aws():
        yield deploy_stand_in(lambda service: boto3.client(service, region_name=REGION), TEMPLATE)


def functions(account: Account) -> dict[str, str]:
    resources = account.cloudformation.list_stack_resources(StackName="dropship")["StackResourceSummaries"]
    return {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in resources if "Function" in r["ResourceType"]}


def put_events(account: Account, group: str, stream: str, events: list[tuple[float, str]]) -> None:
    exists = account.logs.exceptions.ResourceAlreadyExistsException
    with contextlib.suppress(exists):
        account.logs.create_log_group(logGroupName=group)
    with contextlib.suppress(exists):
        account.logs.create_log_stream(logGroupName=group, logStreamName=stream)
    account.logs.put_log_events(
        logGroupName=group,
        logStreamName=stream,
        logEvents=[{"timestamp": int(at * 1000), "message": message} for at, message in events],
    )


def live_release(account: Account, version: str = "3", **values: Any) -> dict[str, Any]:
    started = datetime.now(UTC) - timedelta(minutes=10)
    item = account.release("churn", version, started.strftime("%Y-%m-%dT%H:%M:%S.%f"), **values)
    account.point("live", item)
    return item


def test_the_endpoint_log_of_the_alias_merges_its_streams_by_time(account: Account, cli: Any) -> None:
    # Given churn live on an endpoint with two instances, each with its own log stream
    endpoint = live_release(account)["endpoint_name"]
    group = f"/aws/sagemaker/Endpoints/{endpoint}"
    start = now_s() - 60
    put_events(account, group, "AllTraffic/i-0aaa", [(start, "a: booting"), (start + 2, "a: ready")])
    put_events(account, group, "AllTraffic/i-0bbb", [(start + 1, "b: booting"), (start + 3, "b: ready")])

    # When its logs are asked for
    result = cli("logs", "churn")

    # Then every line of both streams is printed once, oldest first, with its time and stream
    assert result.code == 0, result.err
    assert [line.split(" ", 1)[1] for line in result.out.splitlines()] == [
        "AllTraffic/i-0aaa a: booting",
        "AllTraffic/i-0bbb b: booting",
        "AllTraffic/i-0aaa a: ready",
        "AllTraffic/i-0bbb b: ready",
    ]
    first_time = datetime.fromisoformat(result.out.split(" ", 1)[0])
    assert abs(first_time.timestamp() - start) < 0.002
    # And stderr says whose log it is and where it came from
    assert result.err == f"==> endpoint {endpoint} (churn version 3): CloudWatch Logs group {group}\n"


def test_since_leaves_out_older_lines(account: Account, cli: Any) -> None:
    endpoint = live_release(account)["endpoint_name"]
    group = f"/aws/sagemaker/Endpoints/{endpoint}"
    put_events(account, group, "AllTraffic/i-0aaa", [(now_s() - 3600, "an hour ago"), (now_s() - 60, "a minute ago")])
    result = cli("logs", "churn", "--since", "10m")
    assert result.code == 0, result.err
    assert [line.split(" ", 2)[2] for line in result.out.splitlines()] == ["a minute ago"]


def test_a_version_means_its_newest_release(account: Account, cli: Any) -> None:
    # Given version 3 released once, then uploaded again and failed on a new endpoint
    live_release(account, "3")
    a_minute_ago = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S.%f")
    retry = account.release("churn", "3", a_minute_ago, outcome="FAILED", error_code="EndpointFailed")
    put_events(account, f"/aws/sagemaker/Endpoints/{retry['endpoint_name']}", "AllTraffic/i-0c", [(now_s(), "boom")])

    # When the logs of version 3 are asked for, Then they are those of the newest attempt's endpoint
    result = cli("logs", "churn", "--version", "3")
    assert result.code == 0, result.err
    assert result.out.rstrip().endswith("AllTraffic/i-0c boom")


def test_the_task_logs_of_the_live_release(account: Account, cli: Any) -> None:
    # Given two task functions that logged for the live release's execution and for another one
    names = functions(account)
    item = live_release(account)
    start = now_s() - 300
    ours = item["execution_arn"]
    validated = task_lines(names["ValidateFunction"], "r1", ours, ["validated"], start)
    other = task_lines(names["ValidateFunction"], "r2", OTHER, ["someone else"], start + 1)
    validate = [
        (start, "START RequestId: r1 Version: $LATEST"),
        *[(start + 0.01, line) for line in validated],
        (start + 0.5, "END RequestId: r1"),
        *[(start + 1, line) for line in other],
    ]
    smoke = task_lines(names["SmokeTestFunction"], "r3", ours, ["sample 0 passed"], start + 2)
    put_events(account, f"/aws/lambda/{names['ValidateFunction']}", "2026/11/25/[$LATEST]abc", validate)
    put_events(account, f"/aws/lambda/{names['SmokeTestFunction']}", "2026/11/25/[$LATEST]def", [(start + 2, smoke[0])])

    # When the task logs of churn's live release are asked for
    result = cli("logs", "churn", "--execution")

    # Then only that execution's lines are printed, from both functions, oldest first, named by task
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert [line.split(" ", 2)[1] for line in lines] == ["ValidateFunction", "SmokeTestFunction"]
    messages = [json.loads(line.split(" ", 2)[2]) for line in lines]
    assert [(m["message"], m["correlation_id"]) for m in messages] == [
        ("validated", item["execution_arn"]),
        ("sample 0 passed", item["execution_arn"]),
    ]
    assert result.err.endswith("CloudWatch Logs groups /aws/lambda/<function> (2 functions)\n")


def test_no_log_yet_is_one_line(account: Account, cli: Any) -> None:
    endpoint = live_release(account)["endpoint_name"]
    cli("logs", "churn").assert_error(
        f"no log yet for endpoint {endpoint} (CloudWatch Logs group /aws/sagemaker/Endpoints/{endpoint})"
    )
    cli("logs", "churn", "--execution").assert_error("no task log of churn version 3 yet (CloudWatch Logs groups")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("logs", "churn", "--alias", "canary"), "churn has no alias 'canary': name a release with --version"),
        (("logs", "churn", "--version", "9"), "churn has no release of version 9 (released versions: 4, 3)"),
        (("logs", "churn", "--version", "4"), "never got an endpoint: read its task logs with `dropship logs churn"),
        (("logs", "fraud"), "unknown model 'fraud'"),
        (("logs", "churn", "--since", "yesterday"), "--since 'yesterday' is neither a duration"),
        (("logs", "churn", "--version", "a/b"), "InvalidKey: version 'a/b' is not allowed"),
    ],
)
def test_what_cannot_be_read_is_one_line(account: Account, cli: Any, args: tuple[str, ...], fragment: str) -> None:
    live_release(account)
    account.release(
        "churn", "4", "2026-11-26T12:00:00.000004", outcome="FAILED", error_code="InvalidArtifact", endpoint_name=None
    )
    cli(*args).assert_error(fragment)


def test_follow_prints_new_lines_once_until_interrupted(
    account: Account, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an endpoint with one line so far
    endpoint = live_release(account)["endpoint_name"]
    group = f"/aws/sagemaker/Endpoints/{endpoint}"
    start = now_s() - 30
    put_events(account, group, "AllTraffic/i-0a", [(start, "first")])

    # And while it is followed, a line at the same millisecond and a later one arrive, then the user hits Ctrl-C
    arrivals = [
        [(start, "same millisecond"), (start + 1, "second")],
        [(start + 2, "third")],
    ]

    def sleep(_: float) -> None:
        if not arrivals:
            raise KeyboardInterrupt
        put_events(account, group, "AllTraffic/i-0a", arrivals.pop(0))

    monkeypatch.setattr(cli_logs, "_sleep", sleep)

    # When the log is followed
    result = cli("logs", "churn", "--follow")

    # Then each line is printed once, in order, and Ctrl-C ends it cleanly
    assert result.code == 0, result.err
    assert [line.split(" ", 2)[2] for line in result.out.splitlines()] == [
        "first",
        "same millisecond",
        "second",
        "third",
    ]


# -- the local stack: its log files -------------------------------------------------------------------


@pytest.fixture
def local(clean_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Account]:
    """The stack's API on a local URL (a moto server), as the CLI sees the local stack."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("DROPSHIP_ENDPOINT_URL", url)
    # moto's accounts live in this process: start from an empty one, as a new local stack does
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"), timeout=10).close()
    try:

        def client(service: str) -> Any:
            return boto3.client(
                service, endpoint_url=url, region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x"
            )

        yield deploy_stand_in(client, TEMPLATE)
    finally:
        server.stop()


def write(path: Path, lines: list[str], mode: str = "w") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open(mode) as handle:
        handle.write("".join(line + "\n" for line in lines))


def test_local_endpoint_log_is_read_from_the_state_dir(local: Account, cli: Any, tmp_path: Path) -> None:
    # Given the local stack wrote the endpoint's container log under its state dir
    endpoint = live_release(local)["endpoint_name"]
    log = tmp_path / "dropship-home" / "logs" / "endpoints" / f"{endpoint}.log"
    container = [
        '{"time": "2026-11-25T12:00:00.100Z", "level": "info", "logger": "dropship.serve", "message": "listening"}',
        "a line the model printed",
    ]
    write(log, container)

    # When its logs are asked for, Then the file is printed as it is
    result = cli("logs", "churn")
    assert result.code == 0, result.err
    assert result.out.splitlines() == container
    assert result.err == f"==> endpoint {endpoint} (churn version 3): {log}\n"


def test_local_no_log_yet_is_one_line(local: Account, cli: Any, tmp_path: Path) -> None:
    endpoint = live_release(local)["endpoint_name"]
    log = tmp_path / "dropship-home" / "logs" / "endpoints" / f"{endpoint}.log"
    cli("logs", "churn").assert_error(f"no log yet for endpoint {endpoint} ({log})")


def test_local_task_logs_keep_the_executions_invocations_whole(local: Account, cli: Any, tmp_path: Path) -> None:
    # Given two task functions' log files, with invocations of the live release's execution and of another
    names = functions(local)
    item = live_release(local)
    lambda_dir = tmp_path / "dropship-home" / "logs" / "lambda"
    start = now_s() - 300
    ours = item["execution_arn"]
    write(
        lambda_dir / f"{names['ValidateFunction']}.log",
        [
            "START RequestId: r1 Version: $LATEST",
            *task_lines(names["ValidateFunction"], "r1", OTHER, ["someone else"], start),
            "END RequestId: r1",
            "START RequestId: r2 Version: $LATEST",
            *task_lines(names["ValidateFunction"], "r2", ours, ["validated"], start + 1),
            "Traceback (most recent call last):",
            "  ValueError: a task's own traceback carries no ARN",
            "END RequestId: r2",
        ],
    )
    write(
        lambda_dir / f"{names['SmokeTestFunction']}.log",
        [
            "START RequestId: r3 Version: $LATEST",
            *task_lines(names["SmokeTestFunction"], "r3", ours, ["sample 0 passed"], start + 2),
            "END RequestId: r3",
        ],
    )

    # When the task logs of the live release are asked for
    result = cli("logs", "churn", "--execution")

    # Then its invocations are printed whole (START to END, traceback included), merged by time, named by task
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert [line.split(" ", 1)[0] for line in lines] == ["ValidateFunction"] * 5 + ["SmokeTestFunction"] * 3
    texts = [line.split(" ", 1)[1] for line in lines]
    assert texts[0] == "START RequestId: r2 Version: $LATEST"
    assert json.loads(texts[1])["message"] == "validated"
    assert texts[2:5] == [
        "Traceback (most recent call last):",
        "  ValueError: a task's own traceback carries no ARN",
        "END RequestId: r2",
    ]
    assert json.loads(texts[6])["correlation_id"] == ours
    assert "someone else" not in result.out


def test_local_follow_prints_lines_as_they_are_written(
    local: Account, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an endpoint log being written, the last line not finished yet
    endpoint = live_release(local)["endpoint_name"]
    log = tmp_path / "dropship-home" / "logs" / "endpoints" / f"{endpoint}.log"
    write(log, ["one"])
    with log.open("a") as handle:
        handle.write("tw")
    writes = ["o\nthree\n"]

    def sleep(_: float) -> None:
        if not writes:
            raise KeyboardInterrupt
        with log.open("a") as handle:
            handle.write(writes.pop(0))

    monkeypatch.setattr(cli_logs, "_sleep", sleep)

    # When it is followed, Then whole lines are printed as they come, each once
    result = cli("logs", "churn", "-f")
    assert result.code == 0, result.err
    assert result.out.splitlines() == ["one", "two", "three"]


# -- the rules -------------------------------------------------------------------------------------------


NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", NOW - timedelta(seconds=30)),
        ("10m", NOW - timedelta(minutes=10)),
        ("2h", NOW - timedelta(hours=2)),
        ("1d", NOW - timedelta(days=1)),
        ("1w", NOW - timedelta(weeks=1)),
        ("2026-11-25T10:00:00Z", datetime(2026, 11, 25, 10, tzinfo=UTC)),
        ("2026-11-25 10:00", datetime(2026, 11, 25, 10, tzinfo=UTC)),
        ("2026-11-25T11:00:00+01:00", datetime(2026, 11, 25, 10, tzinfo=UTC)),
    ],
)
def test_since_takes_a_duration_or_a_time(text: str, expected: datetime) -> None:
    assert parse_since(text, now=NOW) == int(expected.timestamp() * 1000)


@pytest.mark.parametrize("text", ["", "ten minutes", "5 parsecs", "-5m"])
def test_since_refuses_anything_else(text: str) -> None:
    with pytest.raises(CliError, match="is neither a duration"):
        parse_since(text, now=NOW)


TEN = int(datetime(2026, 11, 25, 10, tzinfo=UTC).timestamp() * 1000)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        # Powertools' JSON line (its default datefmt), the container's JSON line, gunicorn's own format
        ('{"level":"INFO","message":"x","timestamp":"2026-11-25 10:00:00,250+0000"}', TEN + 250),
        ('{"time": "2026-11-25T10:00:00.250Z", "level": "info", "message": "x"}', TEN + 250),
        ("[2026-11-25 11:00:00 +0100] [7] [INFO] Starting gunicorn 23.0.0", TEN),
        ("2026-11-25T10:00:00Z plain text", TEN),
        ("START RequestId: r1 Version: $LATEST", None),
        ('{"message": "no time"}', None),
        ("{not json", None),
    ],
)
def test_the_time_of_a_local_log_line(line: str, expected: int | None) -> None:
    assert line_time(line) == expected


def test_powertools_lines_made_here_carry_their_time() -> None:
    # The task lines these tests write are Powertools' own; their time is what line_time reads
    at = datetime(2026, 11, 25, 10, tzinfo=UTC).timestamp()
    (line,) = task_lines("fn", "r1", OURS, ["hello"], at)
    assert json.loads(line)["function_request_id"] == "r1"
    assert line_time(line) == TEN


def test_a_reader_that_stops_early_ends_the_command_quietly(local: Account, tmp_path: Path) -> None:
    # Given an endpoint with a long log on the local stack
    endpoint = live_release(local)["endpoint_name"]
    write(tmp_path / "dropship-home" / "logs" / "endpoints" / f"{endpoint}.log", [f"line {i}" for i in range(200_000)])

    # When its log is piped into a reader that stops after the first line (`dropship logs churn | head -n 1`)
    command = [str(Path(sys.executable).with_name("dropship")), "logs", "churn"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        assert process.stdout is not None and process.stderr is not None
        first = process.stdout.readline()
        process.stdout.close()
        errors = process.stderr.read().decode()
        code = process.wait(timeout=60)

    # Then it stops without a traceback
    assert first == b"line 0\n"
    assert code == 1
    assert "Traceback" not in errors and "BrokenPipeError" not in errors, errors

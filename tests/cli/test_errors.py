"""What every command does when it cannot talk to the stack: one line on stderr, exit 1 (2 for usage)."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from cli_support import REGION, STACK_TEMPLATE
from moto import mock_aws

from dropship.cli.stack import LOCAL_ENDPOINT_URL, Stack, Target
from dropship.local.ports import free_port

COMMANDS = [
    ("status",),
    ("history", "iris"),
    ("rollback", "iris"),
    ("invoke", "iris", "--body", "{}"),
]


@pytest.fixture
def no_credentials(clean_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """A shell with no AWS credentials anywhere in the chain."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    for name in (
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.mark.parametrize("command", COMMANDS)
def test_no_credentials(no_credentials: None, cli: Any, command: tuple[str, ...]) -> None:
    line = cli(*command, "--region", REGION).assert_error("no AWS credentials found", "--local")
    assert "testing" not in line


@pytest.mark.parametrize("command", COMMANDS)
def test_stack_not_found(clean_env: None, cli: Any, command: tuple[str, ...]) -> None:
    with mock_aws():
        result = cli(*command)
    line = result.assert_error()
    assert line == (
        "dropship: error: stack 'dropship' not found in us-east-1: deploy it with `sam deploy --guided`, "
        "or start the local stack with `dropship local up`"
    )


def test_the_stack_name_comes_from_the_environment(clean_env: None, cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DROPSHIP_STACK_NAME", "dropship-staging")
    with mock_aws():
        cli("status").assert_error("stack 'dropship-staging' not found in us-east-1")
        cli("status", "--stack-name", "mine", "--region", "eu-west-1").assert_error(
            "stack 'mine' not found in eu-west-1"
        )


@pytest.mark.parametrize("command", COMMANDS)
def test_endpoint_not_reachable(
    clean_env: None, cli: Any, monkeypatch: pytest.MonkeyPatch, command: tuple[str, ...]
) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("DROPSHIP_ENDPOINT_URL", url)
    line = cli(*command).assert_error()
    assert line == f"dropship: error: cannot reach {url}: is `dropship local up` running?"


def test_local_means_the_local_stack_with_dummy_credentials(no_credentials: None) -> None:
    # Given no credentials and no region anywhere
    target = Target.from_options(local=True)
    # When --local is given, Then the local stack's URL and region are used, with dummy credentials
    assert (target.endpoint_url, target.region, target.stack_name) == (LOCAL_ENDPOINT_URL, "us-east-1", "dropship")
    credentials = Stack(target).session.get_credentials()
    assert credentials is not None
    assert credentials.access_key == "dropship-local"


def test_the_endpoint_url_can_come_from_the_environment(clean_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DROPSHIP_ENDPOINT_URL", "http://127.0.0.2:4566")
    assert Target.from_options() == Target("http://127.0.0.2:4566", "us-east-1", "dropship")
    assert Target.from_options(region="eu-west-1").region == "eu-west-1"


def test_local_honours_the_local_port(clean_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the local stack runs on another port
    monkeypatch.setenv("DROPSHIP_LOCAL_PORT", "4600")
    # When --local is given, Then that port is used
    assert Target.from_options(local=True).endpoint_url == "http://127.0.0.1:4600"
    # And an explicit endpoint URL wins over --local
    monkeypatch.setenv("DROPSHIP_ENDPOINT_URL", "http://127.0.0.2:4700")
    assert Target.from_options(local=True).endpoint_url == "http://127.0.0.2:4700"
    # And without --local or a URL, AWS it is
    monkeypatch.delenv("DROPSHIP_ENDPOINT_URL")
    assert Target.from_options().endpoint_url is None


def test_local_reaches_the_local_port(clean_env: None, cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()  # nothing listens there
    monkeypatch.setenv("DROPSHIP_LOCAL_PORT", str(port))
    line = cli("status", "--local").assert_error()
    assert line == f"dropship: error: cannot reach http://127.0.0.1:{port}: is `dropship local up` running?"


@pytest.mark.parametrize("value", ["http://x", "0", "70000", "-1"])
def test_a_bad_local_port_is_one_line(clean_env: None, cli: Any, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("DROPSHIP_LOCAL_PORT", value)
    cli("status", "--local").assert_error(f"DROPSHIP_LOCAL_PORT={value!r} is not a port number")


def test_local_up_listens_on_the_local_port(clean_env: None, cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given `local up` would start the stack with the options it is given
    import dropship.cli.local as cli_local

    ports: list[int] = []
    monkeypatch.setattr(cli_local, "run", lambda args, _: ports.append(args.port) or 0)

    # When it is run with DROPSHIP_LOCAL_PORT set, with and without --port
    monkeypatch.setenv("DROPSHIP_LOCAL_PORT", "4600")
    assert cli("local", "up").code == 0
    assert cli("local", "up", "--port", "4700").code == 0
    monkeypatch.delenv("DROPSHIP_LOCAL_PORT")
    assert cli("local", "up").code == 0

    # Then --port wins, else DROPSHIP_LOCAL_PORT, else 4566: where --local will look
    assert ports == [4600, 4700, 4566]


def test_a_stack_without_the_outputs_is_an_error(clean_env: None, cli: Any) -> None:
    with mock_aws():
        template = {**STACK_TEMPLATE, "Outputs": {"ModelBucketName": {"Value": "b"}}}
        boto3.client("cloudformation", region_name=REGION).create_stack(
            StackName="dropship", TemplateBody=json.dumps(template)
        )
        cli("status").assert_error(
            "stack 'dropship' (CREATE_COMPLETE) has no output ReleaseStateMachineArn, EventBusName, ReleasesTableName,"
        )


def test_an_aws_refusal_is_one_line(clean_env: None, cli: Any) -> None:
    # Given a stack whose table is gone
    with mock_aws():
        boto3.client("cloudformation", region_name=REGION).create_stack(
            StackName="dropship", TemplateBody=json.dumps(STACK_TEMPLATE)
        )
        # When its history is asked for, Then AWS's refusal is reported on one line
        cli("history", "iris").assert_error("AWS refused Query: ResourceNotFoundException")


def test_usage_errors_exit_2_with_one_line(cli: Any) -> None:
    for args in [(), ("release", "x"), ("frobnicate",), ("local",), ("history",)]:
        result = cli(*args)
        assert result.code == 2, args
        lines = result.err.strip().splitlines()
        assert len(lines) == 1, result.err
        assert lines[0].startswith("dropship: error: "), lines[0]


def test_help_and_version_exit_0(cli: Any) -> None:
    result = cli("--help")
    assert result.code == 0
    assert "release" in result.out and "rollback" in result.out
    assert cli("--version").out.startswith("dropship ")
    assert cli("release", "--help").code == 0

"""``dropship rollback``: move the alias back to a retained release and announce it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cli_support import Account

from dropship.alias import AliasRecord


@pytest.fixture
def churn(aws: Account) -> dict[str, dict[str, Any]]:
    """churn: 2 retired, 3 and 4 retained (4 live), 5 failed."""
    releases = {
        "2": aws.release("churn", "2", "2026-11-20T10:00:00.000000", endpoint_state="retired"),
        "3": aws.release("churn", "3", "2026-11-21T10:00:00.000000"),
        "4": aws.release("churn", "4", "2026-11-22T10:00:00.000000"),
        "5": aws.release("churn", "5", "2026-11-23T10:00:00.000000", outcome="FAILED", error_code="SmokeTestFailed"),
    }
    aws.endpoint(releases["3"]["endpoint_name"])
    aws.endpoint(releases["4"]["endpoint_name"])
    aws.point("live", releases["4"])
    return releases


def live(aws: Account) -> AliasRecord:
    record = aws.aliases.get("churn", "live")
    assert record is not None
    return record


def test_rollback_goes_to_the_previous_retained_release(
    aws: Account, cli: Any, churn: dict[str, dict[str, Any]]
) -> None:
    # When churn is rolled back
    result = cli("rollback", "churn")

    # Then the alias points at version 3's endpoint, with version 3's identity and a fresh released_at
    assert result.code == 0, result.err
    record = live(aws)
    assert (record.version, record.endpoint_name, record.sha256, record.execution_arn) == (
        "3",
        churn["3"]["endpoint_name"],
        churn["3"]["sha256"],
        churn["3"]["execution_arn"],
    )
    assert record.released_at > churn["4"]["released_at"]
    # And it says what moved from what to what
    assert f"version 4 ({churn['4']['endpoint_name']}) -> version 3 ({churn['3']['endpoint_name']})" in result.out
    # And a Release Rolled Back event is on the bus
    (event,) = aws.events()
    assert event["source"] == "dropship"
    assert event["detail-type"] == "Release Rolled Back"
    assert event["detail"] == {
        "model": "churn",
        "version": "3",
        "execution_arn": churn["3"]["execution_arn"],
        "endpoint_name": churn["3"]["endpoint_name"],
        "alias": "live",
    }
    # And the model's lock is free again
    assert aws.table.acquire_lock("churn", "someone", 60) is None


def test_rollback_to_a_named_version(aws: Account, cli: Any, churn: dict[str, dict[str, Any]]) -> None:
    # Given churn was rolled back to 3
    assert cli("rollback", "churn").code == 0
    aws.events()
    # When it is rolled "back" to 4 explicitly
    result = cli("rollback", "churn", "--to", "4")
    # Then the alias points at 4 again
    assert result.code == 0, result.err
    assert live(aws).version == "4"
    assert [event["detail"]["version"] for event in aws.events()] == ["4"]


def test_rolling_back_twice_undoes_the_rollback(aws: Account, cli: Any, churn: dict[str, dict[str, Any]]) -> None:
    # Given the alias was rolled back from 4 to 3
    assert cli("rollback", "churn").code == 0
    aws.events()
    # When it is rolled back again, Then it returns to 4, the release that was live before (like an undo)
    assert cli("rollback", "churn").code == 0
    assert live(aws).version == "4"
    assert [e["detail-type"] for e in aws.events()] == ["Release Rolled Back"]


@pytest.mark.parametrize(
    ("version", "fragment"),
    [
        ("2", "version 2 of churn has no running endpoint (retired or failed); retained versions: 3, 4 (current)"),
        ("5", "version 5 of churn has no running endpoint (retired or failed)"),
        ("9", "churn has no release of version 9; retained versions: 3, 4 (current)"),
        ("4", "alias live of churn already points at version 4"),
    ],
)
def test_rolling_back_to_a_version_that_is_not_retained_is_an_error(
    aws: Account, cli: Any, churn: dict[str, dict[str, Any]], version: str, fragment: str
) -> None:
    cli("rollback", "churn", "--to", version).assert_error(fragment)
    assert live(aws).version == "4"
    assert aws.events() == []


def test_an_endpoint_that_is_not_in_service_is_not_rolled_back_to(
    aws: Account, cli: Any, churn: dict[str, dict[str, Any]]
) -> None:
    # Given version 3's endpoint has gone (deleted behind dropship's back)
    aws.sagemaker.delete_endpoint(EndpointName=churn["3"]["endpoint_name"])
    # When churn is rolled back, Then it refuses and the alias stays on 4
    cli("rollback", "churn").assert_error("endpoint of version 3", "no longer exists")
    assert live(aws).version == "4"
    assert aws.table.acquire_lock("churn", "someone", 60) is None


def test_a_release_in_progress_blocks_a_rollback(aws: Account, cli: Any, churn: dict[str, dict[str, Any]]) -> None:
    # Given a release of churn holds the model's lock
    aws.table.acquire_lock("churn", "arn:aws:states:us-east-1:123456789012:execution:dropship-Release:x", 600)
    # When churn is rolled back, Then it refuses rather than race the release
    cli("rollback", "churn").assert_error("a release of churn is in progress")
    assert live(aws).version == "4"


def test_rollback_of_another_alias(aws: Account, cli: Any) -> None:
    # Given releases on the canary alias only
    old = aws.release("churn", "1", "2026-11-20T10:00:00.000000", alias="canary")
    new = aws.release("churn", "2", "2026-11-21T10:00:00.000000", alias="canary")
    aws.endpoint(old["endpoint_name"])
    aws.point("canary", new)
    # When the canary alias is rolled back
    result = cli("rollback", "churn", "--alias", "canary")
    # Then it points at version 1
    assert result.code == 0, result.err
    record = aws.aliases.get("churn", "canary")
    assert record is not None
    assert record.version == "1"
    assert json.loads(json.dumps(aws.events()[0]["detail"]))["alias"] == "canary"


def test_rollback_of_an_unknown_model_or_alias_is_an_error(
    aws: Account, cli: Any, churn: dict[str, dict[str, Any]]
) -> None:
    cli("rollback", "iris").assert_error("unknown model 'iris'", "known models: churn")
    cli("rollback", "churn", "--alias", "canary").assert_error("churn has no alias 'canary'")

"""``dropship status`` and ``dropship history``."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from cli_support import Account

from dropship.cli.report import format_table


def seed_iris(aws: Account) -> None:
    """iris: version 1 live, version 2 failed its smoke test, version 3 still running."""
    v1 = aws.release("iris", "1", "2026-11-25T10:00:00.000001")
    aws.point("live", v1)
    aws.release(
        "iris",
        "2",
        "2026-11-25T11:00:00.000002",
        outcome="FAILED",
        duration_s=Decimal("61.25"),
        error_code="SmokeTestFailed",
        error_message="endpoint iris-2-00: sample 0: response does not match json_schema: 'predictions' is a "
        "required property " + "and more detail " * 20,
        path=["Started", "Locked", "Failed: SmokeTestFailed"],
    )
    aws.release("iris", "3", "2026-11-25T12:00:00.000003", outcome="RUNNING", stage="Locked")


def test_status_shows_every_model_its_aliases_and_last_release(aws: Account, cli: Any) -> None:
    # Given two models, one with a release in progress
    seed_iris(aws)
    churn = aws.release("churn", "7", "2026-11-24T09:00:00.000000")
    aws.point("live", churn)
    aws.point("canary", churn)

    # When the status of everything is asked for
    result = cli("status")

    # Then there is one row per alias, with what it points at and the model's last release
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].split() == ["MODEL", "ALIAS", "VERSION", "ENDPOINT", "LAST", "OUTCOME", "STARTED", "DETAIL"]
    rows = [line.split() for line in lines[1:]]
    assert rows == [
        ["churn", "canary", "7", "churn-7-00", "7", "SUCCEEDED", "2026-11-24", "09:00:00"],
        ["churn", "live", "7", "churn-7-00", "7", "SUCCEEDED", "2026-11-24", "09:00:00"],
        ["iris", "live", "1", "iris-1-01", "3", "RUNNING", "2026-11-25", "12:00:00", "at", "Locked"],
    ]


def test_status_of_one_model(aws: Account, cli: Any) -> None:
    seed_iris(aws)
    aws.release("churn", "7", "2026-11-24T09:00:00.000000")
    result = cli("status", "iris")
    assert result.code == 0, result.err
    assert [line.split()[0] for line in result.out.splitlines()] == ["MODEL", "iris"]


def test_status_json_holds_the_raw_records(aws: Account, cli: Any) -> None:
    seed_iris(aws)
    result = cli("status", "iris", "--json")
    assert result.code == 0, result.err
    (entry,) = json.loads(result.out)
    assert entry["model"] == "iris"
    assert entry["aliases"]["live"]["version"] == "1"
    assert entry["last_release"]["version"] == "3"
    assert entry["last_release"]["outcome"] == "RUNNING"


def test_status_of_an_empty_stack(aws: Account, cli: Any) -> None:
    result = cli("status")
    assert result.code == 0
    assert "No releases yet" in result.out


def test_history_lists_attempts_newest_first_with_path_and_error(aws: Account, cli: Any) -> None:
    # Given three attempts of iris
    seed_iris(aws)

    # When its history is asked for
    result = cli("history", "iris")

    # Then they are listed newest first with outcome, duration, state path and a truncated error
    assert result.code == 0, result.err
    header, running, failed, succeeded = result.out.splitlines()
    assert header.split() == ["STARTED", "VERSION", "OUTCOME", "DURATION", "PATH", "ERROR"]
    assert running.split()[:4] == ["2026-11-25", "12:00:00", "3", "RUNNING"]
    assert "Started > Locked" in running
    assert failed.split()[:5] == ["2026-11-25", "11:00:00", "2", "FAILED", "1m"]
    assert "Started > Locked > Failed: SmokeTestFailed" in failed
    assert "SmokeTestFailed: endpoint iris-2-00: sample 0: response does not match json_schema" in failed
    assert failed.endswith("...")
    assert len(failed) < 220
    assert succeeded.split()[:6] == ["2026-11-25", "10:00:00", "1", "SUCCEEDED", "2m", "06s"]
    assert "Started > Locked > Live" in succeeded


def test_history_json_and_limit(aws: Account, cli: Any) -> None:
    seed_iris(aws)
    result = cli("history", "iris", "--json", "--limit", "2")
    assert result.code == 0, result.err
    items = json.loads(result.out)
    assert [item["version"] for item in items] == ["3", "2"]
    assert items[1]["path"] == ["Started", "Locked", "Failed: SmokeTestFailed"]
    assert items[1]["error_code"] == "SmokeTestFailed"


def test_an_unknown_model_is_an_error(aws: Account, cli: Any) -> None:
    seed_iris(aws)
    cli("history", "churn").assert_error("unknown model 'churn'", "known models: iris")
    cli("status", "churn").assert_error("unknown model 'churn'", "known models: iris")


def test_a_bad_model_name_is_an_error(aws: Account, cli: Any) -> None:
    cli("history", "Not_A_Model").assert_error("InvalidKey: model name 'Not_A_Model' is not allowed")


def test_format_table_pads_all_but_the_last_column() -> None:
    table = format_table(["A", "BB", "C"], [["xxx", "y", "z z"], ["", "", ""]])
    assert table == "A    BB  C\nxxx  y   z z\n"

"""``dropship status`` and ``dropship history``."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import pytest
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


CHURN_STARTED = ["2026-11-24", "09:00:00"]


def test_status_shows_every_model_its_aliases_and_last_release(aws: Account, cli: Any) -> None:
    # Given two models, one with a release in progress
    seed_iris(aws)
    churn = aws.release("churn", "7", "2026-11-24T09:00:00.000000")
    aws.point("live", churn)
    aws.point("canary", churn)

    # When the status of everything is asked for
    result = cli("status")

    # Then there is one row per alias, with what it points at, since when, and the model's last release
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert re.split(r"\s{2,}", lines[0]) == [
        "MODEL", "ALIAS", "VERSION", "ENDPOINT", "LIVE SINCE", "RETAINED", "LAST", "OUTCOME", "STARTED", "DETAIL"
    ]  # fmt: skip
    rows = [line.split() for line in lines[1:]]
    assert rows == [
        ["churn", "canary", "7", "churn-7-00", "2026-11-24", "09:00:00", "-", "7", "SUCCEEDED", *CHURN_STARTED],
        ["churn", "live", "7", "churn-7-00", "2026-11-24", "09:00:00", "-", "7", "SUCCEEDED", *CHURN_STARTED],
        [
            "iris", "live", "1", "iris-1-01", "2026-11-25", "10:00:00", "-",
            "3", "RUNNING", "2026-11-25", "12:00:00", "at", "Locked",
        ],
    ]  # fmt: skip


def seed_rolled_back(aws: Account) -> dict[str, dict[str, Any]]:
    """churn: 1 retired, 2 and 3 retained, 4 failed (endpoint deleted); live on 3, then rolled back to 2."""
    releases = {
        "1": aws.release("churn", "1", "2026-11-20T10:00:00.000001", endpoint_state="retired"),
        "2": aws.release("churn", "2", "2026-11-21T10:00:00.000002"),
        "3": aws.release("churn", "3", "2026-11-22T10:00:00.000003"),
        "4": aws.release(
            "churn",
            "4",
            "2026-11-23T10:00:00.000004",
            outcome="FAILED",
            error_code="EndpointFailed",
            error_message="the container exited",
            endpoint_state="deleted",
        ),
    }
    aws.endpoint(releases["2"]["endpoint_name"])
    aws.point("live", releases["3"])
    return releases


def test_status_and_history_show_a_rollback(aws: Account, cli: Any) -> None:
    # Given churn live on version 3, with version 2 retained
    seed_rolled_back(aws)

    # When the user rolls back to version 2
    assert cli("rollback", "churn").code == 0

    # Then status shows the alias on 2 since the rollback, from 3, and 3 retained in its place
    result = cli("status", "churn")
    assert result.code == 0, result.err
    (row,) = result.out.splitlines()[1:]
    assert row.split()[:3] == ["churn", "live", "2"]
    assert "(rollback from 3)" in row
    assert row.split("(rollback from 3)")[1].split()[0] == "3"  # RETAINED
    # And the last release's detail says its endpoint was deleted
    assert row.endswith("EndpointFailed, endpoint deleted")

    # And history says which release is serving, which are retained, retired or deleted, and why
    history = cli("history", "churn")
    assert history.code == 0, history.err
    rows = rows_with_notes(history.out)
    assert [(cells.split()[2], cell(history.out, cells, "ENDPOINT")) for cells, _ in rows] == [
        ("4", "deleted"),
        ("3", "retained"),
        ("2", "alias live"),
        ("1", "retired"),
    ]
    notes = {cells.split()[2]: lines for cells, lines in rows}
    assert notes["4"] == ["error: EndpointFailed: the container exited"]
    (rolled_back,) = notes["3"]
    assert rolled_back.startswith("rolled back at 20") and rolled_back.endswith(
        ": its alias moved to version 2 (by hand, with dropship rollback)"
    )
    (live_again,) = notes["2"]
    assert live_again.startswith("live again since 20") and live_again.endswith("rolled back to it from version 3")
    assert notes["1"] == []

    # And the records say the same for scripts
    records = {r["version"]: r for r in json.loads(cli("history", "churn", "--json").out)}
    assert (records["3"]["rolled_back_to"], records["2"]["rolled_back_from"]) == ("2", "3")
    assert records["3"]["rolled_back_at"] == records["2"]["live_at"]
    (entry,) = json.loads(cli("status", "churn", "--json").out)
    assert [item["version"] for item in entry["retained"]] == ["3"]


def rows_with_notes(out: str) -> list[tuple[str, list[str]]]:
    """History rows, each with the note lines printed under it (unwrapped)."""
    rows: list[tuple[str, list[str]]] = []
    for line in out.splitlines()[1:]:
        if not line.startswith(" "):
            rows.append((line, []))
        elif line.startswith("      "):
            rows[-1][1][-1] += " " + line.strip()
        else:
            rows[-1][1].append(line.strip())
    return rows


def cell(out: str, row: str, column: str) -> str:
    """A row's value in a column, by where the header puts the column."""
    header = out.splitlines()[0]
    names = re.split(r"\s{2,}", header)
    start = header.index(column)
    following = names.index(column) + 1
    end = header.index(names[following]) if following < len(names) else None
    return row[start:end].strip()


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


def test_history_lists_attempts_newest_first_with_path_and_the_whole_error(
    aws: Account, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given three attempts of iris, and a terminal 100 columns wide
    seed_iris(aws)
    monkeypatch.setenv("COLUMNS", "100")

    # When its history is asked for
    result = cli("history", "iris")

    # Then they are listed newest first with outcome, duration, what became of the endpoint and state path
    assert result.code == 0, result.err
    header = result.out.splitlines()[0]
    assert header.split() == ["STARTED", "VERSION", "OUTCOME", "DURATION", "ENDPOINT", "PATH"]
    (running, _), (failed, failed_notes), (succeeded, _) = rows_with_notes(result.out)
    assert running.split()[:4] == ["2026-11-25", "12:00:00", "3", "RUNNING"]
    assert "Started > Locked" in running
    assert failed.split()[:5] == ["2026-11-25", "11:00:00", "2", "FAILED", "1m"]
    assert failed.endswith("Started > Locked > Failed: SmokeTestFailed")
    assert succeeded.split()[:8] == ["2026-11-25", "10:00:00", "1", "SUCCEEDED", "2m", "06s", "alias", "live"]
    assert "Started > Locked > Live" in succeeded
    # And the whole error is printed under its row, wrapped but never cut
    message = (
        "endpoint iris-2-00: sample 0: response does not match json_schema: 'predictions' is a required property "
        + "and more detail " * 20
    )
    assert failed_notes == [f"error: SmokeTestFailed: {message}".strip()]
    assert all(len(line) <= 100 for line in result.out.splitlines() if line.startswith(" "))


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


def test_history_says_when_a_watch_stopped_before_its_bake_ended(aws: Account, cli: Any) -> None:
    # Given version 1 watched for its whole bake, and version 2 failed by an alarm 3 min 30 s into a 7 min bake
    figures = {"invocations": 25, "errors_5xx": 12, "p99_latency_ms": Decimal("9")}
    aws.release("iris", "1", "2026-11-25T10:00:00.000001", watch={**figures, "errors_5xx": 0,
                "until": "2026-11-25T10:07:00Z"})  # fmt: skip
    aws.release(
        "iris",
        "2",
        "2026-11-25T11:00:00.000002",
        outcome="FAILED",
        error_code="AlarmTriggered",
        finished_at="2026-11-25T11:03:30.000000Z",
        watch={**figures, "until": "2026-11-25T11:07:00Z"},
    )

    # When the history is asked for
    result = cli("history", "iris")

    # Then the failed release's watch says it stopped early, and the other's that it ran to its bake's end
    assert result.code == 0, result.err
    (_, failed_notes), (_, succeeded_notes) = rows_with_notes(result.out)
    stopped = "stopped at 2026-11-25 11:03:30, before its bake's end at 2026-11-25 11:07:00"
    assert f"watch: 25 invocations, 48.0% 5xx, p99 9 ms ({stopped})" in failed_notes
    assert "watch: 25 invocations, 0.0% 5xx, p99 9 ms (until 2026-11-25 10:07:00)" in succeeded_notes

"""``dropship release --wait``: find the execution of this very upload and follow it to its outcome.

moto does not run the stack's state machine, so Step Functions is a scripted fake here: the execution
"starts" from the S3 object version the CLI really uploaded to moto (as EventBridge would) and walks the
states it is given. The end-to-end tests drive the real thing on the local stack.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cli_support import BUCKET, Account

import dropship.cli.release as cli_release
import dropship.cli.stack as cli_stack
from dropship.alias import AliasRecord
from dropship.cli.release import ExecutionWatcher, Progress, Upload

KEY = "models/iris/1/model.tar.gz"
EXECUTION_PREFIX = "arn:aws:states:us-east-1:123456789012:execution:dropship-Release:"
HAPPY_PATH = [
    "Validate Artifact",
    "Is Duplicate?",
    "Announce Start",
    "Acquire Lock",
    "Lock Acquired?",
    "Create Model",
    "Create Endpoint Config",
    "Create Endpoint",
    "Wait For InService",
    "Check Endpoint Status",
    "Endpoint InService?",
    "Smoke Test",
    "Update Alias",
    "Retire Old Releases",
    "Release Lock",
    "Announce Success",
    "Release Succeeded",
]


def s3_event(key: str, version_id: str, bucket: str = BUCKET) -> str:
    return json.dumps(
        {
            "version": "0",
            "detail-type": "Object Created",
            "source": "aws.s3",
            "detail": {"bucket": {"name": bucket}, "object": {"key": key, "size": 10, "version-id": version_id}},
        }
    )


class FakeExecution:
    def __init__(self, arn: str, event: str, states: list[str], status: str, error: str | None, cause: str | None):
        self.arn, self.input, self.states = arn, event, states
        self.final = {"status": status, "error": error, "cause": cause}
        self.entered = 0
        self.start_date = datetime.now(UTC) - timedelta(seconds=3)

    def describe(self) -> dict[str, Any]:
        done = self.entered >= len(self.states)
        described: dict[str, Any] = {
            "executionArn": self.arn,
            "input": self.input,
            "startDate": self.start_date,
            "status": self.final["status"] if done else "RUNNING",
        }
        if done:
            described.update({k: v for k, v in self.final.items() if k != "status" and v is not None})
        return described

    def history(self) -> list[dict[str, Any]]:
        """Each look at the history finds the execution one state further."""
        self.entered = min(self.entered + 1, len(self.states))
        events: list[dict[str, Any]] = [{"type": "ExecutionStarted"}]
        for name in self.states[: self.entered]:
            events.append({"type": "TaskStateEntered", "stateEnteredEventDetails": {"name": name}})
            if name == "Announce Failure" and self.final["status"] == "FAILED":
                cause = json.dumps({"errorMessage": "Float types are not supported.", "errorType": "TypeError"})
                events.append({"type": "TaskFailed", "taskFailedEventDetails": {"error": "TypeError", "cause": cause}})
            events.append({"type": "TaskStateExited", "stateExitedEventDetails": {"name": name}})
        if self.entered == len(self.states) and self.final["status"] == "FAILED":
            events.append({"type": "ExecutionFailed", "executionFailedEventDetails": {}})
        return [{**event, "id": number} for number, event in enumerate(events, start=1)]


class FakeStepFunctions:
    """An older execution of another version of the key, then ours from the second listing on."""

    def __init__(
        self,
        account: Account,
        states: list[str],
        status: str = "SUCCEEDED",
        error: str | None = None,
        cause: str | None = None,
        on_end: Callable[[str], None] | None = None,
        starts: bool = True,
        appears_on_listing: int = 2,
        honours_reverse_order: bool = True,
    ) -> None:
        self.account, self.states, self.status, self.error, self.cause = account, states, status, error, cause
        self.on_end, self.starts, self.appears_on_listing = on_end, starts, appears_on_listing
        self.honours_reverse_order = honours_reverse_order
        other = FakeExecution(
            EXECUTION_PREFIX + "other", s3_event(KEY, "an-older-version"), ["Release Failed"], "FAILED", "X", "Y"
        )
        self.executions: list[FakeExecution] = [other]
        self.listings = 0
        self.described: list[str] = []

    def list_executions(self, stateMachineArn: str, maxResults: int, nextToken: str | None = None) -> dict[str, Any]:
        self.listings += 1
        if self.listings == self.appears_on_listing and self.starts:
            version = self.account.s3.head_object(Bucket=BUCKET, Key=KEY)["VersionId"]
            self.executions.insert(
                0,
                FakeExecution(
                    EXECUTION_PREFIX + "ours", s3_event(KEY, version), self.states, self.status, self.error, self.cause
                ),
            )
        return {"executions": [{"executionArn": e.arn, "startDate": e.start_date} for e in self.executions]}

    def describe_execution(self, executionArn: str) -> dict[str, Any]:
        self.described.append(executionArn)
        execution = next(e for e in self.executions if e.arn == executionArn)
        described = execution.describe()
        if described["status"] != "RUNNING" and self.on_end is not None:
            self.on_end(executionArn)
            self.on_end = None
        return described

    def get_execution_history(self, executionArn: str, reverseOrder: bool, maxResults: int) -> dict[str, Any]:
        events = next(e for e in self.executions if e.arn == executionArn).history()
        return {"events": list(reversed(events)) if reverseOrder and self.honours_reverse_order else events}


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "iris"
    folder.mkdir()
    (folder / "model.joblib").write_bytes(b"model")
    return folder


@pytest.fixture
def use_fake(monkeypatch: pytest.MonkeyPatch) -> Callable[[FakeStepFunctions], FakeStepFunctions]:
    """Route the CLI's Step Functions client to a fake; poll without pausing."""
    monkeypatch.setattr(cli_release, "POLL_S", 0.0)
    original = cli_stack.Stack.client

    def install(fake: FakeStepFunctions) -> FakeStepFunctions:
        def client(self: cli_stack.Stack, service: str, probe: bool = False) -> Any:
            return fake if service == "stepfunctions" else original(self, service, probe)

        monkeypatch.setattr(cli_stack.Stack, "client", client)
        return fake

    return install


def release_wait(cli: Any, model_dir: Path, *extra: str) -> Any:
    return cli("release", str(model_dir), "--model", "iris", "--version", "1", "--wait", *extra)


@pytest.mark.parametrize("honours_reverse_order", [True, False])
def test_a_successful_release_shows_its_states_and_the_alias(
    aws: Account, cli: Any, model_dir: Path, use_fake: Any, honours_reverse_order: bool
) -> None:
    # Given the release of this upload will succeed and move the alias
    def update_alias(arn: str) -> None:
        record = AliasRecord(
            model="iris",
            version="1",
            endpoint_name="iris-1-0a1b2c3d",
            sha256="abc",
            released_at="2026-11-25T12:00:00Z",
            execution_arn=arn,
        )
        aws.aliases.put("live", record)

    fake = use_fake(
        FakeStepFunctions(aws, HAPPY_PATH, on_end=update_alias, honours_reverse_order=honours_reverse_order)
    )

    # When the model is released with --wait
    result = release_wait(cli, model_dir)

    # Then it exits 0, naming the execution, each state once, and where the alias points now
    assert result.code == 0, result.err
    assert f"Execution {EXECUTION_PREFIX}ours" in result.out
    shown = [line.split("] ", 1)[1] for line in result.out.splitlines() if line.lstrip().startswith("[")]
    assert shown == HAPPY_PATH
    assert "Released iris version 1: alias live -> endpoint iris-1-0a1b2c3d" in result.out
    # And the older execution of the same key (another object version) was not mistaken for it
    assert EXECUTION_PREFIX + "ours" in fake.described


def test_a_failed_release_prints_its_error_and_cause(aws: Account, cli: Any, model_dir: Path, use_fake: Any) -> None:
    # Given the release of this upload fails its smoke test
    states = [*HAPPY_PATH[:12], "Clean Up", "Announce Failure", "Release Failed"]
    cause = "endpoint iris-1-0a1b2c3d: sample 0: status 200, but\nthe body has no 'predictions'"
    use_fake(FakeStepFunctions(aws, states, status="FAILED", error="SmokeTestFailed", cause=cause))

    # When it is released with --wait
    result = release_wait(cli, model_dir)

    # Then it exits 1 with the contract code and the cause on one line of stderr
    assert result.code == 1
    assert result.err.strip().splitlines() == [
        "Release Failed: SmokeTestFailed: endpoint iris-1-0a1b2c3d: sample 0: status 200, but the body has no "
        "'predictions'"
    ]
    assert "Clean Up" in result.out


def test_a_duplicate_event_is_reported_and_succeeds(aws: Account, cli: Any, model_dir: Path, use_fake: Any) -> None:
    use_fake(FakeStepFunctions(aws, ["Validate Artifact", "Is Duplicate?", "Ignore Duplicate Event"]))
    result = release_wait(cli, model_dir)
    assert result.code == 0, result.err
    assert "duplicate S3 event" in result.out


def test_an_aborted_execution_is_a_failure(aws: Account, cli: Any, model_dir: Path, use_fake: Any) -> None:
    use_fake(FakeStepFunctions(aws, ["Validate Artifact"], status="ABORTED"))
    result = release_wait(cli, model_dir)
    assert result.code == 1
    assert result.err.startswith("Release Failed: ExecutionAborted: the execution ended ABORTED")


def test_no_execution_for_the_upload_is_an_error(
    aws: Account, cli: Any, model_dir: Path, use_fake: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given no execution ever starts for the upload
    monkeypatch.setattr(cli_release, "FIND_TIMEOUT_S", 0.0)
    use_fake(FakeStepFunctions(aws, HAPPY_PATH, starts=False))

    # When it is released with --wait, Then it gives up with a one-line reason
    result = release_wait(cli, model_dir)
    result.assert_error("no release execution started for s3://", "models/iris/1/model.tar.gz")


def test_waiting_is_bounded_by_the_timeout(
    aws: Account, cli: Any, model_dir: Path, use_fake: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a release that takes many polls, and a clock that advances 10 minutes per look
    use_fake(FakeStepFunctions(aws, HAPPY_PATH, appears_on_listing=1))
    ticks = iter(range(0, 100_000, 600))
    original_init = ExecutionWatcher.__init__

    def with_fake_clock(self: ExecutionWatcher, sfn: Any, arn: str, **_: Any) -> None:
        original_init(self, sfn, arn, clock=lambda: float(next(ticks)), sleep=lambda _: None, poll_s=0)

    monkeypatch.setattr(ExecutionWatcher, "__init__", with_fake_clock)

    # When --wait is given a timeout shorter than the release
    result = release_wait(cli, model_dir, "--timeout", "1000")

    # Then it gives up, saying the release is still running
    result.assert_error("gave up waiting after 1000 s", "still running", EXECUTION_PREFIX + "ours")


def test_the_watcher_matches_by_key_and_object_version() -> None:
    # Given executions for another bucket, another key and another version of the same key
    now = datetime.now(UTC)
    inputs = {
        "a": s3_event(KEY, "v2", bucket="elsewhere"),
        "b": s3_event("models/iris/2/model.tar.gz", "v2"),
        "c": s3_event(KEY, "v1"),
        "d": s3_event(KEY, "v2"),
        "e": "not json",
    }

    class Listing:
        def list_executions(self, **_: Any) -> dict[str, Any]:
            return {"executions": [{"executionArn": arn, "startDate": now} for arn in inputs]}

        def describe_execution(self, executionArn: str) -> dict[str, Any]:
            return {"input": inputs[executionArn]}

    watcher = ExecutionWatcher(Listing(), "arn:sm", sleep=lambda _: None)
    # When the execution of version v2 of the key is looked for, Then only "d" matches
    assert watcher.find(Upload(BUCKET, KEY, "v2", now), timeout_s=0) == "d"


def test_progress_updates_one_line_on_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    progress = Progress(stream)
    progress.update("Create Endpoint", 5)
    progress.update("Create Endpoint", 65)
    progress.update("Smoke Test", 3700)
    progress.done()
    assert stream.getvalue() == (
        "\r\033[K  Create Endpoint  (5s)\r\033[K  Create Endpoint  (1m 05s)\r\033[K  Smoke Test  (1h 01m)\n"
    )


def test_progress_prints_a_line_per_state_elsewhere() -> None:
    stream = io.StringIO()
    progress = Progress(stream)
    for state, elapsed in [("Validate Artifact", 0), ("Validate Artifact", 2), ("Create Model", 4)]:
        progress.update(state, elapsed)
    progress.done()
    assert stream.getvalue() == "  [     0s] Validate Artifact\n  [     4s] Create Model\n"

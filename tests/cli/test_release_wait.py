"""``dropship release --wait``: find the execution of this very upload and follow it to its outcome.

moto does not run the stack's state machine, so Step Functions is a scripted fake here: the execution
"starts" by claiming the S3 object version the CLI really uploaded to moto, in the real releases table, as
Validate Artifact does, and walks the states it is given. SageMaker is a fake that reports the endpoint as
the state machine would find it. The end-to-end tests drive the real thing on the local stack.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from cli_support import BUCKET, Account

import dropship.cli.release as cli_release
import dropship.cli.stack as cli_stack
from dropship.alias import AliasRecord
from dropship.cli.errors import CliError
from dropship.cli.release import ExecutionWatcher, Progress, Snapshot, Upload
from dropship.history import ReleaseTable

KEY = "models/iris/1/model.tar.gz"
EXECUTION_PREFIX = "arn:aws:states:us-east-1:123456789012:execution:dropship-Release:"
ENDPOINT = "iris-1-0a1b2c3d"
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


class FakeExecution:
    def __init__(self, arn: str, states: list[str], status: str, error: str | None, cause: str | None):
        self.arn, self.states = arn, states
        self.final = {"status": status, "error": error, "cause": cause}
        self.entered = 0
        self.start_date = datetime.now(UTC) - timedelta(seconds=3)

    @property
    def state(self) -> str | None:
        return self.states[self.entered - 1] if self.entered else None

    def describe(self) -> dict[str, Any]:
        done = self.entered >= len(self.states)
        described: dict[str, Any] = {
            "executionArn": self.arn,
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
    """Step Functions holding one execution of the upload, once ``start`` has run (as EventBridge would)."""

    def __init__(
        self,
        account: Account,
        states: list[str],
        status: str = "SUCCEEDED",
        error: str | None = None,
        cause: str | None = None,
        on_end: Callable[[str], None] | None = None,
        starts: bool = True,
        starts_on_lookup: int = 2,
        honours_reverse_order: bool = True,
    ) -> None:
        self.account, self.states, self.status, self.error, self.cause = account, states, status, error, cause
        self.on_end, self.starts, self.starts_on_lookup = on_end, starts, starts_on_lookup
        self.honours_reverse_order = honours_reverse_order
        self.execution: FakeExecution | None = None
        self.described: list[str] = []
        self.history_requests: list[dict[str, Any]] = []

    def start(self) -> None:
        """What Validate Artifact and Announce Start write: the claim of the object version, the record."""
        version = self.account.s3.head_object(Bucket=BUCKET, Key=KEY)["VersionId"]
        self.execution = FakeExecution(EXECUTION_PREFIX + "ours", self.states, self.status, self.error, self.cause)
        assert self.account.table.claim_object(BUCKET, KEY, version, self.execution.arn)
        self.account.table.put_release(
            "iris",
            self.execution.start_date,
            self.execution.arn,
            version="1",
            outcome="RUNNING",
            endpoint_name=ENDPOINT,
        )

    def list_executions(self, **_: Any) -> dict[str, Any]:
        raise AssertionError("--wait must not list executions: that costs O(executions)")

    def describe_execution(self, executionArn: str) -> dict[str, Any]:
        assert self.execution is not None and executionArn == self.execution.arn
        self.described.append(executionArn)
        described = self.execution.describe()
        if described["status"] != "RUNNING" and self.on_end is not None:
            self.on_end(executionArn)
            self.on_end = None
        return described

    def get_execution_history(self, **kwargs: Any) -> dict[str, Any]:
        assert self.execution is not None and kwargs["executionArn"] == self.execution.arn
        self.history_requests.append(kwargs)
        events = self.execution.history()
        newest_first = kwargs.get("reverseOrder") and self.honours_reverse_order
        return {"events": list(reversed(events)) if newest_first else events}


class FakeSageMaker:
    """The release's endpoint as DescribeEndpoint reports it while the execution walks its states."""

    def __init__(self, sfn: FakeStepFunctions) -> None:
        self.sfn = sfn
        self.asked: list[str] = []

    def describe_endpoint(self, EndpointName: str) -> dict[str, Any]:
        self.asked.append(EndpointName)
        execution = self.sfn.execution
        state = execution.state if execution else None
        created = (
            state is not None
            and execution is not None
            and execution.states.index(state) >= HAPPY_PATH.index("Create Endpoint")
        )
        if EndpointName != ENDPOINT or not created:
            error = {"Error": {"Code": "ValidationException", "Message": f"Could not find endpoint {EndpointName}."}}
            raise ClientError(error, "DescribeEndpoint")
        in_service = execution.states.index(state) >= HAPPY_PATH.index("Endpoint InService?")  # type: ignore[union-attr]
        return {"EndpointName": EndpointName, "EndpointStatus": "InService" if in_service else "Creating"}


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "iris"
    folder.mkdir()
    (folder / "model.joblib").write_bytes(b"model")
    return folder


@pytest.fixture
def use_fake(monkeypatch: pytest.MonkeyPatch) -> Callable[[FakeStepFunctions], FakeStepFunctions]:
    """Route the CLI's Step Functions and SageMaker clients to fakes; poll without pausing."""
    monkeypatch.setattr(cli_release, "POLL_S", 0.0)
    original_client = cli_stack.Stack.client
    original_owner = ReleaseTable.claimant

    def install(fake: FakeStepFunctions) -> FakeStepFunctions:
        sagemaker = FakeSageMaker(fake)
        lookups = []

        def client(self: cli_stack.Stack, service: str, probe: bool = False) -> Any:
            fakes = {"stepfunctions": fake, "sagemaker": sagemaker}
            return fakes[service] if service in fakes else original_client(self, service, probe)

        def claimant(self: ReleaseTable, bucket: str, key: str, version: str) -> str | None:
            lookups.append(version)
            if fake.starts and len(lookups) == fake.starts_on_lookup:
                fake.start()
            return original_owner(self, bucket, key, version)

        monkeypatch.setattr(cli_stack.Stack, "client", client)
        monkeypatch.setattr(ReleaseTable, "claimant", claimant)
        return fake

    return install


def release_wait(cli: Any, model_dir: Path, *extra: str) -> Any:
    return cli("release", str(model_dir), "--model", "iris", "--version", "1", "--wait", *extra)


def shown_lines(out: str) -> list[str]:
    return [line.split("] ", 1)[1] for line in out.splitlines() if line.lstrip().startswith("[")]


@pytest.mark.parametrize("honours_reverse_order", [True, False])
def test_a_successful_release_shows_its_states_and_the_alias(
    aws: Account, cli: Any, model_dir: Path, use_fake: Any, honours_reverse_order: bool
) -> None:
    # Given the release of this upload will succeed and move the alias
    def update_alias(arn: str) -> None:
        record = AliasRecord(
            model="iris",
            version="1",
            endpoint_name=ENDPOINT,
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
    assert [line.split("  endpoint ")[0] for line in shown_lines(result.out)] == HAPPY_PATH
    assert f"Released iris version 1: alias live -> endpoint {ENDPOINT}" in result.out
    # And it followed only its own execution, asking for a small page of its history, newest first
    assert set(fake.described) == {EXECUTION_PREFIX + "ours"}
    assert {(r["reverseOrder"], r["maxResults"]) for r in fake.history_requests} == {(True, 20)}


def test_the_endpoint_status_is_shown_next_to_the_state(aws: Account, cli: Any, model_dir: Path, use_fake: Any) -> None:
    # Given a release whose endpoint is Creating until the state machine finds it InService
    use_fake(FakeStepFunctions(aws, HAPPY_PATH))

    # When it is followed
    result = release_wait(cli, model_dir)

    # Then the endpoint's own status appears once it exists, next to the state the release is in
    assert result.code == 0, result.err
    shown = shown_lines(result.out)
    assert shown[HAPPY_PATH.index("Create Model")] == "Create Model"
    assert shown[HAPPY_PATH.index("Create Endpoint")] == "Create Endpoint  endpoint Creating"
    assert shown[HAPPY_PATH.index("Wait For InService")] == "Wait For InService  endpoint Creating"
    assert shown[HAPPY_PATH.index("Endpoint InService?")] == "Endpoint InService?  endpoint InService"
    assert len(shown) == len(HAPPY_PATH)  # one line per state: no repeat when the endpoint status is gone


def test_a_failed_release_prints_its_error_and_cause(aws: Account, cli: Any, model_dir: Path, use_fake: Any) -> None:
    # Given the release of this upload fails its smoke test
    states = [*HAPPY_PATH[:12], "Clean Up", "Announce Failure", "Release Failed"]
    cause = f"endpoint {ENDPOINT}: sample 0: status 200, but\nthe body has no 'predictions'"
    use_fake(FakeStepFunctions(aws, states, status="FAILED", error="SmokeTestFailed", cause=cause))

    # When it is released with --wait
    result = release_wait(cli, model_dir)

    # Then it exits 1 with the contract code and the cause on one line of stderr
    assert result.code == 1
    assert result.err.strip().splitlines() == [
        f"Release Failed: SmokeTestFailed: endpoint {ENDPOINT}: sample 0: status 200, but the body has no 'predictions'"
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
    # Given no execution ever claims the upload
    monkeypatch.setattr(cli_release, "FIND_TIMEOUT_S", 0.0)
    use_fake(FakeStepFunctions(aws, HAPPY_PATH, starts=False))

    # When it is released with --wait, Then it gives up with a one-line reason
    result = release_wait(cli, model_dir)
    result.assert_error("no release execution started for s3://", "models/iris/1/model.tar.gz")


def test_waiting_is_bounded_by_the_timeout(
    aws: Account, cli: Any, model_dir: Path, use_fake: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a release that takes many polls, and a clock that advances 10 minutes per look
    use_fake(FakeStepFunctions(aws, HAPPY_PATH, starts_on_lookup=1))
    ticks = iter(range(0, 100_000, 600))
    original_init = ExecutionWatcher.__init__

    def with_fake_clock(self: ExecutionWatcher, sfn: Any, table: Any, sagemaker: Any, **_: Any) -> None:
        original_init(self, sfn, table, sagemaker, clock=lambda: float(next(ticks)), sleep=lambda _: None, poll_s=0)

    monkeypatch.setattr(ExecutionWatcher, "__init__", with_fake_clock)

    # When --wait is given a timeout shorter than the release
    result = release_wait(cli, model_dir, "--timeout", "1000")

    # Then it gives up, saying the release is still running
    result.assert_error("gave up waiting after 1000 s", "still running", EXECUTION_PREFIX + "ours")


def test_the_watcher_finds_the_execution_that_claimed_exactly_this_object_version(aws: Account) -> None:
    # Given claims of another bucket, another key and another version of the same key, and of this one
    for bucket, key, version, name in [
        ("elsewhere", KEY, "v2", "a"),
        (BUCKET, "models/iris/2/model.tar.gz", "v2", "b"),
        (BUCKET, KEY, "v1", "c"),
        (BUCKET, KEY, "v2", "d"),
    ]:
        aws.table.claim_object(bucket, key, version, EXECUTION_PREFIX + name)
    watcher = ExecutionWatcher(None, aws.table, None, sleep=lambda _: None)

    # When the execution of version v2 of the key is looked for, Then only "d" is it
    assert watcher.find(Upload(BUCKET, KEY, "v2"), timeout_s=0) == EXECUTION_PREFIX + "d"
    with pytest.raises(CliError, match="no release execution started"):
        watcher.find(Upload(BUCKET, KEY, "v3"), timeout_s=0)


def test_an_upload_without_a_version_id_cannot_be_followed(aws: Account) -> None:
    watcher = ExecutionWatcher(None, aws.table, None, sleep=lambda _: None)
    with pytest.raises(CliError, match=r"has no VersionId .*versioning"):
        watcher.find(Upload(BUCKET, KEY, None), timeout_s=0)


def test_progress_updates_one_line_on_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    progress = Progress(stream)
    progress.update(Snapshot("Create Endpoint", 5))
    progress.update(Snapshot("Wait For InService", 65, "Creating"))
    progress.update(Snapshot("Smoke Test", 3700, "InService"))
    progress.done()
    assert stream.getvalue() == (
        "\r\033[K  Create Endpoint  (5s)"
        "\r\033[K  Wait For InService  (1m 05s)  endpoint Creating"
        "\r\033[K  Smoke Test  (1h 01m)  endpoint InService\n"
    )


def test_progress_prints_a_line_per_state_elsewhere() -> None:
    stream = io.StringIO()
    progress = Progress(stream)
    for snapshot in [
        Snapshot("Validate Artifact", 0),
        Snapshot("Validate Artifact", 2),
        Snapshot("Wait For InService", 4, "Creating"),
        Snapshot("Wait For InService", 60, "Creating"),
        Snapshot("Wait For InService", 95, "InService"),
    ]:
        progress.update(snapshot)
    progress.done()
    assert stream.getvalue() == (
        "  [     0s] Validate Artifact\n"
        "  [     4s] Wait For InService  endpoint Creating\n"
        "  [ 1m 35s] Wait For InService  endpoint InService\n"
    )

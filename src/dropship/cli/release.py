"""``dropship release``: check locally, upload manifest then tarball to the drop key, optionally follow it."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from botocore.exceptions import ClientError

from dropship.cli.errors import CliError, one_line
from dropship.cli.pack import artifact
from dropship.cli.stack import Stack
from dropship.manifest import Manifest, parse_manifest
from dropship.names import DropKey, check_model_name, check_version

MULTIPART_THRESHOLD = 64 * 1024 * 1024
PART_SIZE = 64 * 1024 * 1024
FIND_TIMEOUT_S = 60.0
POLL_S = 1.0
# Executions started this long before the upload began (by our clock) are still considered, for clock skew.
CLOCK_SKEW_S = 300
DUPLICATE_STATE = "Ignore Duplicate Event"
MAX_HISTORY_PAGES = 50
_STATUS_ERRORS = {"TIMED_OUT": "ExecutionTimedOut", "ABORTED": "ExecutionAborted"}


@dataclass(frozen=True)
class Upload:
    bucket: str
    key: str
    version_id: str | None
    started_at: datetime

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True)
class Outcome:
    status: str  # SUCCEEDED, FAILED, TIMED_OUT, ABORTED
    last_state: str | None
    error: str | None = None
    cause: str | None = None


def _remove_stale_manifest(s3: Any, bucket: str, key: str) -> bool:
    """Without --manifest the release uses the stack's defaults, not a manifest left by an earlier upload."""
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
            return False
        raise
    s3.delete_object(Bucket=bucket, Key=key)
    return True


def run(args: argparse.Namespace, stack_factory: Callable[[], Stack]) -> int:
    drop = DropKey(check_model_name(args.model), check_version(args.version))
    manifest_bytes, manifest = _read_manifest(args.manifest)
    with artifact(Path(args.path)) as tarball:
        stack = stack_factory()
        bucket = stack.outputs.model_bucket
        s3 = stack.client("s3")
        if manifest_bytes is not None:
            response = s3.put_object(
                Bucket=bucket, Key=drop.manifest_key, Body=manifest_bytes, ContentType="application/json"
            )
            print(f"Uploaded manifest s3://{bucket}/{drop.manifest_key}")
        elif _remove_stale_manifest(s3, bucket, drop.manifest_key):
            print(f"Removed the release.json an earlier upload left at s3://{bucket}/{drop.manifest_key}")
        started = datetime.now(UTC)
        response = upload_file(s3, tarball, bucket, drop.artifact_key)
        upload = Upload(bucket, drop.artifact_key, response.get("VersionId"), started)
    print(f"Uploaded {upload.uri} (VersionId {upload.version_id or 'none: the bucket is not versioned'})")
    if not args.wait:
        print(f"The release has started; follow it with `dropship history {drop.model}`.")
        return 0
    sfn = stack.client("stepfunctions")
    watcher = ExecutionWatcher(sfn, stack.outputs.state_machine_arn)
    arn = watcher.find(upload, FIND_TIMEOUT_S)
    print(f"Execution {arn}")
    progress = Progress(sys.stdout)
    outcome = watcher.follow(arn, args.timeout, progress.update)
    progress.done()
    return report_outcome(stack, drop, manifest, arn, outcome)


def _read_manifest(path: str | None) -> tuple[bytes | None, Manifest]:
    if path is None:
        return None, parse_manifest(None)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read manifest {path}: {exc.strerror or exc}") from exc
    return raw, parse_manifest(raw)


def upload_file(s3: Any, path: Path, bucket: str, key: str) -> dict[str, Any]:
    """Upload the tarball; the response carries the object's VersionId (multipart for big files)."""
    size = path.stat().st_size
    extra = {"ContentType": "application/gzip"}
    if size <= MULTIPART_THRESHOLD:
        with path.open("rb") as handle:
            return dict(s3.put_object(Bucket=bucket, Key=key, Body=handle, **extra))
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, **extra)["UploadId"]
    try:
        parts = []
        with path.open("rb") as handle:
            number = 1
            while chunk := handle.read(PART_SIZE):
                part = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=chunk)
                parts.append({"PartNumber": number, "ETag": part["ETag"]})
                print(f"  uploaded {min(number * PART_SIZE, size) / size:.0%}", file=sys.stderr)
                number += 1
        return dict(
            s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts})
        )
    except BaseException:
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        raise


class ExecutionWatcher:
    """Finds the execution an upload started and follows it to the end."""

    def __init__(
        self,
        sfn: Any,
        state_machine_arn: str,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        poll_s: float | None = None,
    ) -> None:
        self.sfn = sfn
        self.state_machine_arn = state_machine_arn
        self.clock = clock
        self.sleep = sleep
        self.poll_s = POLL_S if poll_s is None else poll_s
        self._not_ours: set[str] = set()

    def find(self, upload: Upload, timeout_s: float) -> str:
        """The ARN of the execution whose input is the S3 event of exactly this upload."""
        deadline = self.clock() + timeout_s
        while True:
            arn = self._find_once(upload)
            if arn is not None:
                return arn
            if self.clock() >= deadline:
                raise CliError(
                    f"no release execution started for {upload.uri} within {timeout_s:.0f} s: is EventBridge "
                    f"enabled on the bucket? (the upload itself succeeded; see `dropship history`)"
                )
            self.sleep(self.poll_s)

    def _find_once(self, upload: Upload) -> str | None:
        not_before = upload.started_at - timedelta(seconds=CLOCK_SKEW_S)
        kwargs: dict[str, Any] = {"stateMachineArn": self.state_machine_arn, "maxResults": 100}
        while True:
            page = self.sfn.list_executions(**kwargs)
            for execution in page.get("executions", []):
                if execution["startDate"] < not_before:
                    return None  # newest first: everything after this is older
                arn = execution["executionArn"]
                if arn not in self._not_ours and self._is_for(arn, upload):
                    return str(arn)
                self._not_ours.add(arn)
            if not page.get("nextToken"):
                return None
            kwargs["nextToken"] = page["nextToken"]

    def _is_for(self, arn: str, upload: Upload) -> bool:
        try:
            event = json.loads(self.sfn.describe_execution(executionArn=arn).get("input") or "{}")
        except ValueError:
            return False
        detail = event.get("detail") if isinstance(event, dict) else None
        if not isinstance(detail, dict):
            return False
        obj = detail.get("object") or {}
        if (detail.get("bucket") or {}).get("name", upload.bucket) != upload.bucket or obj.get("key") != upload.key:
            return False
        if upload.version_id is None:
            return True
        return bool(obj.get("version-id") == upload.version_id)

    def follow(self, arn: str, timeout_s: float, on_progress: Callable[[str, float], None]) -> Outcome:
        """Poll until the execution ends, reporting (current state, seconds since it started)."""
        deadline = self.clock() + timeout_s
        while True:
            execution = self.sfn.describe_execution(executionArn=arn)
            state = self.current_state(arn)
            started = execution.get("startDate")
            elapsed = (datetime.now(UTC) - started).total_seconds() if isinstance(started, datetime) else 0.0
            on_progress(state or "Starting", max(0.0, elapsed))
            status = execution["status"]
            if status != "RUNNING":
                return Outcome(status, state, execution.get("error"), execution.get("cause"))
            if self.clock() >= deadline:
                raise CliError(
                    f"gave up waiting after {timeout_s:.0f} s; the release is still running "
                    f"(at {state or 'its first state'}): {arn}"
                )
            self.sleep(self.poll_s)

    def current_state(self, arn: str) -> str | None:
        """The name of the state entered last (by event id), reading the history newest first."""
        entered = self._latest(arn, lambda event: event.get("type", "").endswith("StateEntered"))
        return str(entered["stateEnteredEventDetails"]["name"]) if entered else None

    def _latest(self, arn: str, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
        # Asks for newest first, but does not rely on it (some emulators ignore reverseOrder).
        kwargs: dict[str, Any] = {"executionArn": arn, "reverseOrder": True, "maxResults": 100}
        best: dict[str, Any] | None = None
        for _ in range(MAX_HISTORY_PAGES):
            page = self.sfn.get_execution_history(**kwargs)
            events = page.get("events", [])
            for event in events:
                if wanted(event) and (best is None or event.get("id", 0) > best.get("id", 0)):
                    best = event
            newest_first = len(events) > 1 and events[0].get("id", 0) > events[-1].get("id", 0)
            if (newest_first and best is not None) or not page.get("nextToken"):
                return best
            kwargs["nextToken"] = page["nextToken"]
        return best


class Progress:
    """One line updated in place on a terminal; one line per state change otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.last: str | None = None

    def update(self, state: str, elapsed_s: float) -> None:
        if self.tty:
            self.stream.write(f"\r\033[K  {state}  ({format_duration(elapsed_s)})")
            self.stream.flush()
        elif state != self.last:
            self.stream.write(f"  [{format_duration(elapsed_s):>7}] {state}\n")
            self.stream.flush()
        self.last = state

    def done(self) -> None:
        if self.tty and self.last is not None:
            self.stream.write("\n")
            self.stream.flush()


def format_duration(seconds: float) -> str:
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, rest = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m {rest:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def report_outcome(stack: Stack, drop: DropKey, manifest: Manifest, arn: str, outcome: Outcome) -> int:
    if outcome.status == "SUCCEEDED" and outcome.last_state == DUPLICATE_STATE:
        print(
            f"Nothing to do: another execution already handles this upload of {drop.model} version "
            f"{drop.version} (duplicate S3 event)."
        )
        return 0
    if outcome.status == "SUCCEEDED":
        record = stack.aliases().get(drop.model, manifest.alias)
        if record is None:
            print(f"Released {drop.model} version {drop.version}, but alias {manifest.alias!r} is not set (?)")
        elif record.execution_arn != arn:
            print(
                f"Released {drop.model} version {drop.version}; alias {manifest.alias} has since moved to "
                f"version {record.version} (endpoint {record.endpoint_name})"
            )
        else:
            print(
                f"Released {drop.model} version {record.version}: alias {manifest.alias} -> "
                f"endpoint {record.endpoint_name}"
            )
        return 0
    error = outcome.error or _STATUS_ERRORS.get(outcome.status, f"Execution{outcome.status.title()}")
    cause = outcome.cause or f"the execution ended {outcome.status}; see its history: {arn}"
    print(f"Release Failed: {one_line(error)}: {one_line(cause)}", file=sys.stderr)
    return 1

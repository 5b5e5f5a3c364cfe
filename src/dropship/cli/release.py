"""``dropship release``: check locally, upload manifest then tarball to the drop key, optionally follow it.

The tarball carries the manifest's S3 VersionId in its metadata, so the release uses the manifest uploaded
with it even if another is uploaded meanwhile. ``--wait`` finds its execution by the claim Validate
Artifact writes for the object version, then polls that one execution and the endpoint it creates.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from botocore.exceptions import ClientError

from dropship.cli.errors import CliError, one_line
from dropship.cli.pack import (
    Folder,
    artifact,
    check_folder_limits,
    check_tarball_limit,
    format_size,
    read_source,
)
from dropship.cli.stack import Stack
from dropship.history import ReleaseRecord, ReleaseTable
from dropship.manifest import Manifest, parse_manifest
from dropship.names import MANIFEST_PIN, NO_MANIFEST, DropKey, check_model_name, check_version

MULTIPART_THRESHOLD = 64 * 1024 * 1024
PART_SIZE = 64 * 1024 * 1024
# S3 user metadata on the tarball: the VersionId of the release.json uploaded just before it ("none": no
# manifest), so the release uses exactly that manifest whatever is uploaded after (CONTRACT.md section 1).
FIND_TIMEOUT_S = 120.0
POLL_S = 2.0
HISTORY_PAGE = 20
MAX_HISTORY_PAGES = 50
DUPLICATE_STATE = "Ignore Duplicate Event"
WATCH_STATE = "Watch"
_STATUS_ERRORS = {"TIMED_OUT": "ExecutionTimedOut", "ABORTED": "ExecutionAborted"}


@dataclass(frozen=True)
class Upload:
    bucket: str
    key: str
    version_id: str | None

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
    """Without a manifest the release uses the stack's defaults, not a manifest left by an earlier upload."""
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
    source = read_source(Path(args.path))
    manifest_path = _manifest_path(args.manifest, source)
    manifest_bytes, manifest = _read_manifest(manifest_path)
    stack = stack_factory()
    limits = stack.artifact_limits()
    if isinstance(source, Folder):
        check_folder_limits(source, limits)
    with artifact(source) as tarball:
        check_tarball_limit(tarball, limits)
        print(_describe(source, tarball, manifest_path))
        bucket = stack.outputs.model_bucket
        s3 = stack.client("s3")
        if manifest_bytes is not None:
            response = s3.put_object(
                Bucket=bucket, Key=drop.manifest_key, Body=manifest_bytes, ContentType="application/json"
            )
            # An unversioned bucket keeps one version of each key, whose id is "null".
            manifest_version = response.get("VersionId") or "null"
            print(f"Uploaded manifest s3://{bucket}/{drop.manifest_key} (VersionId {manifest_version})")
        else:
            manifest_version = NO_MANIFEST
            if _remove_stale_manifest(s3, bucket, drop.manifest_key):
                print(f"Removed the release.json an earlier upload left at s3://{bucket}/{drop.manifest_key}")
        response = upload_file(s3, tarball, bucket, drop.artifact_key, {MANIFEST_PIN: manifest_version})
        upload = Upload(bucket, drop.artifact_key, response.get("VersionId"))
    print(f"Uploaded {upload.uri} (VersionId {upload.version_id or 'none: the bucket is not versioned'})")
    if not args.wait:
        print(f"The release has started; follow it with `dropship history {drop.model}`.")
        return 0
    watcher = ExecutionWatcher(stack.client("stepfunctions"), stack.table(), stack.client("sagemaker"))
    arn = watcher.find(upload, FIND_TIMEOUT_S)
    print(f"Execution {arn}")
    progress = Progress(sys.stdout)
    outcome = watcher.follow(arn, drop.model, args.timeout, progress.update)
    progress.done()
    return report_outcome(stack, drop, manifest, arn, outcome)


def _manifest_path(option: str | None, source: Folder | Path) -> Path | None:
    """``--manifest``, else the folder's own release.json, else none."""
    if option is not None:
        return Path(option)
    return source.manifest if isinstance(source, Folder) else None


def _read_manifest(path: Path | None) -> tuple[bytes | None, Manifest]:
    if path is None:
        return None, parse_manifest(None)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read manifest {path}: {exc.strerror or exc}") from exc
    return raw, parse_manifest(raw)


def _describe(source: Folder | Path, tarball: Path, manifest: Path | None) -> str:
    """What is about to be uploaded, in one or two lines."""
    size = format_size(tarball.stat().st_size)
    if isinstance(source, Folder):
        files = f"{source.files} file{'s' if source.files != 1 else ''}"
        text = f"Packed {files} ({format_size(source.file_bytes)}) from {source.root} into model.tar.gz ({size})"
    else:
        text = f"Uploading {source} as it is ({size})"
    if manifest is None:
        return text + "\nNo manifest: the stack's defaults apply"
    if isinstance(source, Folder) and source.manifest is not None:
        if manifest == source.manifest:
            return text + f"\nManifest: {manifest} (the folder's release.json; not packed)"
        return text + f"\nManifest: {manifest} (the folder's release.json is not used, and not packed)"
    return text + f"\nManifest: {manifest}"


def upload_file(s3: Any, path: Path, bucket: str, key: str, metadata: dict[str, str]) -> dict[str, Any]:
    """Upload the tarball; the response carries the object's VersionId (multipart for big files)."""
    size = path.stat().st_size
    extra = {"ContentType": "application/gzip", "Metadata": metadata}
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


@dataclass(frozen=True)
class Snapshot:
    """Where a release is: its current state, for how long it has run, and its endpoint's own status."""

    state: str
    elapsed_s: float
    endpoint_status: str | None = None
    watch: str | None = None  # what the watch has seen so far, while the release is watched


class ExecutionWatcher:
    """Finds the execution an upload started (by the claim Validate Artifact writes) and follows it.

    Each poll costs a fixed number of calls, however many executions the state machine has had.
    """

    def __init__(
        self,
        sfn: Any,
        table: ReleaseTable,
        sagemaker: Any,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        poll_s: float | None = None,
    ) -> None:
        self.sfn = sfn
        self.table = table
        self.sagemaker = sagemaker
        self.clock = clock
        self.sleep = sleep
        self.poll_s = POLL_S if poll_s is None else poll_s
        self._record: ReleaseRecord | None = None

    def find(self, upload: Upload, timeout_s: float) -> str:
        """The ARN of the execution that claimed exactly this object version."""
        if upload.version_id is None:
            raise CliError(
                f"{upload.uri} has no VersionId (is versioning enabled on the bucket, as the template sets?), "
                "so its release cannot be followed; see `dropship history`"
            )
        deadline = self.clock() + timeout_s
        while True:
            arn = self.table.claimant(upload.bucket, upload.key, upload.version_id)
            if arn is not None:
                return arn
            if self.clock() >= deadline:
                raise CliError(
                    f"no release execution started for {upload.uri} within {timeout_s:.0f} s: is EventBridge "
                    f"enabled on the bucket? (the upload itself succeeded; see `dropship history`)"
                )
            self.sleep(self.poll_s)

    def follow(self, arn: str, model: str, timeout_s: float, on_progress: Callable[[Snapshot], None]) -> Outcome:
        """Poll until the execution ends, reporting each snapshot."""
        deadline = self.clock() + timeout_s
        while True:
            execution = self.sfn.describe_execution(executionArn=arn)
            state = self.current_state(arn)
            started = execution.get("startDate")
            elapsed = (datetime.now(UTC) - started).total_seconds() if isinstance(started, datetime) else 0.0
            status = execution["status"]
            endpoint = self.endpoint_status(model, arn) if status == "RUNNING" else None
            watch = self.watch_figures(model, arn) if status == "RUNNING" and state == WATCH_STATE else None
            on_progress(Snapshot(state or "Starting", max(0.0, elapsed), endpoint, watch))
            if status != "RUNNING":
                return Outcome(status, state, execution.get("error"), execution.get("cause"))
            if self.clock() >= deadline:
                raise CliError(
                    f"gave up waiting after {timeout_s:.0f} s; the release is still running "
                    f"(at {state or 'its first state'}): {arn}"
                )
            self.sleep(self.poll_s)

    def _release_record(self, model: str, arn: str, fresh: bool = False) -> ReleaseRecord | None:
        """The release's history record: found by a query once, then read by its key."""
        if self._record is None:
            self._record = next((r for r in self.table.records(model) if r.execution_arn == arn), None)
        elif fresh:
            self._record = self.table.release(model, self._record.started, arn) or self._record
        return self._record

    def endpoint_status(self, model: str, arn: str) -> str | None:
        """The release's endpoint as SageMaker reports it (Creating, InService, ...); None before it exists."""
        record = self._release_record(model, arn)
        if record is None or record.endpoint_name is None:
            self._record = None  # not recorded yet: look again next time
            return None
        try:
            described = self.sagemaker.describe_endpoint(EndpointName=record.endpoint_name)
        except ClientError:  # not created yet, or already cleaned up: nothing to show
            return None
        return str(described.get("EndpointStatus")) if described.get("EndpointStatus") else None

    def watch_figures(self, model: str, arn: str) -> str | None:
        """While the release is watched: until when, and what the watch has seen so far."""
        record = self._release_record(model, arn, fresh=True)
        if record is None or record.watch is None:
            return None
        return f"watching until {record.watch.until[11:19]} UTC: {record.watch.describe()}"

    def current_state(self, arn: str) -> str | None:
        """The name of the state entered last (by event id), reading the history newest first."""
        entered = self._latest(arn, lambda event: event.get("type", "").endswith("StateEntered"))
        return str(entered["stateEnteredEventDetails"]["name"]) if entered else None

    def _latest(self, arn: str, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
        # Asks for a small page, newest first; does not rely on it (some emulators ignore reverseOrder).
        kwargs: dict[str, Any] = {"executionArn": arn, "reverseOrder": True, "maxResults": HISTORY_PAGE}
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
    """One line updated in place on a terminal; one line per change of state (or endpoint status) otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.last: tuple[str, str | None, str | None] | None = None

    def update(self, snapshot: Snapshot) -> None:
        endpoint = f"  endpoint {snapshot.endpoint_status}" if snapshot.endpoint_status else ""
        endpoint += f"  {snapshot.watch}" if snapshot.watch else ""
        if self.tty:
            self.stream.write(f"\r\033[K  {snapshot.state}  ({format_duration(snapshot.elapsed_s)}){endpoint}")
            self.stream.flush()
        elif self._changed(snapshot):
            self.stream.write(f"  [{format_duration(snapshot.elapsed_s):>7}] {snapshot.state}{endpoint}\n")
            self.stream.flush()
        self.last = (snapshot.state, snapshot.endpoint_status, snapshot.watch)

    def _changed(self, snapshot: Snapshot) -> bool:
        """A new state, or news of the endpoint (not its status going unknown, as when the release ends)."""
        if self.last is None or snapshot.state != self.last[0]:
            return True
        if snapshot.watch is not None and snapshot.watch != self.last[2]:
            return True
        return snapshot.endpoint_status is not None and snapshot.endpoint_status != self.last[1]

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

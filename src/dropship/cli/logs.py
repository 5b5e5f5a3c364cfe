"""``dropship logs``: the container log of a release's endpoint, or with ``--execution`` its task logs.

Against AWS they come from CloudWatch Logs: the endpoint's group ``/aws/sagemaker/Endpoints/<endpoint>``
(every stream, merged by time), and each task function's group ``/aws/lambda/<function>`` filtered by the
execution ARN, which Powertools puts on every line as ``correlation_id``. Against the local stack they come
from the files it writes under its state dir (``$DROPSHIP_HOME``, else ``~/.dropship/local``):
``logs/endpoints/<endpoint>.log`` and ``logs/lambda/<function>.log``, where a task's lines also keep the
START and END lines of the invocations that logged the execution ARN.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from botocore.exceptions import ClientError

from dropship.aws import error_code
from dropship.cli.errors import CliError
from dropship.cli.report import unknown_model
from dropship.cli.stack import Stack
from dropship.local import paths
from dropship.names import check_model_name, check_version

AWS_FOLLOW_POLL_S = 5.0
LOCAL_FOLLOW_POLL_S = 1.0
# A release's task logs start a little before its record's started_at (clocks differ by a little).
EXECUTION_LEAD_S = 60
_DURATION = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
# A timestamp near the start of a plain-text line: 2026-11-25T12:00:00.123Z, [2026-11-25 12:00:00 +0000], ...
_LINE_TIME = re.compile(r"^\W{0,2}(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d{1,6})?)\s*(Z|[+-]\d{2}:?\d{2})?")
_REQUEST_START = "START RequestId: "
_REQUEST_END = "END RequestId: "

# Where the local stack writes its logs (the layout `dropship local` keeps under its state dir).


def endpoint_log_file(endpoint_name: str) -> Path:
    return paths.endpoint_log(endpoint_name)


def lambda_log_file(function_name: str) -> Path:
    return paths.lambda_log(function_name)


@dataclass(frozen=True)
class ReleaseRef:
    """The release whose logs are read."""

    model: str
    version: str
    endpoint_name: str | None
    execution_arn: str
    started_at: datetime | None


@dataclass(frozen=True)
class Line:
    timestamp_ms: int | None
    source: str
    message: str


class LogSource(Protocol):
    """One kind of log of a release; ``read`` returns the lines written since the last read, oldest first."""

    @property
    def where(self) -> str: ...

    def read(self) -> list[Line]: ...


def run(args: argparse.Namespace, stack_factory: Callable[[], Stack]) -> int:
    model = check_model_name(args.model)
    version = check_version(args.version) if args.version is not None else None
    since_ms = parse_since(args.since) if args.since is not None else None
    stack = stack_factory()
    release = find_release(stack, model, version, args.alias)
    if args.execution:
        source: LogSource = execution_logs(stack, release, since_ms)
        what = f"task logs of {model} version {release.version} (execution {release.execution_arn})"
        missing = f"no task log of {model} version {release.version} yet ({source.where})"
    else:
        if release.endpoint_name is None:
            raise CliError(
                f"the newest release of {model} version {release.version} never got an endpoint: "
                f"read its task logs with `dropship logs {model} --version {release.version} --execution`"
            )
        source = endpoint_logs(stack, release.endpoint_name, since_ms)
        what = f"endpoint {release.endpoint_name} ({model} version {release.version})"
        missing = (
            f"no log yet for endpoint {release.endpoint_name} ({source.where}): its container has not written one (yet)"
        )
    lines = source.read()
    if not lines and not args.follow:
        raise CliError(missing)
    print(f"==> {what}: {source.where}", file=sys.stderr, flush=True)
    _print(lines, show_time=not stack.target.is_local)
    if not args.follow:
        return 0
    poll_s = LOCAL_FOLLOW_POLL_S if stack.target.is_local else AWS_FOLLOW_POLL_S
    try:
        while True:
            _sleep(poll_s)
            _print(source.read(), show_time=not stack.target.is_local)
    except KeyboardInterrupt:  # the way to stop following
        return 0


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


def _print(lines: Iterable[Line], show_time: bool) -> None:
    for line in lines:
        prefix = f"{format_ms(line.timestamp_ms)} " if show_time else ""
        label = f"{line.source} " if line.source else ""
        sys.stdout.write(f"{prefix}{label}{line.message}\n")
    sys.stdout.flush()


def format_ms(timestamp_ms: int | None) -> str:
    if timestamp_ms is None:
        return "-"
    moment = datetime.fromtimestamp(timestamp_ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_since(text: str, now: datetime | None = None) -> int:
    """``--since``: ``30s``, ``10m``, ``2h``, ``1d``, ``1w`` ago, or an ISO 8601 time (UTC unless it says)."""
    value = text.strip()
    duration = _DURATION.match(value)
    if duration:
        amount, unit = duration.groups()
        moment = (now or datetime.now(UTC)) - timedelta(**{_UNITS[unit]: int(amount)})
    else:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise CliError(
                f"--since {text!r} is neither a duration (30s, 10m, 2h, 1d) nor a time (2026-11-25T12:00:00Z)"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


# -- which release ---------------------------------------------------------------------------------


def find_release(stack: Stack, model: str, version: str | None, alias: str) -> ReleaseRef:
    """The release an alias points at, or a version's newest release attempt (from the history table)."""
    records = stack.table().records(model)  # newest first
    if version is None:
        aliases = stack.aliases()
        live = aliases.get(model, alias)
        if live is None:
            if not records and not aliases.all_for(model):
                raise unknown_model(stack, model)
            raise CliError(f"{model} has no alias {alias!r}: name a release with --version")
        served = next((r for r in records if r.execution_arn == live.execution_arn), None)
        started = served.started if served else None
        return ReleaseRef(model, live.version, live.endpoint_name, live.execution_arn, started)
    record = next((r for r in records if r.version == version), None)
    if record is None:
        if not records:
            raise unknown_model(stack, model)
        versions = ", ".join(dict.fromkeys(r.version for r in records))
        raise CliError(f"{model} has no release of version {version} (released versions: {versions})")
    return ReleaseRef(model, version, record.endpoint_name, record.execution_arn, record.started)


def endpoint_logs(stack: Stack, endpoint_name: str, since_ms: int | None) -> LogSource:
    if stack.target.is_local:
        return LocalFiles({"": endpoint_log_file(endpoint_name)}, since_ms)
    group = f"/aws/sagemaker/Endpoints/{endpoint_name}"
    return CloudWatchGroups(stack.client("logs"), {group: None}, since_ms)


def execution_logs(stack: Stack, release: ReleaseRef, since_ms: int | None) -> LogSource:
    functions = stack.functions()
    if stack.target.is_local:
        files = {label: lambda_log_file(name) for label, name in sorted(functions.items())}
        return LocalFiles(files, since_ms, execution_arn=release.execution_arn)
    if since_ms is None and release.started_at is not None:  # no need to search the groups' older events
        since_ms = int((release.started_at.timestamp() - EXECUTION_LEAD_S) * 1000)
    groups: dict[str, str | None] = {f"/aws/lambda/{name}": label for label, name in sorted(functions.items())}
    return CloudWatchGroups(stack.client("logs"), groups, since_ms, pattern=f'"{release.execution_arn}"')


# -- CloudWatch Logs -------------------------------------------------------------------------------


@dataclass
class CloudWatchGroups:
    """Log groups read with FilterLogEvents, merged by time; each group's label replaces its stream name."""

    client: Any
    groups: dict[str, str | None]
    since_ms: int | None
    pattern: str | None = None
    _seen: set[str] = field(default_factory=set)

    @property
    def where(self) -> str:
        first = next(iter(self.groups), "(none)")
        if len(self.groups) == 1:
            return f"CloudWatch Logs group {first}"
        return f"CloudWatch Logs groups {first.rsplit('/', 1)[0]}/<function> ({len(self.groups)} functions)"

    def read(self) -> list[Line]:
        events: list[dict[str, Any]] = []
        for group in self.groups:
            events.extend(self._events(group))
        events.sort(key=lambda event: (event.get("timestamp", 0), event.get("ingestionTime", 0)))
        lines = []
        for event in events:
            if event["eventId"] in self._seen:
                continue
            self._seen.add(event["eventId"])
            label = self.groups[event["_group"]] or event.get("logStreamName", "")
            lines.append(Line(event.get("timestamp"), label, str(event.get("message", "")).rstrip("\n")))
        if lines:
            # Next time, from the newest line on; the events seen at that very millisecond are skipped by id.
            self.since_ms = max(line.timestamp_ms or 0 for line in lines)
        return lines

    def _events(self, group: str) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {"logGroupName": group}
        if self.since_ms is not None:
            kwargs["startTime"] = self.since_ms
        if self.pattern is not None:
            kwargs["filterPattern"] = self.pattern
        try:
            for page in self.client.get_paginator("filter_log_events").paginate(**kwargs):
                for event in page.get("events", []):
                    yield {**event, "_group": group}
        except ClientError as exc:
            if error_code(exc) != "ResourceNotFoundException":  # no group: nothing logged yet
                raise


# -- the local stack's files -----------------------------------------------------------------------


@dataclass
class _FileState:
    offset: int = 0
    partial: bytes = b""
    timestamp_ms: int | None = None
    # Within an invocation (START ... END): its lines so far, until one shows it is the execution's.
    block: list[str] | None = None
    matched: bool = False


@dataclass
class LocalFiles:
    """Log files read from where the last read stopped; a task's lines filtered by the execution ARN."""

    files: dict[str, Path]
    since_ms: int | None
    execution_arn: str | None = None
    _state: dict[str, _FileState] = field(default_factory=dict)

    @property
    def where(self) -> str:
        paths = list(self.files.values())
        if len(paths) == 1:
            return str(paths[0])
        return f"{paths[0].parent if paths else '(none)'}/<function>.log ({len(paths)} functions)"

    def read(self) -> list[Line]:
        lines: list[Line] = []
        for label, path in self.files.items():
            lines.extend(self._read(label, path))
        if len(self.files) > 1:  # merge the files by time; lines keep their order within a file
            lines.sort(key=lambda line: line.timestamp_ms or 0)
        return lines

    def _read(self, label: str, path: Path) -> list[Line]:
        state = self._state.setdefault(label, _FileState())
        try:
            with path.open("rb") as handle:
                handle.seek(state.offset)
                data = state.partial + handle.read()
                state.offset = handle.tell()
        except FileNotFoundError:
            return []
        if b"\n" not in data:  # a line still being written
            state.partial = data
            return []
        complete, _, state.partial = data.rpartition(b"\n")
        lines = []
        for raw in complete.decode("utf-8", "replace").split("\n"):
            stamp = line_time(raw)
            if stamp is not None:
                state.timestamp_ms = stamp
            for text, timestamp in self._filter(state, raw):
                if self.since_ms is None or (timestamp is not None and timestamp >= self.since_ms):
                    lines.append(Line(timestamp, label, text))
        return lines

    def _filter(self, state: _FileState, raw: str) -> list[tuple[str, int | None]]:
        """The lines to show for ``raw``: all of them, or for a task only its invocations of this execution."""
        now = state.timestamp_ms
        if self.execution_arn is None:
            return [(raw, now)]
        if raw.startswith(_REQUEST_START):
            state.block, state.matched = [raw], False
            return []
        shown: list[tuple[str, int | None]] = []
        if state.block is None:  # outside any invocation (the worker starting up)
            shown = [(raw, now)] if self.execution_arn in raw else []
        elif state.matched:
            shown = [(raw, now)]
        else:
            state.block.append(raw)
            if self.execution_arn in raw:
                state.matched = True
                shown = [(text, now) for text in state.block]
                state.block = []
        if raw.startswith(_REQUEST_END):
            state.block, state.matched = None, False
        return shown


def line_time(line: str) -> int | None:
    """The time a log line carries: a JSON line's ``timestamp``/``time``, or a timestamp it starts with."""
    text = line.strip()
    if text.startswith("{"):
        try:
            entry = json.loads(text)
        except ValueError:
            entry = None
        if isinstance(entry, dict):
            value = entry.get("timestamp", entry.get("time"))
            text = value if isinstance(value, str) else ""
    found = _LINE_TIME.match(text)
    if not found:
        return None
    moment, zone = found.groups()
    offset = "+00:00" if zone in (None, "Z") else (zone if ":" in zone else f"{zone[:3]}:{zone[3:]}")
    try:
        parsed = datetime.fromisoformat(moment.replace(",", ".").replace(" ", "T") + offset)
    except ValueError:
        return None
    return int(parsed.timestamp() * 1000)

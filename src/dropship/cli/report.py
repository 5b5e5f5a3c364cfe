"""``dropship status`` and ``dropship history``: fixed-width tables of aliases and release attempts.

Under each history row go the lines a table cannot hold: the whole error, and the rollbacks that moved an
alias to or away from that release.
"""

from __future__ import annotations

import argparse
import json
import shutil
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dropship.alias import AliasRecord
from dropship.cli.errors import CliError
from dropship.cli.release import format_duration
from dropship.cli.stack import Stack
from dropship.history import ReleaseRecord
from dropship.names import check_model_name

MISSING = "-"
ERROR_WIDTH = 100
NOTE_INDENT = "    "


def status(args: argparse.Namespace, stack_factory: Callable[[], Stack]) -> int:
    if args.model is not None:
        check_model_name(args.model)
    stack = stack_factory()
    table, aliases = stack.table(), stack.aliases()
    models = [args.model] if args.model is not None else table.models()
    report: list[ModelStatus] = []
    for model in models:
        releases = table.records(model)
        records = aliases.all_for(model)
        if args.model is not None and not releases and not records:
            raise unknown_model(stack, model)
        serving = {record.execution_arn for record in records.values()}
        report.append(
            ModelStatus(
                model=model,
                aliases=dict(sorted(records.items())),
                releases=releases,
                # Kept for rollback: endpoints still running that no alias points at.
                retained=[r for r in releases if r.endpoint_state == "active" and r.execution_arn not in serving],
            )
        )
    if args.json:
        print(json.dumps([entry.as_json() for entry in report], indent=2, default=str))
        return 0
    if not report:
        print(f"No releases yet in stack {stack.target.stack_name!r}: release one with `dropship release`.")
        return 0
    rows = []
    for entry in report:
        by_execution = {record.execution_arn: record for record in entry.releases}
        last = entry.releases[0] if entry.releases else None
        last_cells = [last.version, last.outcome, when(last.started_at), _last_detail(last)] if last else [MISSING] * 4
        for name, alias in entry.aliases.items() or [(MISSING, None)]:
            if alias is None:
                alias_cells = [MISSING] * 5
            else:
                retained = [
                    record.version
                    for record in sorted(entry.retained, key=ReleaseRecord.live_order, reverse=True)
                    if record.alias == name
                ]
                alias_cells = [
                    name,
                    alias.version,
                    alias.endpoint_name,
                    _live_since(alias, by_execution.get(alias.execution_arn)),
                    ",".join(retained) or MISSING,
                ]
            rows.append([entry.model, *alias_cells, *last_cells])
    headers = ["MODEL", "ALIAS", "VERSION", "ENDPOINT", "LIVE SINCE", "RETAINED", "LAST", "OUTCOME", "STARTED"]
    print(format_table([*headers, "DETAIL"], rows))
    return 0


@dataclass
class ModelStatus:
    model: str
    aliases: dict[str, AliasRecord]
    releases: list[ReleaseRecord]
    retained: list[ReleaseRecord]

    def as_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "aliases": {name: alias.model_dump() for name, alias in self.aliases.items()},
            "last_release": _json(self.releases[0]) if self.releases else None,
            "retained": [_json(record) for record in self.retained],
        }


def _json(record: ReleaseRecord) -> dict[str, Any]:
    return record.model_dump(mode="json", exclude_none=True)


def history(args: argparse.Namespace, stack_factory: Callable[[], Stack]) -> int:
    check_model_name(args.model)
    stack = stack_factory()
    releases = stack.table().records(args.model, newest_first=True)
    if not releases:
        raise unknown_model(stack, args.model)
    if args.limit:
        releases = releases[: args.limit]
    if args.json:
        print(json.dumps([_json(record) for record in releases], indent=2, default=str))
        return 0
    serving: dict[str, list[str]] = {}
    for name, alias in sorted(stack.aliases().all_for(args.model).items()):
        serving.setdefault(alias.execution_arn, []).append(name)
    rows = [
        [
            when(record.started_at),
            record.version,
            record.outcome,
            _duration(record),
            _endpoint(record, serving.get(record.execution_arn, [])),
            " > ".join(record.path) or MISSING,
        ]
        for record in releases
    ]
    table = format_table(["STARTED", "VERSION", "OUTCOME", "DURATION", "ENDPOINT", "PATH"], rows).split("\n")
    print(table[0])
    width = shutil.get_terminal_size((ERROR_WIDTH + len(NOTE_INDENT), 24)).columns
    for line, record in zip(table[1:], releases, strict=True):
        print(line)
        for note in _notes(record):
            print(wrap(note, width))
    return 0


def unknown_model(stack: Stack, model: str) -> CliError:
    known = stack.table().models()
    hint = f"known models: {', '.join(known)}" if known else "no model has been released yet"
    return CliError(f"unknown model {model!r} in stack {stack.target.stack_name!r} ({hint})")


def _last_detail(record: ReleaseRecord) -> str:
    if record.outcome == "RUNNING":
        if record.stage == "Watching" and record.watch is not None:
            return f"watching until {when(record.watch.until)}: {record.watch.describe()}"
        return f"at {record.stage or 'Started'}"
    details = []
    if record.outcome == "FAILED":
        details.append(record.error_code or MISSING)
    if record.rolled_back_to:
        details.append(f"rolled back to {record.rolled_back_to}")
    if record.endpoint_state in ("retired", "deleted"):
        details.append(f"endpoint {record.endpoint_state}")
    if record.warnings:
        details.append(f"{len(record.warnings)} warning(s)")
    return ", ".join(details)


def _live_since(alias: AliasRecord, record: ReleaseRecord | None) -> str:
    """When the alias moved to its release, and whether a rollback moved it there."""
    since = when(alias.released_at)
    if record is not None and record.rolled_back_from:
        return f"{since} (rollback from {record.rolled_back_from})"
    return since


def _endpoint(record: ReleaseRecord, aliases: list[str]) -> str:
    """What became of the release's endpoint: serving an alias, retained for rollback, retired or deleted."""
    if aliases:
        return "alias " + ",".join(aliases)
    if record.endpoint_state == "active":
        return "retained"
    return record.endpoint_state or MISSING


def _notes(record: ReleaseRecord) -> list[str]:
    """Lines printed under a history row: the whole error, warnings, and rollbacks to and from the release."""
    notes = []
    if record.error_code:
        message = record.error_message
        notes.append(f"error: {record.error_code}: {message}" if message else f"error: {record.error_code}")
    notes.extend(f"warning: {warning}" for warning in record.warnings)
    if record.watch is not None:
        notes.append(f"watch: {record.watch.describe()} ({_watch_span(record, record.watch.until)})")
    if record.rolled_back_from:
        notes.append(
            f"live again since {when(record.live_at)}: rolled back to it from version {record.rolled_back_from}"
        )
    if record.rolled_back_at:
        reason = f" ({record.rollback_reason})" if record.rollback_reason else ""
        notes.append(
            f"rolled back at {when(record.rolled_back_at)}: its alias moved to version "
            f"{record.rolled_back_to or MISSING}{reason}"
        )
    return notes


def _watch_span(record: ReleaseRecord, bake_end: str) -> str:
    """When the watch ended: at its bake's end, or earlier when the release failed (an alarm, a rollback)."""
    planned, finished = parse_time(bake_end), parse_time(record.finished_at)
    if record.outcome == "FAILED" and planned and finished and finished < planned:
        return f"stopped at {when(record.finished_at)}, before its bake's end at {when(bake_end)}"
    return f"until {when(bake_end)}"


def wrap(text: str, width: int) -> str:
    """Indented under its row and wrapped at ``width``; every word is kept, however long."""
    lines = []
    for paragraph in str(text).splitlines() or [""]:
        lines.extend(
            textwrap.wrap(
                paragraph,
                width=max(width, 40),
                initial_indent=NOTE_INDENT,
                subsequent_indent=NOTE_INDENT + "  ",
                break_long_words=False,
                break_on_hyphens=False,
            )
            or [NOTE_INDENT]
        )
    return "\n".join(line.rstrip() for line in lines)


def _duration(record: ReleaseRecord) -> str:
    if record.duration_s is not None:
        return format_duration(record.duration_s)
    if record.outcome == "RUNNING":
        return f"{format_duration((datetime.now(UTC) - record.started).total_seconds())}+"
    return MISSING


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    for pattern in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.strptime(value, pattern).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


def when(value: Any) -> str:
    """A history timestamp as ``2026-11-25 12:00:03`` (UTC)."""
    moment = parse_time(value)
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else str(value or MISSING)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns two spaces apart; the last column is not padded."""
    cells = [[str(c) for c in headers], *([str(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        padded = [cell.ljust(width) for cell, width in zip(row[:-1], widths[:-1], strict=True)]
        lines.append("  ".join([*padded, row[-1]]).rstrip())
    return "\n".join(lines)

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
from datetime import UTC, datetime
from typing import Any

from dropship.alias import AliasRecord
from dropship.cli.errors import CliError
from dropship.cli.release import format_duration
from dropship.cli.stack import Stack
from dropship.history import live_order
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
    report: list[dict[str, Any]] = []
    for model in models:
        releases = table.releases(model)
        records = aliases.all_for(model)
        if args.model is not None and not releases and not records:
            raise unknown_model(stack, model)
        serving = {record.execution_arn for record in records.values()}
        report.append(
            {
                "model": model,
                "aliases": {name: record.model_dump() for name, record in sorted(records.items())},
                "last_release": releases[0] if releases else None,
                # Kept for rollback: endpoints still running that no alias points at.
                "retained": [
                    item
                    for item in releases
                    if item.get("endpoint_state") == "active" and item.get("execution_arn") not in serving
                ],
                "releases": releases,
            }
        )
    if args.json:
        print(json.dumps([{k: v for k, v in e.items() if k != "releases"} for e in report], indent=2, default=str))
        return 0
    if not report:
        print(f"No releases yet in stack {stack.target.stack_name!r}: release one with `dropship release`.")
        return 0
    rows = []
    for entry in report:
        records = {name: AliasRecord.model_validate(value) for name, value in entry["aliases"].items()}
        by_execution = {item.get("execution_arn"): item for item in entry["releases"]}
        last = entry["last_release"] or {}
        last_cells = [
            last.get("version", MISSING),
            last.get("outcome", MISSING),
            when(last.get("started_at")),
            _last_detail(last),
        ]
        for name, record in records.items() or [(MISSING, None)]:
            if record is None:
                alias_cells = [MISSING] * 5
            else:
                retained = [
                    str(item.get("version"))
                    for item in sorted(entry["retained"], key=live_order, reverse=True)
                    if item.get("alias") == name
                ]
                alias_cells = [
                    name,
                    record.version,
                    record.endpoint_name,
                    _live_since(record, by_execution.get(record.execution_arn, {})),
                    ",".join(retained) or MISSING,
                ]
            rows.append([entry["model"], *alias_cells, *last_cells])
    headers = ["MODEL", "ALIAS", "VERSION", "ENDPOINT", "LIVE SINCE", "RETAINED", "LAST", "OUTCOME", "STARTED"]
    print(format_table([*headers, "DETAIL"], rows))
    return 0


def history(args: argparse.Namespace, stack_factory: Callable[[], Stack]) -> int:
    check_model_name(args.model)
    stack = stack_factory()
    releases = stack.table().releases(args.model, newest_first=True)
    if not releases:
        raise unknown_model(stack, args.model)
    if args.limit:
        releases = releases[: args.limit]
    if args.json:
        print(json.dumps(releases, indent=2, default=str))
        return 0
    serving: dict[str, list[str]] = {}
    for name, record in sorted(stack.aliases().all_for(args.model).items()):
        serving.setdefault(record.execution_arn, []).append(name)
    rows = [
        [
            when(item.get("started_at")),
            item.get("version", MISSING),
            item.get("outcome", MISSING),
            _duration(item),
            _endpoint(item, serving.get(str(item.get("execution_arn")), [])),
            " > ".join(item.get("path") or []) or MISSING,
        ]
        for item in releases
    ]
    table = format_table(["STARTED", "VERSION", "OUTCOME", "DURATION", "ENDPOINT", "PATH"], rows).split("\n")
    print(table[0])
    width = shutil.get_terminal_size((ERROR_WIDTH + len(NOTE_INDENT), 24)).columns
    for line, item in zip(table[1:], releases, strict=True):
        print(line)
        for note in _notes(item):
            print(wrap(note, width))
    return 0


def unknown_model(stack: Stack, model: str) -> CliError:
    known = stack.table().models()
    hint = f"known models: {', '.join(known)}" if known else "no model has been released yet"
    return CliError(f"unknown model {model!r} in stack {stack.target.stack_name!r} ({hint})")


def _last_detail(item: dict[str, Any]) -> str:
    if item.get("outcome") == "RUNNING":
        return f"at {item.get('stage', 'Started')}"
    details = []
    if item.get("outcome") == "FAILED":
        details.append(str(item.get("error_code", MISSING)))
    if item.get("rolled_back_to"):
        details.append(f"rolled back to {item['rolled_back_to']}")
    if item.get("endpoint_state") in ("retired", "deleted"):
        details.append(f"endpoint {item['endpoint_state']}")
    return ", ".join(details)


def _live_since(record: AliasRecord, item: dict[str, Any]) -> str:
    """When the alias moved to its release, and whether a rollback moved it there."""
    since = when(record.released_at)
    if item.get("rolled_back_from"):
        return f"{since} (rollback from {item['rolled_back_from']})"
    return since


def _endpoint(item: dict[str, Any], aliases: list[str]) -> str:
    """What became of the release's endpoint: serving an alias, retained for rollback, retired or deleted."""
    if aliases:
        return "alias " + ",".join(aliases)
    state = item.get("endpoint_state")
    if state == "active":
        return "retained"
    return str(state) if state else MISSING


def _notes(item: dict[str, Any]) -> list[str]:
    """Lines printed under a history row: the whole error, and rollbacks to and from the release."""
    notes = []
    if item.get("error_code"):
        message = item.get("error_message")
        notes.append(f"error: {item['error_code']}: {message}" if message else f"error: {item['error_code']}")
    if item.get("rolled_back_from"):
        notes.append(
            f"live again since {when(item.get('live_at'))}: rolled back to it from version {item['rolled_back_from']}"
        )
    if item.get("rolled_back_at"):
        notes.append(
            f"rolled back at {when(item['rolled_back_at'])}: its alias moved to version "
            f"{item.get('rolled_back_to', MISSING)}"
        )
    return notes


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


def _duration(item: dict[str, Any]) -> str:
    if item.get("duration_s") is not None:
        return format_duration(float(item["duration_s"]))
    started = parse_time(item.get("started_at"))
    if item.get("outcome") == "RUNNING" and started is not None:
        return f"{format_duration((datetime.now(UTC) - started).total_seconds())}+"
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

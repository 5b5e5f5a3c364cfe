"""``dropship status`` and ``dropship history``: fixed-width tables of aliases and release attempts."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from dropship.alias import AliasRecord
from dropship.cli.errors import CliError, one_line
from dropship.cli.release import format_duration
from dropship.cli.stack import Stack
from dropship.names import check_model_name

MISSING = "-"
ERROR_WIDTH = 100


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
        report.append(
            {
                "model": model,
                "aliases": {name: record.model_dump() for name, record in sorted(records.items())},
                "last_release": releases[0] if releases else None,
            }
        )
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return 0
    if not report:
        print(f"No releases yet in stack {stack.target.stack_name!r}: release one with `dropship release`.")
        return 0
    rows = []
    for entry in report:
        records = {name: AliasRecord.model_validate(value) for name, value in entry["aliases"].items()}
        last = entry["last_release"] or {}
        last_cells = [
            last.get("version", MISSING),
            last.get("outcome", MISSING),
            when(last.get("started_at")),
            _last_detail(last),
        ]
        for name, record in records.items() or [(MISSING, None)]:
            alias_cells = [name, record.version, record.endpoint_name] if record else [MISSING, MISSING, MISSING]
            rows.append([entry["model"], *alias_cells, *last_cells])
    print(format_table(["MODEL", "ALIAS", "VERSION", "ENDPOINT", "LAST", "OUTCOME", "STARTED", "DETAIL"], rows))
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
    rows = [
        [
            when(item.get("started_at")),
            item.get("version", MISSING),
            item.get("outcome", MISSING),
            _duration(item),
            " > ".join(item.get("path") or []) or MISSING,
            _error(item),
        ]
        for item in releases
    ]
    print(format_table(["STARTED", "VERSION", "OUTCOME", "DURATION", "PATH", "ERROR"], rows))
    return 0


def unknown_model(stack: Stack, model: str) -> CliError:
    known = stack.table().models()
    hint = f"known models: {', '.join(known)}" if known else "no model has been released yet"
    return CliError(f"unknown model {model!r} in stack {stack.target.stack_name!r} ({hint})")


def _last_detail(item: dict[str, Any]) -> str:
    if item.get("outcome") == "RUNNING":
        return f"at {item.get('stage', 'Started')}"
    if item.get("outcome") == "FAILED":
        return str(item.get("error_code", MISSING))
    return ""


def _duration(item: dict[str, Any]) -> str:
    if item.get("duration_s") is not None:
        return format_duration(float(item["duration_s"]))
    started = parse_time(item.get("started_at"))
    if item.get("outcome") == "RUNNING" and started is not None:
        return f"{format_duration((datetime.now(UTC) - started).total_seconds())}+"
    return MISSING


def _error(item: dict[str, Any]) -> str:
    if not item.get("error_code"):
        return ""
    return truncate(one_line(f"{item['error_code']}: {item.get('error_message', '')}"), ERROR_WIDTH)


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


def truncate(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns two spaces apart; the last column is not padded."""
    cells = [[str(c) for c in headers], *([str(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        padded = [cell.ljust(width) for cell, width in zip(row[:-1], widths[:-1], strict=True)]
        lines.append("  ".join([*padded, row[-1]]).rstrip())
    return "\n".join(lines)

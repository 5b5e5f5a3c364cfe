"""An endpoint's ``FailureReason``, read from its container's log: the cause first, then a short tail.

The cause is what a data scientist acts on: the message of the container's ``model_load_failed`` line
(``model_fn``'s exception, an ImportError, pip's error line, a refused package source), else the
exception line ending the last traceback. Then what happened to the container, where its log is, and
its last few lines: whole lines (a long one shortened at a word), colour codes and control characters
removed, structured lines shown as their message. Within SageMaker's 1024 characters.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

FAILURE_REASON_MAX = 1024  # DescribeEndpoint's FailureReason is at most 1024 characters
TAIL_LINES = 6
LINE_MAX = 240
READ_BYTES = 64 * 1024  # the end of a start-up's log that is searched

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(: .*)?$")
_REPEATED = "stopped: "  # serve's master repeats the worker's reason as its last line
_START_MARKER = re.compile(r"^--- \S+ starting .* ---$")


def start_marker(command: str, when: str) -> str:
    """The line the local stack writes to an endpoint's log before each start (left out of the tail)."""
    return f"--- {when} starting {command} ---"


def failure_reason(message: str, log_path: Path, start: int = 0, *, with_cause: bool = True) -> str:
    """``message`` (what happened to the container) after the cause found in the log written from byte
    ``start`` of ``log_path``, then the log's last lines; at most ``FAILURE_REASON_MAX`` characters."""
    lines = read_lines(log_path, start)
    found = cause(lines) if with_cause else None
    head = f"{shorten(found, FAILURE_REASON_MAX // 2)}\n{message}" if found else message
    head = f"{head} Last lines of its log ({log_path}):"
    repeated = (found, _REPEATED + (found or ""))
    tail = [line for line in map(render, lines) if line and line not in repeated and not _START_MARKER.match(line)]
    tail = [shorten(line, LINE_MAX) for line in tail[-TAIL_LINES:]]
    while tail and len(head) + sum(len(line) + 1 for line in tail) > FAILURE_REASON_MAX:
        tail.pop(0)
    return shorten("\n".join([head, *tail]), FAILURE_REASON_MAX)


def read_lines(path: Path, start: int = 0) -> list[str]:
    """The non-blank lines written to ``path`` after byte ``start`` (its last ``READ_BYTES``), cleaned."""
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, io.SEEK_END)
            offset = max(start, size - READ_BYTES)
            fh.seek(offset)
            raw = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    lines = raw.splitlines()
    if offset > start and lines:
        lines = lines[1:]  # the first one is cut
    cleaned = (_CONTROL.sub("", _ANSI.sub("", line.replace("\t", "    "))).rstrip() for line in lines)
    return [line for line in cleaned if line.strip()]


def cause(lines: list[str]) -> str | None:
    """The container's own account of why it stopped, else the exception line of the last traceback."""
    for line in lines:
        entry = _structured(line)
        if entry is not None and entry.get("event") == "model_load_failed" and entry.get("message"):
            return _one_line(str(entry["message"]).removeprefix(_REPEATED))
    exception = None
    in_traceback = False
    for line in lines:
        entry = _structured(line)
        traceback = entry.get("exception") if entry is not None else None
        if isinstance(traceback, str):
            exception = _last_exception_line(traceback.splitlines()) or exception
            continue
        if line.startswith("Traceback (most recent call last)"):
            in_traceback = True
        elif in_traceback and not line[:1].isspace():
            if _EXCEPTION_LINE.match(line):
                exception = line.strip()
            in_traceback = False
    return exception


def render(line: str) -> str:
    """A log line as a person reads it: a structured line's message, any other line as it is."""
    entry = _structured(line)
    if entry is None:
        return line.strip()
    return _one_line(str(entry.get("message", ""))) or line.strip()


def shorten(text: str, limit: int) -> str:
    """``text`` within ``limit`` characters, cut at a word boundary with an ellipsis when too long."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = max(cut.rfind(" "), cut.rfind("\n"))
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip() + "…"


def _structured(line: str) -> dict[str, object] | None:
    if not line.startswith("{"):
        return None
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    return entry if isinstance(entry, dict) else None


def _last_exception_line(lines: list[str]) -> str | None:
    for line in reversed(lines):
        if line.strip() and not line[:1].isspace() and _EXCEPTION_LINE.match(line):
            return line.strip()
    return None


def _one_line(text: str) -> str:
    return " ".join(_CONTROL.sub(" ", _ANSI.sub("", text)).split())

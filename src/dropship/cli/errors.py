"""The one kind of failure the command line reports: a one-line reason and an exit code."""

from __future__ import annotations


class CliError(Exception):
    """An expected failure: printed as ``dropship: error: <message>`` on one line, no traceback."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def one_line(text: str, limit: int = 2000) -> str:
    """Collapse whitespace (including newlines) so a message always fits on one line."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."

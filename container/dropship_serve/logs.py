"""Structured logging: one JSON object per line on stdout, for the server and for gunicorn."""

from __future__ import annotations

import json
import logging
import logging.config
import sys
import time
from typing import Any

# Attributes every LogRecord has; anything else on a record came from `extra=` and is logged as a field,
# except uvicorn's `color_message` (its message again, with terminal colour codes).
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "color_message",
}

LOGGER_NAME = "dropship.serve"


class JsonFormatter(logging.Formatter):
    """Formats a record as a single JSON line: time, level, logger, pid, message, extra fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(level: str = "info") -> None:
    """Send every log record of this process to stdout as JSON lines."""
    logging.config.dictConfig(logconfig_dict(level))


def logconfig_dict(level: str = "info", access_log: bool = False) -> dict[str, Any]:
    """A `logging.config.dictConfig` dictionary; also handed to gunicorn as `logconfig_dict`."""
    level = level.upper()
    access = {"level": "INFO" if access_log else "WARNING", "handlers": ["stdout"], "propagate": False}
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"}
    quiet = {"level": level, "handlers": ["stdout"], "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"stdout": handler},
        "root": {"level": level, "handlers": ["stdout"]},
        "loggers": {
            "gunicorn.error": quiet,
            "gunicorn.access": access,
            "gunicorn.asgi": quiet,
            "uvicorn.error": quiet,
            "uvicorn.access": access,
        },
    }


def get_logger() -> logging.Logger:
    return logging.getLogger(LOGGER_NAME)


def flush() -> None:
    """Flush stdout and stderr before an abrupt exit (`os._exit`) so the last lines are not lost."""
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()

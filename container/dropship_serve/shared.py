"""State the gunicorn master creates before forking and the HTTP process shares."""

from __future__ import annotations

import multiprocessing
from dataclasses import dataclass
from typing import Any

FAILURE_BYTES = 4096


@dataclass(frozen=True)
class SharedState:
    failure: Any  # multiprocessing.Array("c"): why the model could not be loaded, for the master's last line

    @classmethod
    def create(cls) -> SharedState:
        return cls(multiprocessing.Array("c", FAILURE_BYTES))

    def record_failure(self, message: str) -> None:
        with self.failure.get_lock():
            if not self.failure.value:
                self.failure.value = message.encode("utf-8", "replace")[: FAILURE_BYTES - 1]

    def failure_message(self) -> str:
        return bytes(self.failure.value).decode("utf-8", "replace")

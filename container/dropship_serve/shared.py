"""State the gunicorn master creates before forking and every worker shares."""

from __future__ import annotations

import multiprocessing
from dataclasses import dataclass
from typing import Any

FAILURE_BYTES = 4096


@dataclass(frozen=True)
class SharedState:
    loaded_workers: Any  # multiprocessing.Value("i"): workers that have loaded the model
    failure: Any  # multiprocessing.Array("c"): why a worker could not load the model, for the master's last line

    @classmethod
    def create(cls) -> SharedState:
        return cls(multiprocessing.Value("i", 0), multiprocessing.Array("c", FAILURE_BYTES))

    def record_failure(self, message: str) -> None:
        with self.failure.get_lock():
            if not self.failure.value:
                self.failure.value = message.encode("utf-8", "replace")[: FAILURE_BYTES - 1]

    def failure_message(self) -> str:
        return bytes(self.failure.value).decode("utf-8", "replace")

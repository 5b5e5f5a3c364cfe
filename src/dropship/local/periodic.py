"""A task the local stack runs every few seconds on a thread of its own (alarm evaluation, capture flushing)."""

from __future__ import annotations

import threading
from collections.abc import Callable


class Periodic:
    """Calls ``tick`` every ``interval_s`` seconds on a daemon thread until stopped; an interval of 0 or less
    starts no thread (the owner then works on demand)."""

    def __init__(self, interval_s: float, tick: Callable[[], object], name: str) -> None:
        self.interval_s = interval_s
        self._tick = tick
        self._name = name
        self._stop = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        if self.interval_s > 0:
            self.thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self.thread is not None:
            self.thread.join(timeout=10)
            self.thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._tick()

"""The HTTP process's inference processes: started at boot, they take the requests from one shared queue.

Why one HTTP process and a pool of inference processes, rather than N workers that each do both:
N workers each accepting their own keep-alive connections (SO_REUSEPORT, or one shared listening
socket) balance connections, not requests. The kernel hashes connections over the workers unevenly
(11/5, 12/4 of 16 measured), and a busier worker's requests queue behind each other while the other
worker idles between its own: that was the p99. Here every request joins one queue, and whichever
inference thread is free takes the next one, as gunicorn's sync workers take connections from a shared
socket, but per request. The queue is a SOCK_SEQPACKET socket the inference processes share
(`worker.py`): a thread that finishes takes the next request itself, without waiting for this event loop
to hand it one (measured: handing requests out from here costs a third more CPU per request, the
inference processes sleeping and waking between requests). And the HTTP process runs no model code, so
its GIL is never held by a prediction: /ping answers at once while every inference thread is busy.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from dropship_serve import logs
from dropship_serve.core import Invocation, Output, RequestCheck
from dropship_serve.errors import InvocationError, InvocationTimeoutError, ModelNotReadyError
from dropship_serve.settings import Settings
from dropship_serve.worker import SlotTable, receive_message, send_message

PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A fresh interpreter per inference process (not a fork of this one, which runs an event loop and holds
# the listening socket); it finds this package where the HTTP process found it.
_BOOT = (
    "import sys; sys.path.insert(0, sys.argv[1]); from dropship_serve.worker import main; "
    "sys.exit(main(*(int(arg) for arg in sys.argv[2:6])))"
)
_STOP_WAIT_S = 5.0


def invocation_error(status: int, code: str, message: str) -> InvocationError:
    error = InvocationError(message)
    error.status, error.code = status, code
    return error


class _ProcessGone(Exception):
    pass


class _Process:
    def __init__(self, popen: subprocess.Popen[bytes], slots: range, pidfd: int) -> None:
        self.popen = popen
        self.slots = slots
        self.pidfd = pidfd
        self.ready: set[int] = set()
        self.exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    @property
    def loaded(self) -> bool:
        return len(self.ready) == len(self.slots)


class InferencePool:
    """Starts the inference processes, queues the requests for them, and matches their answers.

    `on_failure(message)` is called when the model cannot be loaded; it must stop the server.
    """

    def __init__(self, settings: Settings, on_failure: Callable[[str], None]) -> None:
        self.settings = settings
        self._on_failure = on_failure
        self._processes: list[_Process] = []
        self._pending: dict[int, asyncio.Future[tuple[Any, ...]]] = {}
        self._backlog: deque[tuple[Any, ...]] = deque()  # what the full socket could not take yet
        self._ids = itertools.count(1)
        self._loaded: asyncio.Event | None = None
        self._closing = False
        self.request_check: RequestCheck | None = None
        self.has_execution_parameters_fn = False
        self._log = logs.get_logger()

    # -- state ----------------------------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._loaded is not None and self._loaded.is_set()

    @property
    def stuck(self) -> int:
        """Inference threads whose prediction has run longer than the timeout."""
        limit = time.monotonic() - self.settings.timeout
        stuck = 0
        for process in self._processes:
            for index in process.ready:
                request_id, started = self._table.read(index)
                stuck += request_id != 0 and started < limit
        return stuck

    @property
    def healthy(self) -> bool:
        """Every process has loaded the model, and some inference thread is not stuck in a prediction."""
        return self.loaded and sum(len(p.ready) for p in self._processes) > self.stuck

    async def wait_loaded(self, timeout: float) -> RequestCheck:
        assert self._loaded is not None
        if not self._loaded.is_set():
            try:
                await asyncio.wait_for(self._loaded.wait(), timeout)
            except TimeoutError:
                raise ModelNotReadyError("the model is still loading") from None
        assert self.request_check is not None
        return self.request_check

    # -- processes ------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._loaded = asyncio.Event()
        threads = self.settings.inference_threads
        self._table = SlotTable.create(self.settings.workers * threads)
        # Ours sends requests and receives answers; theirs is shared by every inference process (and
        # kept here for the ones started to replace a process that died).
        self._ours, self._theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._ours.setblocking(False)
        asyncio.get_running_loop().add_reader(self._ours, self._readable)
        for first in range(0, self.settings.workers * threads, threads):
            self._spawn(range(first, first + threads))

    def _spawn(self, slots: range) -> None:
        fds = (self._theirs.fileno(), self._table.fd)
        arguments = [*map(str, fds), str(self._table.slots), str(slots.start)]
        popen = subprocess.Popen([sys.executable, "-c", _BOOT, PACKAGE_PARENT, *arguments], pass_fds=fds)
        process = _Process(popen, slots, os.pidfd_open(popen.pid))
        self._processes.append(process)
        asyncio.get_running_loop().add_reader(process.pidfd, self._exited, process)

    def _exited(self, process: _Process) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(process.pidfd)
        os.close(process.pidfd)
        status = process.popen.wait()
        process.exited.set_result(status)
        self._processes.remove(process)
        if self._closing:
            return
        if not process.loaded:
            message = f"an inference process exited with status {status} while loading the model"
            self._log.critical(message, extra={"event": "model_load_failed", "model_dir": self.settings.model_dir})
            self._on_failure(message)
            return
        for index in process.slots:  # the requests it was running are lost
            request_id, _ = self._table.read(index)
            self._table.finish(index)
            future = self._pending.pop(request_id, None)
            if future is not None and not future.done():
                future.set_exception(_ProcessGone())
        self._log.error(
            "an inference process exited; starting another",
            extra={"event": "inference_process_exited", "status": status, "exited_pid": process.popen.pid},
        )
        try:
            self._spawn(process.slots)
        except OSError as exc:  # cannot even start a process: stop, and let the platform replace the instance
            self._log.critical(f"cannot start an inference process: {exc}", extra={"event": "model_load_failed"})
            self._on_failure(f"cannot start an inference process: {exc}")

    async def close(self) -> None:
        """After the HTTP server drained: closing the queue ends the inference processes."""
        self._closing = True
        loop = asyncio.get_running_loop()
        loop.remove_reader(self._ours)
        loop.remove_writer(self._ours)
        self._ours.close()
        processes = list(self._processes)
        _, late = await asyncio.wait([p.exited for p in processes], timeout=_STOP_WAIT_S)
        for process in processes:
            if process.exited in late:  # a prediction that never returns
                process.popen.kill()
        if late:
            await asyncio.wait(late)

    def kill(self) -> None:
        """At once, before this process exits abruptly."""
        self._closing = True
        for process in self._processes:
            with contextlib.suppress(OSError):
                process.popen.kill()

    # -- messages -------------------------------------------------------------------------------------

    def _readable(self) -> None:
        while True:
            try:
                received, message = receive_message(self._ours)
            except BlockingIOError:
                return
            if not received:
                return
            self._received(message)

    def _received(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "ready":
            _, index, self.request_check, self.has_execution_parameters_fn = message
            for process in self._processes:
                if index in process.slots:
                    process.ready.add(index)
            if self._loaded is not None and self._processes and all(p.loaded for p in self._processes):
                self._loaded.set()
        elif kind == "failed":
            self._on_failure(message[1])
        else:
            future = self._pending.pop(kind, None)  # an answer: (request id, ...)
            if future is not None and not future.done():
                future.set_result(message)

    def _send(self, message: tuple[Any, ...]) -> None:
        if not self._backlog:
            try:
                send_message(self._ours, message)
                return
            except BlockingIOError:
                asyncio.get_running_loop().add_writer(self._ours, self._writable)
        self._backlog.append(message)

    def _writable(self) -> None:
        while self._backlog:
            message = self._backlog[0]
            if message[0] in self._pending:  # not given up on while it waited here
                try:
                    send_message(self._ours, message)
                except BlockingIOError:
                    return
            self._backlog.popleft()
        asyncio.get_running_loop().remove_writer(self._ours)

    # -- requests -------------------------------------------------------------------------------------

    async def _call(self, kind: str, *arguments: Any) -> Any:
        loop = asyncio.get_running_loop()
        timeout = self.settings.timeout
        request_id = next(self._ids)
        future: asyncio.Future[tuple[Any, ...]] = loop.create_future()
        self._pending[request_id] = future
        # The deadline goes along: an inference process skips a request that waited in the queue past it.
        self._send((request_id, time.monotonic() + timeout, kind, *arguments))
        timer = loop.call_at(loop.time() + timeout, _expire, future)
        try:
            answer = await future
        except TimeoutError:
            raise self._timed_out() from None
        except _ProcessGone:
            raise invocation_error(
                500, "ModelError", "the inference process stopped during the invocation; see the log"
            ) from None
        finally:
            timer.cancel()
            self._pending.pop(request_id, None)
        if answer[1] == "error":
            raise invocation_error(*answer[2:])
        if answer[1] == "expired":
            raise self._timed_out()
        return answer[2]

    def _timed_out(self) -> InvocationTimeoutError:
        timeout = self.settings.timeout
        self._log.error(
            "invocation timed out", extra={"event": "invocation_timeout", "timeout_s": timeout, "stuck": self.stuck}
        )
        return InvocationTimeoutError(f"the invocation took longer than SAGEMAKER_MODEL_SERVER_TIMEOUT={timeout} s")

    async def invoke(self, body: bytes, headers: dict[str, str], accepts: list[str]) -> Invocation:
        result: Invocation = await self._call("invoke", body, headers, accepts)
        return result

    async def execution_parameters(self) -> Output:
        result: Output = await self._call("execution_parameters")
        return result


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())

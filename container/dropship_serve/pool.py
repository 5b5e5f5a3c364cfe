"""The HTTP process's inference processes: started at boot, each request handed to the first free one.

Why one HTTP process and a pool of inference processes, rather than N workers that each do both:
N workers each accepting their own keep-alive connections (SO_REUSEPORT, or one shared socket) balance
connections, not requests. The kernel hashes connections over the workers unevenly (11/5, 12/4 of 16
measured), and a busier worker's requests queue behind each other while the other worker idles between
its own: that was the p99. Here every request waits in one FIFO for the next free inference slot, as
nginx balances per request in the classic design. And the HTTP process runs no model code, so its GIL
is never held by a prediction: /ping answers at once while every inference process is busy.

A slot is one Unix socket to one inference thread (`SAGEMAKER_MODEL_SERVER_WORKERS` processes x
`DROPSHIP_INFERENCE_THREADS`), carrying one request at a time (frames of `worker.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Any, cast

from dropship_serve import logs
from dropship_serve.core import Invocation, Output, RequestCheck
from dropship_serve.errors import InvocationError, InvocationTimeoutError, ModelNotReadyError
from dropship_serve.settings import Settings
from dropship_serve.worker import _LENGTH

PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A fresh interpreter per inference process (not a fork of this one, which runs an event loop and holds
# the listening socket); it finds this package where the HTTP process found it.
_BOOT = (
    "import sys; sys.path.insert(0, sys.argv[1]); from dropship_serve.worker import main; "
    "sys.exit(main([int(fd) for fd in sys.argv[2:]]))"
)
_STOP_WAIT_S = 5.0


def invocation_error(status: int, code: str, message: str) -> InvocationError:
    error = InvocationError(message)
    error.status, error.code = status, code
    return error


class _ProcessGone(Exception):
    pass


class _Pending:
    """A request sent to a slot, until its reply comes back."""

    __slots__ = ("abandoned", "reply")

    def __init__(self, reply: asyncio.Future[Any]) -> None:
        self.reply = reply
        self.abandoned = False  # timed out (or its client left): its answer only frees the slot


class _Slot(asyncio.Protocol):
    """One inference thread, as seen from the event loop: its socket, and the replies it owes, in order."""

    def __init__(self, pool: InferencePool, process: _Process) -> None:
        self.pool = pool
        self.process = process
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.pending: deque[_Pending] = deque()
        self.ready = False
        self.alive = True

    @property
    def usable(self) -> bool:
        return self.alive and self.ready

    @property
    def stuck(self) -> bool:
        """Its running prediction (the first request sent) outlived its timeout."""
        return bool(self.pending) and self.pending[0].abandoned

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= _LENGTH.size:
            (size,) = _LENGTH.unpack_from(self.buffer)
            end = _LENGTH.size + size
            if len(self.buffer) < end:
                return
            message = pickle.loads(self.buffer[_LENGTH.size : end])  # noqa: S301  (our own inference process)
            del self.buffer[:end]
            self.pool._received(self, message)

    def connection_lost(self, exc: Exception | None) -> None:
        self.alive = False
        self.pool._lost(self)

    def send(self, message: tuple[Any, ...]) -> _Pending:
        assert self.transport is not None
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        pending = _Pending(asyncio.get_running_loop().create_future())
        self.pending.append(pending)
        self.transport.writelines((_LENGTH.pack(len(data)), data))
        return pending


class _Process:
    def __init__(self, popen: subprocess.Popen[bytes], slots: int) -> None:
        self.popen = popen
        self.expected_slots = slots
        self.slots: list[_Slot] = []
        self.loaded = False
        self.gone = False


class InferencePool:
    """Starts the inference processes and hands each request to the least busy slot, first come first served.

    A slot takes a second request while it runs one (DEPTH): the inference thread then finds its next
    request waiting when it finishes, instead of idling until the event loop gets round to sending it
    (measured: without it the inference processes idle a third of the time under load). Beyond that,
    requests wait here in one FIFO. `on_failure(message)` is called when the model cannot be loaded; it
    must stop the server.
    """

    DEPTH = 2

    def __init__(self, settings: Settings, on_failure: Callable[[str], None]) -> None:
        self.settings = settings
        self._on_failure = on_failure
        self._processes: list[_Process] = []
        self._slots: list[_Slot] = []
        self._next = 0  # where the search for a free slot starts: spreads requests over the processes
        self._waiters: deque[asyncio.Future[_Slot]] = deque()
        self._loaded: asyncio.Event | None = None
        self._started = False
        self._closing = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.request_check: RequestCheck | None = None
        self.has_execution_parameters_fn = False
        self._log = logs.get_logger()

    # -- state ----------------------------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._loaded is not None and self._loaded.is_set()

    @property
    def healthy(self) -> bool:
        """Every process has loaded the model, and some slot is not stuck in a timed-out prediction."""
        return self.loaded and any(slot.usable and not slot.stuck for slot in self._slots)

    @property
    def stuck(self) -> int:
        return sum(1 for slot in self._slots if slot.usable and slot.stuck)

    async def wait_loaded(self, timeout: float) -> RequestCheck:
        assert self._loaded is not None
        if not self._loaded.is_set():
            try:
                await asyncio.wait_for(self._loaded.wait(), timeout)
            except TimeoutError:
                raise ModelNotReadyError("the model is still loading") from None
        assert self.request_check is not None
        return self.request_check

    def _check_loaded(self) -> None:
        if self._started and self._loaded is not None and all(p.loaded for p in self._processes):
            self._loaded.set()

    # -- processes ------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._loaded = asyncio.Event()
        for _ in range(self.settings.workers):
            await self._spawn()
        self._started = True
        self._check_loaded()

    async def _spawn(self) -> None:
        threads = self.settings.inference_threads
        pairs = [socket.socketpair() for _ in range(threads)]
        child_fds = [child.fileno() for _, child in pairs]
        popen = subprocess.Popen(
            [sys.executable, "-c", _BOOT, PACKAGE_PARENT, *map(str, child_fds)], pass_fds=child_fds
        )
        process = _Process(popen, threads)
        self._processes.append(process)
        loop = asyncio.get_running_loop()
        for ours, child in pairs:
            child.close()
            _, slot = await loop.create_unix_connection(lambda: _Slot(self, process), sock=ours)
            process.slots.append(slot)
            self._slots.append(slot)

    def _received(self, slot: _Slot, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "ready":
            self.request_check, self.has_execution_parameters_fn = message[1], message[2]
            slot.ready = True
            process = slot.process
            if len(process.slots) == process.expected_slots and all(s.ready for s in process.slots):
                process.loaded = True
                self._check_loaded()
            self._freed(slot)
        elif kind == "failed":
            self._on_failure(message[1])
        else:
            pending = slot.pending.popleft()
            if not pending.reply.done():
                pending.reply.set_result(message)
            self._freed(slot)

    def _lost(self, slot: _Slot) -> None:
        with contextlib.suppress(ValueError):
            self._slots.remove(slot)
        while slot.pending:
            reply = slot.pending.popleft().reply
            if not reply.done():
                reply.set_exception(_ProcessGone())
        process = slot.process
        if not process.gone:
            process.gone = True
            task = asyncio.get_running_loop().create_task(self._process_gone(process))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _process_gone(self, process: _Process) -> None:
        status = await asyncio.to_thread(_stop, process.popen)
        if self._closing:
            return
        if not process.loaded:
            message = f"an inference process exited with status {status} while loading the model"
            self._log.critical(message, extra={"event": "model_load_failed", "model_dir": self.settings.model_dir})
            self._on_failure(message)
            return
        self._processes.remove(process)
        self._log.error(
            "an inference process exited; starting another",
            extra={"event": "inference_process_exited", "status": status, "exited_pid": process.popen.pid},
        )
        try:
            await self._spawn()
        except OSError as exc:  # cannot even start a process: stop, and let the platform replace the instance
            self._log.critical(f"cannot start an inference process: {exc}", extra={"event": "model_load_failed"})
            self._on_failure(f"cannot start an inference process: {exc}")

    async def close(self) -> None:
        """After the HTTP server drained: closing the sockets ends the inference processes."""
        self._closing = True
        for process in self._processes:
            for slot in process.slots:
                if slot.transport is not None:
                    slot.transport.close()
        await asyncio.gather(*(asyncio.to_thread(_stop, p.popen) for p in self._processes))

    def kill(self) -> None:
        """At once, before this process exits abruptly."""
        self._closing = True
        for process in self._processes:
            with contextlib.suppress(OSError):
                process.popen.kill()

    # -- requests -------------------------------------------------------------------------------------

    def _free_slot(self) -> _Slot | None:
        """The usable slot with the fewest requests, below DEPTH; the search starts after the last one picked."""
        slots = self._slots
        best: _Slot | None = None
        for offset in range(len(slots)):
            slot = slots[(self._next + offset) % len(slots)]
            if not slot.usable:
                continue
            load = len(slot.pending)
            if load == 0:
                best = slot
                break
            if load < self.DEPTH and (best is None or load < len(best.pending)):
                best = slot
        if best is not None:
            self._next = (slots.index(best) + 1) % len(slots)
        return best

    def _freed(self, slot: _Slot) -> None:
        """`slot` can take a request: hand it to the request that has waited longest."""
        while self._waiters and slot.usable and len(slot.pending) < self.DEPTH:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(slot)
                return

    async def _acquire(self, deadline: float) -> _Slot:
        if not self._waiters:
            slot = self._free_slot()
            if slot is not None:
                return slot
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[_Slot] = loop.create_future()
        self._waiters.append(waiter)
        timer = loop.call_at(deadline, _expire, waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._freed(waiter.result())  # handed a slot just as the request was cancelled: pass it on
            raise
        finally:
            timer.cancel()

    async def _call(self, message: tuple[Any, ...]) -> Any:
        loop = asyncio.get_running_loop()
        timeout = self.settings.timeout
        deadline = loop.time() + timeout
        try:
            slot = await self._acquire(deadline)
        except TimeoutError:
            raise self._timed_out() from None
        # The inference process skips a request whose deadline passed while it waited there.
        pending = slot.send((*message, time.monotonic() + max(deadline - loop.time(), 0)))
        timer = loop.call_at(deadline, _expire, pending.reply)
        try:
            answer = await pending.reply
        except TimeoutError:
            pending.abandoned = True  # the slot stays taken until the inference process answers
            raise self._timed_out() from None
        except asyncio.CancelledError:  # the client went away
            pending.abandoned = True
            raise
        except _ProcessGone:
            raise invocation_error(
                500, "ModelError", "the inference process stopped during the invocation; see the log"
            ) from None
        finally:
            timer.cancel()
        if answer[0] == "error":
            raise invocation_error(*answer[1:])
        if answer[0] == "expired":
            raise self._timed_out()
        return answer[1]

    def _timed_out(self) -> InvocationTimeoutError:
        timeout = self.settings.timeout
        self._log.error(
            "invocation timed out", extra={"event": "invocation_timeout", "timeout_s": timeout, "stuck": self.stuck}
        )
        return InvocationTimeoutError(f"the invocation took longer than SAGEMAKER_MODEL_SERVER_TIMEOUT={timeout} s")

    async def invoke(self, body: bytes, headers: dict[str, str], accepts: list[str]) -> Invocation:
        result: Invocation = await self._call(("invoke", body, headers, accepts))
        return result

    async def execution_parameters(self) -> Output:
        result: Output = await self._call(("execution_parameters",))
        return result


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


def _stop(popen: subprocess.Popen[bytes]) -> int:
    try:
        return popen.wait(_STOP_WAIT_S)
    except subprocess.TimeoutExpired:  # a prediction that never returns
        popen.kill()
        return popen.wait()

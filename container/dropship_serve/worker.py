"""An inference process: loads the model once, then takes requests from the queue it shares with the others.

The HTTP process (`pool.py`) starts `SAGEMAKER_MODEL_SERVER_WORKERS` of them. They all hold the same
end of one `SOCK_SEQPACKET` Unix socket pair: each message on it (a pickled request) is received whole
by exactly one of the threads waiting on it (`DROPSHIP_INFERENCE_THREADS` per process), and answers go
back the same way. A message too big for the socket travels as a memfd passed along with it. Each
thread records in a shared table which request it runs since when, so the HTTP process knows which
predictions are stuck and which request a dead process leaves unanswered, without a message.
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import pickle
import signal
import socket
import struct
import sys
import threading
import time
from typing import Any

from dropship_serve import logs
from dropship_serve.core import Handler
from dropship_serve.errors import EXIT_MODEL_LOAD_FAILED, InvocationError, ModelLoadError
from dropship_serve.settings import Settings

_PR_SET_PDEATHSIG = 1
_INLINE = b"I"
_MEMFD = b"M"
INLINE_LIMIT = 32 * 1024
"""Larger messages go through a memfd: a Unix datagram is limited by the socket's send buffer (~200 KiB)."""
_RECEIVE_BYTES = INLINE_LIMIT + 1


# -- messages --------------------------------------------------------------------------------------------


def send_message(sock: socket.socket, message: Any) -> None:
    """One message, sent whole (raises BlockingIOError on a full non-blocking socket, sending nothing)."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    if len(data) <= INLINE_LIMIT:
        sock.send(_INLINE + data)
        return
    fd = os.memfd_create("dropship-message", os.MFD_CLOEXEC)
    try:
        with open(fd, "wb", closefd=False) as f:
            f.write(data)
        socket.send_fds(sock, [_MEMFD], [fd])
    finally:
        os.close(fd)


def receive_message(sock: socket.socket) -> tuple[bool, Any]:
    """(True, message), or (False, None) when the other side closed the socket."""
    data, fds, _, _ = socket.recv_fds(sock, _RECEIVE_BYTES, 1)
    if not data and not fds:
        return False, None
    if data[:1] == _MEMFD:
        [fd] = fds
        try:
            data = os.pread(fd, os.fstat(fd).st_size, 0)
        finally:
            os.close(fd)
    else:
        for fd in fds:
            os.close(fd)
        data = data[1:]
    return True, pickle.loads(data)  # noqa: S301  (our own processes, over a socketpair)


class SlotTable:
    """Shared memory: per inference thread, the id of the request it runs (0: none) and since when."""

    _ENTRY = struct.Struct("qd")

    def __init__(self, fd: int, slots: int) -> None:
        self.fd = fd
        self.slots = slots
        self._map = mmap.mmap(fd, max(slots, 1) * self._ENTRY.size)

    @classmethod
    def create(cls, slots: int) -> SlotTable:
        fd = os.memfd_create("dropship-slots")  # handed to the inference processes (pass_fds)
        os.ftruncate(fd, max(slots, 1) * cls._ENTRY.size)
        return cls(fd, slots)

    def start(self, index: int, request_id: int) -> None:
        self._ENTRY.pack_into(self._map, index * self._ENTRY.size, request_id, time.monotonic())

    def finish(self, index: int) -> None:
        self._ENTRY.pack_into(self._map, index * self._ENTRY.size, 0, 0.0)

    def read(self, index: int) -> tuple[int, float]:
        request_id, started = self._ENTRY.unpack_from(self._map, index * self._ENTRY.size)
        return request_id, started


# -- the process -----------------------------------------------------------------------------------------


def answer(handler: Handler, request: tuple[Any, ...]) -> tuple[Any, ...]:
    """The reply to (id, deadline, kind, *arguments): (id, "ok", result), (id, "error", status, code, message)
    or (id, "expired")."""
    request_id, deadline, kind = request[:3]
    if time.monotonic() > deadline:  # it waited in the queue past its deadline: the client has had a 504
        return (request_id, "expired")
    try:
        if kind == "invoke":
            body, headers, accepts = request[3:]
            return (request_id, "ok", handler.invoke(body, headers, accepts))
        return (request_id, "ok", handler.execution_parameters())
    except InvocationError as error:
        return (request_id, "error", error.status, error.code, error.message)
    except Exception as exc:  # the core maps the hooks' errors; anything else is a bug worth a 500, not a crash
        logs.get_logger().exception("invocation failed", extra={"event": "invocation_failed"})
        return (request_id, "error", 500, "InternalError", f"the inference process failed: {type(exc).__name__}")


def serve(handler: Handler, sock: socket.socket, table: SlotTable, index: int) -> None:
    """One inference thread: take the next request, answer it, until the HTTP process closes the socket."""
    try:
        send_message(sock, ("ready", index, handler.request_check, handler.execution_parameters_fn is not None))
        while True:
            received, request = receive_message(sock)
            if not received:
                return
            table.start(index, request[0])
            reply = answer(handler, request)
            table.finish(index)
            send_message(sock, reply)
    except OSError:  # the HTTP process is gone: nobody is left to answer
        pass


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when the HTTP process dies, even if a prediction never returns."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def main(sock_fd: int, table_fd: int, slots: int, first: int) -> int:
    """Serve slots `first` .. `first + DROPSHIP_INFERENCE_THREADS - 1` of a table of `slots`."""
    # The HTTP process decides when to stop: it drains its requests, then closes the socket. A Ctrl-C or
    # a SIGTERM sent to the whole process group must not kill predictions in flight.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent()
    sock = socket.socket(fileno=sock_fd)
    table = SlotTable(table_fd, slots)
    settings = Settings.from_env()
    logs.configure(settings.log_level)
    try:
        handler = Handler.load(settings)
    except BaseException as exc:
        message = (
            str(exc) if isinstance(exc, ModelLoadError) else f"loading the model failed: {type(exc).__name__}: {exc}"
        )
        cause = exc.__cause__ or exc
        logs.get_logger().critical(
            message,
            exc_info=(type(cause), cause, cause.__traceback__),
            extra={"event": "model_load_failed", "model_dir": settings.model_dir},
        )
        logs.flush()
        with contextlib.suppress(OSError):
            send_message(sock, ("failed", message))
        os._exit(EXIT_MODEL_LOAD_FAILED)
    threads = [
        threading.Thread(target=serve, args=(handler, sock, table, index), name=f"inference-{index}")
        for index in range(first + 1, first + settings.inference_threads)
    ]
    for thread in threads:
        thread.start()
    serve(handler, sock, table, first)
    for thread in threads:
        thread.join()
    logs.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(*(int(arg) for arg in sys.argv[1:5])))

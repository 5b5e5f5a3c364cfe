"""An inference process: loads the model once, then answers the HTTP process's requests over its sockets.

The HTTP process (`pool.py`) starts one per `SAGEMAKER_MODEL_SERVER_WORKERS` with one connected Unix
socket per inference thread (`DROPSHIP_INFERENCE_THREADS`). Each socket carries one request at a time:
frames of a 4-byte length and a pickle, between two processes of the same program. The first frame on
each socket says whether the model loaded; a failure to load ends the process with status 3.
"""

from __future__ import annotations

import contextlib
import ctypes
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
from dropship_serve.errors import InvocationError, ModelLoadError
from dropship_serve.settings import Settings

EXIT_MODEL_LOAD_FAILED = 3
_LENGTH = struct.Struct(">I")
_PR_SET_PDEATHSIG = 1


def send(sock: socket.socket, message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(_LENGTH.pack(len(data)) + data)


class Frames:
    """The frames arriving on a socket; one recv usually brings a whole request."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()

    def next(self) -> Any:
        """The next message, or None when the HTTP process closed the socket."""
        buffer = self.buffer
        while True:
            if len(buffer) >= _LENGTH.size:
                end = _LENGTH.size + _LENGTH.unpack_from(buffer)[0]
                if len(buffer) >= end:
                    data = bytes(buffer[_LENGTH.size : end])
                    del buffer[:end]
                    return pickle.loads(data)  # noqa: S301  (our own HTTP process, over a socketpair)
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                return None
            buffer += chunk


def answer(handler: Handler, request: tuple[Any, ...]) -> tuple[Any, ...]:
    """("ok", result), ("error", status, code, message) or ("expired",) for one request of the HTTP process."""
    if time.monotonic() > request[-1]:  # its deadline passed while it waited here: the client has had a 504
        return ("expired",)
    try:
        if request[0] == "invoke":
            _, body, headers, accepts, _ = request
            return ("ok", handler.invoke(body, headers, accepts))
        return ("ok", handler.execution_parameters())
    except InvocationError as error:
        return ("error", error.status, error.code, error.message)
    except Exception as exc:  # the core maps the hooks' errors; anything else is a bug worth a 500, not a crash
        logs.get_logger().exception("invocation failed", extra={"event": "invocation_failed"})
        return ("error", 500, "InternalError", f"the inference process failed: {type(exc).__name__}")


def serve_slot(handler: Handler, sock: socket.socket) -> None:
    try:
        send(sock, ("ready", handler.request_check, handler.execution_parameters_fn is not None))
        frames = Frames(sock)
        while (request := frames.next()) is not None:
            send(sock, answer(handler, request))
    except OSError:  # the HTTP process is gone: nobody is left to answer
        pass


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when the HTTP process dies, even if a prediction never returns."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def main(fds: list[int]) -> int:
    # The HTTP process decides when to stop: it drains its requests, then closes the sockets. A Ctrl-C or
    # a SIGTERM sent to the whole process group must not kill predictions in flight.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent()
    sockets = [socket.socket(fileno=fd) for fd in fds]
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
            send(sockets[0], ("failed", message))
        os._exit(EXIT_MODEL_LOAD_FAILED)
    threads = [
        threading.Thread(target=serve_slot, args=(handler, sock), name=f"inference-{index}")
        for index, sock in enumerate(sockets[1:], start=1)
    ]
    for thread in threads:
        thread.start()
    serve_slot(handler, sockets[0])
    for thread in threads:
        thread.join()
    logs.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main([int(fd) for fd in sys.argv[1:]]))

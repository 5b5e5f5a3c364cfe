"""The Lambda seam: moto's ``Invoke`` runs the real handler in warm worker processes.

moto 5.2.5 without Docker (``LambdaSimpleBackend``) answers every invocation with canned bytes. Here
``invoke`` looks the function up in moto (environment, timeout, memory, handler as configured now) and
runs it from the source directory remembered at deploy time, in a pool of worker processes per function,
like Lambda's execution environments: one process per concurrent invocation, reused while warm, thrown
away after a timeout or a crash. Errors come back in Lambda's shape (``x-amz-function-error: Unhandled``
and ``{"errorType", "errorMessage", "stackTrace"}``) so Step Functions ``Retry``/``Catch`` match them by
``errorType``: a timeout is ``Sandbox.Timedout``; a worker that dies mid-invocation (a crash, the OOM
killer, a SIGKILL) is ``Runtime.ExitError`` with "RequestId: ... Error: Runtime exited with error:
signal: killed", worded as Lambda words it.

Concurrency is bounded as Lambda bounds it, so memory is too (``settings.LocalSettings``): at most
``DROPSHIP_LOCAL_LAMBDA_CONCURRENCY`` (default 32) invocations run at once in the account, and at most
the function's reserved concurrency (``PutFunctionConcurrency``), else
``DROPSHIP_LOCAL_LAMBDA_FUNCTION_CONCURRENCY`` (default 16), per function. Warm workers never outnumber
the account limit (an idle one of another function is stopped to make room). An invocation over a limit
waits for a slot, up to ``DROPSHIP_LOCAL_LAMBDA_THROTTLE_WAIT_SECONDS`` (default 60), then is throttled
as Lambda throttles it: HTTP 429 ``TooManyRequestsException``, which Step Functions reports as
``Lambda.TooManyRequestsException``. The wait is local: AWS's account limit (1,000) is far above what a
laptop runs, so throttling at once would fail releases that AWS would run (a hundred releases polling
their endpoints ask more of two cores than they give, and the state machine retries a throttle only for
about half a minute). Asynchronous invocations (``Event``: EventBridge targets) wait for a slot as long
as it takes, as Lambda's event queue does; function errors are not retried (Lambda retries them twice
over minutes).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

from dropship.local import paths
from dropship.local.deploy import DeployedFunction
from dropship.local.processes import Supervisor
from dropship.local.settings import LocalSettings

log = logging.getLogger(__name__)

# Lambda gives init 10 s; a cold import of boto3 + Powertools + pydantic on a busy 2-core machine can take
# longer, and a slow local start should not look like a function bug.
INIT_TIMEOUT_S = 60.0
REGISTRATION_WAIT_S = 120.0
_WORKER_MODULE = "dropship.local.lambda_worker"

# How the Lambda runtime (Go's os/exec) words a runtime killed by a signal.
_SIGNAL_WORDS = {
    signal.SIGHUP: "hangup",
    signal.SIGINT: "interrupt",
    signal.SIGQUIT: "quit",
    signal.SIGILL: "illegal instruction",
    signal.SIGABRT: "aborted",
    signal.SIGBUS: "bus error",
    signal.SIGFPE: "floating point exception",
    signal.SIGKILL: "killed",
    signal.SIGSEGV: "segmentation fault",
    signal.SIGPIPE: "broken pipe",
    signal.SIGALRM: "alarm clock",
    signal.SIGTERM: "terminated",
}


@dataclass(frozen=True)
class Limits:
    """How many invocations may run at once, and how long one waits for a slot before it is throttled."""

    account: int = LocalSettings.lambda_concurrency
    function: int = LocalSettings.lambda_function_concurrency
    throttle_wait_s: float = LocalSettings.lambda_throttle_wait_s

    @classmethod
    def from_settings(cls, settings: LocalSettings) -> Limits:
        return cls(settings.lambda_concurrency, settings.lambda_function_concurrency, settings.lambda_throttle_wait_s)


@dataclass(eq=False)
class _Ticket:
    """An invocation waiting for a concurrency slot."""

    function: str
    limit: int


class Throttled(Exception):
    """No concurrency slot became free in time; ``reason`` is Lambda's ``Reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class _WorkerConfig:
    """Everything a warm worker was started with; a change (UpdateFunctionConfiguration) retires it."""

    function_name: str
    handler: str
    code_dir: str
    layer_dirs: tuple[str, ...]
    environment: tuple[tuple[str, str], ...]
    memory_size: int


class _LineReader:
    """Reads newline-terminated messages from a pipe with a deadline (no thread per read)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = b""

    def read_line(self, deadline: float) -> bytes | None:
        """The next line, or ``None`` at end of file. Raises ``TimeoutError`` at the deadline."""
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            ready, _, _ = select.select([self._fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(self._fd, 65536)
            if not chunk:
                return None
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line


class _Worker:
    def __init__(self, config: _WorkerConfig, env: dict[str, str], log_path: Path, supervisor: Supervisor) -> None:
        self.config = config
        self.supervisor = supervisor
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log_file:
            self.process: subprocess.Popen[bytes] = supervisor.spawn(
                [sys.executable, "-m", _WORKER_MODULE],
                kind="lambda",
                name=config.function_name,
                cwd=config.code_dir,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log_file,
            )
        assert self.process.stdout is not None
        self._reader = _LineReader(self.process.stdout.fileno())
        self.initialised = False
        self.last_used = time.monotonic()

    def _read(self, deadline: float) -> dict[str, Any] | None:
        line = self._reader.read_line(deadline)
        return None if line is None else json.loads(line)

    def init(self) -> dict[str, Any] | None:
        """Wait for the handler import. ``None`` when ready, else Lambda's init error payload."""
        message = self._read(time.monotonic() + INIT_TIMEOUT_S)
        if message is None:
            return {"errorType": "Runtime.ExitError", "errorMessage": exit_message(self.exit_code())}
        if not message.get("ready"):
            return dict(message.get("error") or {})
        self.initialised = True
        return None

    def call(self, request: dict[str, Any], timeout_s: float) -> dict[str, Any] | None:
        """One invocation. Returns the reply, ``None`` if the process died. Raises ``TimeoutError``."""
        assert self.process.stdin is not None
        try:
            self.process.stdin.write((json.dumps(request) + "\n").encode())
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            return None
        return self._read(time.monotonic() + timeout_s)

    def exit_code(self) -> int:
        """The dead worker's exit status (killing it if it is somehow still there)."""
        try:
            return self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.process.wait()

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        self.supervisor.terminate(self.process, grace_s=0)
        self._close_pipes()

    def stop(self) -> None:
        """End a healthy worker by closing its stdin (it leaves its request loop), else kill it."""
        if self.process.poll() is None and self.process.stdin is not None:
            try:
                self.process.stdin.close()
                self.process.wait(timeout=2)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.kill()

    def _close_pipes(self) -> None:
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def exit_message(code: int) -> str:
    """Lambda's words for a runtime that exited: ``Runtime exited with error: signal: killed``."""
    if code < 0:
        try:
            words = _SIGNAL_WORDS.get(signal.Signals(-code)) or signal.Signals(-code).name
        except ValueError:
            words = f"signal {-code}"
        return f"Runtime exited with error: signal: {words}"
    return f"Runtime exited with error: exit status {code}"


def _python_path_entries(directory: Path) -> list[str]:
    """A layer's importable roots: ``python/`` (Lambda's layer layout) when present, else the dir itself."""
    python_dir = directory / "python"
    return [str(python_dir)] if python_dir.is_dir() else [str(directory)]


class LambdaRuntime:
    """Runs deployed functions from source. One per local stack; ``install`` plugs it into moto."""

    def __init__(
        self,
        *,
        endpoint_url: str,
        region: str,
        log_dir: Path,
        supervisor: Supervisor,
        limits: Limits | None = None,
        idle_timeout_s: float = LocalSettings.lambda_idle_s,
    ) -> None:
        self.endpoint_url = endpoint_url
        self.region = region
        self.log_dir = Path(log_dir)
        self.supervisor = supervisor
        self.limits = limits or Limits()
        self._functions: dict[str, DeployedFunction] = {}
        # Set once the deployment's functions are known: moto reports the stack complete a moment before,
        # and an upload in that moment must still run the real handler.
        self._registered = threading.Event()
        self._idle: dict[str, list[_Worker]] = {}
        self._busy: set[_Worker] = set()
        self._running: Counter[str] = Counter()  # invocations holding a concurrency slot, per function
        self._waiting: list[_Ticket] = []  # invocations waiting for one, in order of arrival
        self._slots = threading.Condition()
        self._lock = threading.Lock()
        self._stopped = False
        self.idle_timeout_s = idle_timeout_s
        self._wake = threading.Event()
        self._reaper = threading.Thread(target=self._reap_idle, name="lambda-idle-reaper", daemon=True)
        self._reaper.start()

    # -- registry -----------------------------------------------------------------------------------
    def register(self, functions: Mapping[str, DeployedFunction]) -> None:
        with self._lock:
            self._functions.update(functions)
        self._registered.set()

    @property
    def functions(self) -> dict[str, DeployedFunction]:
        return dict(self._functions)

    def log_path(self, function_name: str) -> Path:
        return paths.lambda_log(function_name, self.log_dir)

    # -- moto seam ----------------------------------------------------------------------------------
    def install(self, patches: ExitStack) -> None:
        from moto.awslambda_simple.models import LambdaSimpleBackend
        from moto.core.exceptions import JsonRESTError

        class TooManyRequestsException(JsonRESTError):
            code = 429

            def __init__(self, reason: str) -> None:
                super().__init__("TooManyRequestsException", "Rate Exceeded.")
                self.description = json.dumps(
                    {
                        "__type": "TooManyRequestsException",
                        "message": "Rate Exceeded.",
                        "Reason": reason,
                        "Type": "User",
                    }
                )

        runtime = self
        original_invoke = LambdaSimpleBackend.invoke

        def invoke(
            backend: Any, function_name: str, qualifier: str | None, body: Any, headers: Any, response_headers: Any
        ) -> bytes | str | None:
            fn = backend.get_function(function_name, qualifier)
            if fn.function_name not in runtime._functions:
                runtime._registered.wait(timeout=REGISTRATION_WAIT_S)
            if fn.function_name not in runtime._functions:
                log.warning("function %s has no local source; moto's canned answer is returned", fn.function_name)
                return original_invoke(backend, function_name, qualifier, body, headers, response_headers)
            invocation_type = (headers or {}).get("X-Amz-Invocation-Type", "RequestResponse")
            if invocation_type == "DryRun":
                return b""
            if invocation_type == "Event":
                threading.Thread(
                    target=runtime.invoke_event,
                    args=(fn, body),
                    name=f"lambda-event-{fn.function_name}",
                    daemon=True,
                ).start()
                return b""
            try:
                payload = runtime.invoke_function(fn, body, response_headers)
            except Throttled as exc:
                raise TooManyRequestsException(exc.reason) from None
            response_headers["Content-Length"] = str(len(payload))
            return payload

        patches.enter_context(mock.patch.object(LambdaSimpleBackend, "invoke", invoke))

    # -- concurrency --------------------------------------------------------------------------------
    def function_limit(self, fn: Any) -> int:
        """The function's reserved concurrency if it has one, else the local per-function limit."""
        reserved = getattr(fn, "reserved_concurrency", None)
        if reserved not in (None, ""):
            return min(int(reserved), self.limits.account)
        return min(self.limits.function, self.limits.account)

    def _acquire(self, fn: Any, wait_s: float | None) -> None:
        """Take a concurrency slot for ``fn``, waiting up to ``wait_s`` (forever if None); else ``Throttled``.

        Waiters are served in order of arrival, skipping those whose own function is at its limit.
        """
        ticket = _Ticket(fn.function_name, self.function_limit(fn))
        deadline = None if wait_s is None else time.monotonic() + wait_s
        with self._slots:
            self._waiting.append(ticket)
            try:
                while True:
                    if self._stopped:
                        raise RuntimeError("local Lambda runtime is stopped")
                    reason = self._refusal(ticket)
                    if reason is None:
                        self._running[ticket.function] += 1
                        return
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        log.warning("%s: throttled (%s)", fn.function_name, reason)
                        raise Throttled(reason)
                    self._slots.wait(remaining)
            finally:
                self._waiting.remove(ticket)
                self._slots.notify_all()

    def _refusal(self, ticket: _Ticket) -> str | None:
        """Why ``ticket`` may not run yet (Lambda's throttling ``Reason``), or None: hand out the free slots
        to the waiters in order, each while its function is under its limit."""
        free = self.limits.account - self._running.total()
        room: dict[str, int] = {}
        for waiter in self._waiting:
            left = room.setdefault(waiter.function, waiter.limit - self._running[waiter.function])
            if free > 0 and left > 0:
                if waiter is ticket:
                    return None
                free -= 1
                room[waiter.function] = left - 1
            elif waiter is ticket:
                break
        if room.get(ticket.function, 0) <= 0:
            return "ReservedFunctionConcurrentInvocationLimitExceeded"
        return "ConcurrentInvocationLimitExceeded"

    def _release(self, function_name: str) -> None:
        with self._slots:
            self._running[function_name] -= 1
            self._slots.notify_all()

    def running(self, function_name: str | None = None) -> int:
        """Invocations holding a slot now (of one function, or all)."""
        with self._slots:
            return self._running[function_name] if function_name else self._running.total()

    def waiting(self) -> int:
        """Invocations waiting for a slot now."""
        with self._slots:
            return len(self._waiting)

    # -- invocation ---------------------------------------------------------------------------------
    def _config(self, fn: Any) -> _WorkerConfig:
        spec = self._functions[fn.function_name]
        return _WorkerConfig(
            function_name=fn.function_name,
            handler=str(fn.handler or spec.handler),
            code_dir=str(spec.code_dir),
            layer_dirs=tuple(str(d) for d in spec.layer_dirs),
            environment=tuple(sorted((str(k), str(v)) for k, v in (fn.environment_vars or {}).items())),
            memory_size=int(fn.memory_size or 128),
        )

    def worker_environment(self, config: _WorkerConfig) -> dict[str, str]:
        """A clean environment: no caller credentials or profile, the function's variables, the stack."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_")) and k != "PYTHONPATH"}
        env.update(
            {
                "AWS_SAM_LOCAL": "true",  # what `sam local` sets; Powertools Tracer disables itself on it
                "AWS_XRAY_CONTEXT_MISSING": "IGNORE_ERROR",
                "TZ": "UTC",
            }
        )
        env.update(dict(config.environment))
        python_path = [config.code_dir]
        for layer_dir in config.layer_dirs:
            python_path += _python_path_entries(Path(layer_dir))
        env.update(
            {
                "AWS_ENDPOINT_URL": self.endpoint_url,
                "AWS_ACCESS_KEY_ID": "local",
                "AWS_SECRET_ACCESS_KEY": "local",
                "AWS_SESSION_TOKEN": "local",
                "AWS_DEFAULT_REGION": self.region,
                "AWS_REGION": self.region,
                "AWS_LAMBDA_FUNCTION_NAME": config.function_name,
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.memory_size),
                "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{config.function_name}",
                "AWS_LAMBDA_LOG_STREAM_NAME": f"{time.strftime('%Y/%m/%d')}/[$LATEST]{uuid.uuid4().hex}",
                "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
                "LAMBDA_TASK_ROOT": config.code_dir,
                "_HANDLER": config.handler,
                "PYTHONPATH": os.pathsep.join(python_path),
                "PYTHONUNBUFFERED": "1",
                "PYTHONDONTWRITEBYTECODE": "1",  # never litter the project's function directories
            }
        )
        return env

    def _checkout(self, config: _WorkerConfig) -> _Worker:
        """A warm worker for ``config``, else a new one (the caller holds a concurrency slot)."""
        retired: list[_Worker] = []
        with self._lock:
            if self._stopped:
                raise RuntimeError("local Lambda runtime is stopped")
            idle = self._idle.setdefault(config.function_name, [])
            while idle:
                worker = idle.pop()
                if worker.config == config and worker.alive():
                    self._busy.add(worker)
                    return worker
                retired.append(worker)
            retired += self._excess_idle(keep=self.limits.account - 1)  # room for the new one
        self._retire(retired)
        worker = _Worker(config, self.worker_environment(config), self.log_path(config.function_name), self.supervisor)
        with self._lock:
            self._busy.add(worker)
        return worker

    def _excess_idle(self, keep: int) -> list[_Worker]:
        """Take the coldest idle workers out of the pools until at most ``keep`` workers remain (under the lock).

        Never more warm workers than the account may run at once, even after its limit was lowered.
        """
        taken: list[_Worker] = []
        while len(self._busy) + sum(len(pool) for pool in self._idle.values()) > max(0, keep):
            idle = [w for pool in self._idle.values() for w in pool]
            if not idle:
                break
            coldest = min(idle, key=lambda w: w.last_used)
            self._idle[coldest.config.function_name].remove(coldest)
            taken.append(coldest)
        return taken

    @staticmethod
    def _retire(workers: list[_Worker]) -> None:
        for worker in workers:
            threading.Thread(target=worker.stop, daemon=True).start()

    def _checkin(self, worker: _Worker, reusable: bool) -> None:
        with self._lock:
            self._busy.discard(worker)
            if reusable and not self._stopped:
                worker.last_used = time.monotonic()
                self._idle.setdefault(worker.config.function_name, []).append(worker)
                self._retire(self._excess_idle(keep=self.limits.account))
                return
        worker.kill()

    def invoke_event(self, fn: Any, body: Any) -> None:
        """An asynchronous invocation: waits for a slot as Lambda's event queue does; errors are logged."""
        try:
            headers: dict[str, str] = {}
            self.invoke_function(fn, body, headers, wait_forever=True)
            if headers.get("x-amz-function-error"):
                log.warning(
                    "%s: asynchronous invocation failed (see %s)", fn.function_name, self.log_path(fn.function_name)
                )
        except RuntimeError:  # the stack stopped first
            pass
        except Exception:
            log.exception("%s: asynchronous invocation failed", fn.function_name)

    def invoke_function(
        self, fn: Any, body: Any, response_headers: dict[str, str], *, wait_forever: bool = False
    ) -> bytes:
        """Run one invocation of moto function ``fn``; sets ``x-amz-function-error`` on failure.

        Waits for a concurrency slot up to the throttle wait (or for ever), else raises ``Throttled``.
        """
        request_id = str(uuid.uuid4())
        if isinstance(body, bytes | bytearray):
            body = body.decode("utf-8")
        try:
            event = json.loads(body) if body else {}
        except ValueError:
            response_headers["x-amz-function-error"] = "Unhandled"
            return _error_bytes("Runtime.UnmarshalError", "Could not parse request body into json")

        self._acquire(fn, None if wait_forever else self.limits.throttle_wait_s)
        try:
            return self._run(fn, event, request_id, response_headers)
        finally:
            self._release(fn.function_name)

    def _run(self, fn: Any, event: Any, request_id: str, response_headers: dict[str, str]) -> bytes:
        timeout_s = float(fn.timeout or 3)
        config = self._config(fn)
        worker = self._checkout(config)
        reusable = False
        try:
            if not worker.initialised:
                init_error = worker.init()
                if init_error is not None:
                    response_headers["x-amz-function-error"] = "Unhandled"
                    return json.dumps(init_error).encode()
            deadline_ms = int((time.time() + timeout_s) * 1000)
            request = {
                "event": event,
                "request_id": request_id,
                "deadline_ms": deadline_ms,
                "function_arn": fn.function_arn,
            }
            try:
                reply = worker.call(request, timeout_s)
            except TimeoutError:
                log.warning("%s: task timed out after %.2f seconds", fn.function_name, timeout_s)
                self._append_log(config.function_name, f"{request_id} Task timed out after {timeout_s:.2f} seconds")
                response_headers["x-amz-function-error"] = "Unhandled"
                return _error_bytes(
                    "Sandbox.Timedout", f"RequestId: {request_id} Error: Task timed out after {timeout_s:.2f} seconds"
                )
            if reply is None:
                message = exit_message(worker.exit_code())
                log.warning("%s: %s", fn.function_name, message)
                self._append_log(config.function_name, f"RequestId: {request_id} Error: {message}")
                response_headers["x-amz-function-error"] = "Unhandled"
                return _error_bytes("Runtime.ExitError", f"RequestId: {request_id} Error: {message}")
            reusable = True
            if "error" in reply:
                response_headers["x-amz-function-error"] = "Unhandled"
                return json.dumps(reply["error"]).encode()
            return json.dumps(reply.get("result")).encode()
        finally:
            self._checkin(worker, reusable)

    def _append_log(self, function_name: str, line: str) -> None:
        try:
            with self.log_path(function_name).open("a", encoding="utf-8") as fh:
                fh.write(line + "\n")
        except OSError:
            pass

    # -- lifecycle ----------------------------------------------------------------------------------
    def _reap_idle(self) -> None:
        interval = min(10.0, max(0.1, self.idle_timeout_s / 2))
        while not self._wake.wait(interval):
            cutoff = time.monotonic() - self.idle_timeout_s
            with self._lock:
                expired = [w for pool in self._idle.values() for w in pool if w.last_used < cutoff]
                for pool in self._idle.values():
                    pool[:] = [w for w in pool if w not in expired]
            for worker in expired:
                worker.stop()

    def stop(self) -> None:
        """Kill every worker, idle or busy (a busy invocation then ends as ``Runtime.ExitError``).

        As Lambda ends execution environments: nothing is lost (their logs are unbuffered), and an
        interpreter shutting down politely takes a second per worker.
        """
        self._wake.set()
        with self._slots:
            self._stopped = True
            self._slots.notify_all()
        with self._lock:
            workers = [w for pool in self._idle.values() for w in pool] + list(self._busy)
            self._idle.clear()
        for worker in workers:
            worker.kill()

    def worker_count(self, function_name: str | None = None) -> int:
        with self._lock:
            workers = [w for pool in self._idle.values() for w in pool] + list(self._busy)
        return sum(
            1 for w in workers if w.alive() and (function_name is None or w.config.function_name == function_name)
        )


def _error_bytes(error_type: str, message: str) -> bytes:
    return json.dumps({"errorType": error_type, "errorMessage": message}).encode()

"""The Lambda seam: moto's ``Invoke`` runs the real handler in warm worker processes.

moto 5.2.5 without Docker (``LambdaSimpleBackend``) answers every invocation with canned bytes. Here
``invoke`` looks the function up in moto (environment, timeout, memory, handler as configured now) and
runs it from the source directory remembered at deploy time, in a pool of worker processes per function,
like Lambda's execution environments: one process per concurrent invocation, reused while warm, thrown
away after a timeout or a crash. Errors come back in Lambda's shape (``x-amz-function-error: Unhandled``
and ``{"errorType", "errorMessage", "stackTrace"}``) so Step Functions ``Retry``/``Catch`` match them by
exception name, a timeout as ``Sandbox.Timedout`` and a dead process as ``Runtime.ExitError``.
"""

from __future__ import annotations

import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

from dropship.local.deploy import DeployedFunction

log = logging.getLogger(__name__)

# Lambda gives init 10 s; a cold import of boto3 + Powertools + pydantic on a busy 2-core machine can take
# longer, and a slow local start should not look like a function bug.
INIT_TIMEOUT_S = 60.0
_WORKER_MODULE = "dropship.local.lambda_worker"
# Like Lambda reclaiming idle execution environments: a warm worker (~50 MB) unused this long is stopped.
IDLE_TIMEOUT_ENV = "DROPSHIP_LOCAL_LAMBDA_IDLE_SECONDS"
DEFAULT_IDLE_TIMEOUT_S = 300.0


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
    def __init__(self, config: _WorkerConfig, env: dict[str, str], log_path: Path) -> None:
        self.config = config
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", _WORKER_MODULE],
                cwd=config.code_dir,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log_file,
                start_new_session=True,  # a Ctrl-C in the terminal reaches the stack, which stops workers
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
            return _exit_error(self.process)
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

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            log.warning("lambda worker %s did not exit", self.process.pid)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()

    def stop(self) -> None:
        """End a healthy worker by closing its stdin (it leaves its request loop), else kill it."""
        if self.process.poll() is None and self.process.stdin is not None:
            try:
                self.process.stdin.close()
                self.process.wait(timeout=2)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.kill()


def _exit_error(process: subprocess.Popen[bytes]) -> dict[str, Any]:
    try:
        code = process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        code = process.wait()
    status = f"signal: {-code}" if code < 0 else f"exit status {code}"
    return {"errorType": "Runtime.ExitError", "errorMessage": f"Runtime exited with error: {status}"}


def _python_path_entries(directory: Path) -> list[str]:
    """A layer's importable roots: ``python/`` (Lambda's layer layout) when present, else the dir itself."""
    python_dir = directory / "python"
    return [str(python_dir)] if python_dir.is_dir() else [str(directory)]


REGISTRATION_WAIT_S = 120.0


class LambdaRuntime:
    """Runs deployed functions from source. One per local stack; ``install`` plugs it into moto."""

    def __init__(self, *, endpoint_url: str, region: str, run_dir: Path) -> None:
        self.endpoint_url = endpoint_url
        self.region = region
        self.log_dir = run_dir / "lambda"
        self._functions: dict[str, DeployedFunction] = {}
        # Set once the deployment's functions are known: moto reports the stack complete a moment before,
        # and an upload in that moment must still run the real handler.
        self._registered = threading.Event()
        self._idle: dict[str, list[_Worker]] = {}
        self._busy: set[_Worker] = set()
        self._lock = threading.Lock()
        self._stopped = False
        self.idle_timeout_s = float(os.environ.get(IDLE_TIMEOUT_ENV, DEFAULT_IDLE_TIMEOUT_S))
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
        return self.log_dir / f"{function_name}.log"

    # -- moto seam ----------------------------------------------------------------------------------
    def install(self, patches: ExitStack) -> None:
        from moto.awslambda_simple.models import LambdaSimpleBackend

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
                    target=runtime.invoke_function,
                    args=(fn, body, {}),
                    name=f"lambda-event-{fn.function_name}",
                    daemon=True,
                ).start()
                return b""
            payload = runtime.invoke_function(fn, body, response_headers)
            response_headers["Content-Length"] = str(len(payload))
            return payload

        patches.enter_context(mock.patch.object(LambdaSimpleBackend, "invoke", invoke))

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
        with self._lock:
            if self._stopped:
                raise RuntimeError("local Lambda runtime is stopped")
            idle = self._idle.setdefault(config.function_name, [])
            while idle:
                worker = idle.pop()
                if worker.config == config and worker.alive():
                    self._busy.add(worker)
                    return worker
                threading.Thread(target=worker.stop, daemon=True).start()
        worker = _Worker(config, self.worker_environment(config), self.log_path(config.function_name))
        with self._lock:
            self._busy.add(worker)
        return worker

    def _checkin(self, worker: _Worker, reusable: bool) -> None:
        with self._lock:
            self._busy.discard(worker)
            if reusable and not self._stopped:
                worker.last_used = time.monotonic()
                self._idle.setdefault(worker.config.function_name, []).append(worker)
                return
        worker.kill()

    def invoke_function(self, fn: Any, body: Any, response_headers: dict[str, str]) -> bytes:
        """Run one invocation of moto function ``fn``; sets ``x-amz-function-error`` on failure."""
        request_id = str(uuid.uuid4())
        if isinstance(body, bytes | bytearray):
            body = body.decode("utf-8")
        try:
            event = json.loads(body) if body else {}
        except ValueError:
            response_headers["x-amz-function-error"] = "Unhandled"
            return _error_bytes("Runtime.UnmarshalError", "Could not parse request body into json")

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
                exit_error = _exit_error(worker.process)
                response_headers["x-amz-function-error"] = "Unhandled"
                return _error_bytes("Runtime.ExitError", f"RequestId: {request_id} Error: {exit_error['errorMessage']}")
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
        """Stop every worker, idle or busy (a busy invocation then ends as ``Runtime.ExitError``)."""
        self._wake.set()
        with self._lock:
            self._stopped = True
            idle = [w for pool in self._idle.values() for w in pool]
            busy = list(self._busy)
            self._idle.clear()
        for worker in idle:
            worker.stop()
        for worker in busy:
            worker.kill()

    def worker_count(self, function_name: str | None = None) -> int:
        with self._lock:
            workers = [w for pool in self._idle.values() for w in pool] + list(self._busy)
        return sum(
            1 for w in workers if w.alive() and (function_name is None or w.config.function_name == function_name)
        )


def _error_bytes(error_type: str, message: str) -> bytes:
    return json.dumps({"errorType": error_type, "errorMessage": message}).encode()

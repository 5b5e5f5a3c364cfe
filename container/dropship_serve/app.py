"""The thin HTTP adapter: a Starlette app over the HTTP-free core, one `Runtime` per gunicorn worker.

Each worker answers `/ping` (503) as soon as it boots and loads the model on a background thread;
inference runs on a small thread pool so `/ping` never waits behind a prediction.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dropship_serve import logs
from dropship_serve.core import CUSTOM_ATTRIBUTES_HEADER, Handler, Invocation
from dropship_serve.errors import (
    BadRequestError,
    InvocationError,
    InvocationTimeoutError,
    ModelLoadError,
    ModelNotReadyError,
    PayloadTooLargeError,
)
from dropship_serve.settings import Settings
from dropship_serve.shared import SharedState

EXIT_MODEL_LOAD_FAILED = 3
"""gunicorn's WORKER_BOOT_ERROR: the master stops every worker and exits with this code."""

JSON = "application/json"


class _Job:
    __slots__ = ("abandoned", "finished", "started")

    def __init__(self) -> None:
        self.started = self.finished = self.abandoned = False


class Runtime:
    """One worker's model, readiness and inference threads.

    `shared` counts the workers that have loaded the model (created by the master before forking):
    /ping answers 200 only once every worker has, so no request waits behind a load.
    """

    def __init__(self, settings: Settings, shared: SharedState | None = None) -> None:
        self.settings = settings
        self.handler: Handler | None = None
        self._shared = shared
        self._all_loaded = False
        self.executor = ThreadPoolExecutor(settings.inference_threads, thread_name_prefix="inference")
        self._ready: asyncio.Event | None = None
        self._lock = threading.Lock()
        self._stuck = 0  # predictions still running after their request timed out
        self._log = logs.get_logger()

    @property
    def healthy(self) -> bool:
        return self.handler is not None and self.all_loaded and self._stuck < self.settings.inference_threads

    @property
    def all_loaded(self) -> bool:
        if not self._all_loaded:
            shared = self._shared
            self._all_loaded = shared is None or shared.loaded_workers.value >= self.settings.workers
        return self._all_loaded

    def start_loading(self) -> None:
        loop = asyncio.get_running_loop()
        self._ready = asyncio.Event()
        # A daemon thread: a worker told to stop while model_fn runs must not wait for it.
        threading.Thread(target=self._load, args=(loop,), name="model-loader", daemon=True).start()

    def _load(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            handler = Handler.load(self.settings)
        except ModelLoadError as exc:
            self._fail(str(exc), exc)
        except BaseException as exc:
            self._fail(f"loading the model failed: {type(exc).__name__}: {exc}", exc)
        else:
            loop.call_soon_threadsafe(self._loaded, handler)

    def _loaded(self, handler: Handler) -> None:
        if self._shared is not None:
            with self._shared.loaded_workers.get_lock():
                self._shared.loaded_workers.value += 1
        self.handler = handler
        assert self._ready is not None
        self._ready.set()

    def _fail(self, message: str, exc: BaseException) -> None:
        cause = exc.__cause__ or exc
        self._log.critical(
            message,
            exc_info=(type(cause), cause, cause.__traceback__),
            extra={"event": "model_load_failed", "model_dir": self.settings.model_dir},
        )
        if self._shared is not None:
            self._shared.record_failure(message)
        logs.flush()
        os._exit(EXIT_MODEL_LOAD_FAILED)

    async def wait_ready(self, timeout: float) -> Handler:
        if self.handler is not None:
            return self.handler
        assert self._ready is not None
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            raise ModelNotReadyError("the model is still loading") from None
        assert self.handler is not None
        return self.handler

    async def invoke(self, handler: Handler, body: bytes, headers: dict[str, str], accepts: list[str]) -> Invocation:
        job = _Job()
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self.executor, self._run, job, handler, body, headers, accepts)
        try:
            return await asyncio.wait_for(future, self.settings.timeout)
        except TimeoutError:
            with self._lock:
                job.abandoned = True
                if job.started and not job.finished:
                    self._stuck += 1
            self._log.error(
                "invocation timed out",
                extra={"event": "invocation_timeout", "timeout_s": self.settings.timeout, "stuck": self._stuck},
            )
            raise InvocationTimeoutError(
                f"the invocation took longer than SAGEMAKER_MODEL_SERVER_TIMEOUT={self.settings.timeout} s"
            ) from None

    def _run(self, job: _Job, handler: Handler, body: bytes, headers: dict[str, str], accepts: list[str]) -> Any:
        with self._lock:
            if job.abandoned:  # timed out while queued
                return None
            job.started = True
        try:
            return handler.invoke(body, headers, accepts)
        finally:
            with self._lock:
                job.finished = True
                if job.abandoned:
                    self._stuck -= 1


def create_app(settings: Settings, shared: SharedState | None = None) -> Starlette:
    runtime = Runtime(settings, shared)
    logging.captureWarnings(True)  # warnings from user code become structured log lines too
    log = logs.get_logger()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        runtime.start_loading()
        yield
        runtime.executor.shutdown(wait=False, cancel_futures=True)

    async def ping(request: Request) -> Response:
        if runtime.healthy:
            return Response(b'{"status":"healthy"}', headers={"content-type": JSON})
        if runtime.handler is None:
            return error_response(ModelNotReadyError("the model is loading"))
        if not runtime.all_loaded:
            return error_response(ModelNotReadyError("the other workers are still loading the model"))
        return error_response(ModelNotReadyError("every inference thread is stuck in a timed-out prediction"))

    async def execution_parameters(request: Request) -> Response:
        handler = runtime.handler
        if handler is not None and handler.execution_parameters_fn is not None:
            try:
                output = await asyncio.get_running_loop().run_in_executor(
                    runtime.executor, handler.execution_parameters
                )
            except InvocationError as error:
                return error_response(error)
            return Response(output.body, status_code=output.status, headers={"content-type": output.content_type})
        body = {
            "MaxConcurrentTransforms": settings.workers * settings.inference_threads,
            "BatchStrategy": "MULTI_RECORD",
            "MaxPayloadInMB": settings.max_payload_bytes // (1024 * 1024),
        }
        return Response(json.dumps(body).encode(), headers={"content-type": JSON})

    async def invocations(request: Request) -> Response:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in request.scope["headers"]}
        try:
            _check_length(headers.get("content-length"), settings.max_payload_bytes)
            handler = await runtime.wait_ready(settings.timeout)
            accepts = handler.check_request(headers)
            body = await _read_body(request, settings.max_payload_bytes)
            result = await runtime.invoke(handler, body, headers, accepts)
        except InvocationError as error:
            if error.status < 500:
                log.info(
                    "invocation rejected",
                    extra={"event": "invocation_rejected", "status": error.status, "reason": error.message},
                )
            return error_response(error, close=isinstance(error, PayloadTooLargeError))
        response_headers = {"content-type": result.content_type}
        if result.custom_attributes is not None:
            response_headers[CUSTOM_ATTRIBUTES_HEADER] = result.custom_attributes
        return Response(result.body, status_code=result.status, headers=response_headers)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        error = InvocationError(f"{request.method} {request.url.path}: {exc.detail}")
        error.status, error.code = exc.status_code, exc.detail.replace(" ", "")
        return error_response(error)

    routes = [
        Route("/ping", ping, methods=["GET"]),
        Route("/invocations", invocations, methods=["POST"]),
        Route("/execution-parameters", execution_parameters, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error})
    app.state.runtime = runtime
    return app


def error_response(error: InvocationError, close: bool = False) -> Response:
    headers = {"content-type": JSON}
    if close:
        headers["connection"] = "close"
    return Response(json.dumps(error.to_json()).encode(), status_code=error.status, headers=headers)


def _check_length(value: str | None, limit: int) -> None:
    if value is None:
        return
    try:
        length = int(value)
    except ValueError:
        raise BadRequestError(f"Content-Length {value!r} is not a number") from None
    if length > limit:
        raise PayloadTooLargeError(f"the request body is {length} bytes; the limit is {limit} bytes (6 MiB)")


async def _read_body(request: Request, limit: int) -> bytes:
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"the request body is over the limit of {limit} bytes (6 MiB)")
        chunks.append(chunk)
    return b"".join(chunks)

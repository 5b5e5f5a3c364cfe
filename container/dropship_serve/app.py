"""The thin HTTP adapter: a Starlette app in the one HTTP process, over a pool of inference processes.

The app answers `/ping` (503) as soon as it boots while the inference processes load the model
(`pool.py` says why the work is split this way); every prediction runs in an inference process, never
in this one, so `/ping` never waits behind a prediction.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dropship_serve import logs
from dropship_serve.core import CUSTOM_ATTRIBUTES_HEADER
from dropship_serve.errors import (
    EXIT_MODEL_LOAD_FAILED,
    BadRequestError,
    InvocationError,
    ModelNotReadyError,
    PayloadTooLargeError,
)
from dropship_serve.pool import InferencePool
from dropship_serve.settings import Settings
from dropship_serve.shared import SharedState

JSON = "application/json"


def create_app(settings: Settings, shared: SharedState | None = None) -> Starlette:
    log = logs.get_logger()

    def failed(message: str) -> None:
        """The model cannot be loaded (the inference process logged why): stop the whole server."""
        pool.kill()
        if shared is not None:
            shared.record_failure(message)
        logs.flush()
        os._exit(EXIT_MODEL_LOAD_FAILED)

    pool = InferencePool(settings, failed)
    logging.captureWarnings(True)  # warnings become structured log lines too

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await pool.start()
        yield
        await pool.close()

    async def ping(request: Request) -> Response:
        if pool.healthy:
            return Response(b'{"status":"healthy"}', headers={"content-type": JSON})
        if not pool.loaded:
            return error_response(ModelNotReadyError("the model is loading"))
        return error_response(ModelNotReadyError("every inference thread is stuck in a timed-out prediction"))

    async def execution_parameters(request: Request) -> Response:
        if pool.loaded and pool.has_execution_parameters_fn:
            try:
                output = await pool.execution_parameters()
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
            check = await pool.wait_loaded(settings.timeout)
            accepts = check.check_request(headers)
            body = await _read_body(request, settings.max_payload_bytes)
            result = await pool.invoke(body, headers, accepts)
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
    app.state.pool = pool
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

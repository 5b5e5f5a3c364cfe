"""Errors with an HTTP meaning. User code may raise these (`from dropship_serve import BadRequestError`)."""

from __future__ import annotations

EXIT_MODEL_LOAD_FAILED = 3
"""The server's exit status when the model cannot be loaded (gunicorn's WORKER_BOOT_ERROR: the master
stops and exits with it)."""


class InvocationError(Exception):
    """An invocation failed with a known status; the message is safe to send to the client."""

    status = 500
    code = "InternalError"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_json(self) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.code, "message": self.message}}


class BadRequestError(InvocationError, ValueError):
    """The request body cannot be decoded or is not valid input for the model (400)."""

    status = 400
    code = "BadRequest"


class UnsupportedAcceptError(InvocationError):
    """None of the media types the client accepts can be produced (406)."""

    status = 406
    code = "NotAcceptable"


class PayloadTooLargeError(InvocationError):
    """The request body is larger than the 6 MiB limit (413)."""

    status = 413
    code = "PayloadTooLarge"


class UnsupportedContentTypeError(InvocationError):
    """The request's Content-Type cannot be decoded (415)."""

    status = 415
    code = "UnsupportedMediaType"


class ModelError(InvocationError):
    """User code (or the model) failed; details are in the log under `error_id`, never in the response."""

    status = 500
    code = "ModelError"

    def __init__(self, message: str, error_id: str) -> None:
        super().__init__(message)
        self.error_id = error_id


class ModelNotReadyError(InvocationError):
    status = 503
    code = "ModelNotReady"


class InvocationTimeoutError(InvocationError):
    status = 504
    code = "Timeout"


class ModelLoadError(Exception):
    """The model cannot be served: bad user code, failing model_fn or warm-up, unmet requirements."""

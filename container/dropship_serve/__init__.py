"""dropship's SageMaker inference server: SageMaker-style hooks behind a Starlette app on gunicorn."""

from dropship_serve.core import Context
from dropship_serve.errors import (
    BadRequestError,
    InvocationError,
    UnsupportedAcceptError,
    UnsupportedContentTypeError,
)

__all__ = [
    "BadRequestError",
    "Context",
    "InvocationError",
    "UnsupportedAcceptError",
    "UnsupportedContentTypeError",
]

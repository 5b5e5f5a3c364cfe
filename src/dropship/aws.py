"""Creating AWS clients and telling transient AWS failures from real ones."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError, ReadTimeoutError

from dropship.errors import TransientAwsError

# boto3 already retries these with backoff; what is left after that is retried by the state machine.
_TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestThrottled",
        "SlowDown",
        "ServiceUnavailable",
        "InternalFailure",
        "InternalServerError",
        "InternalError",
        "RequestTimeout",
    }
)

CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, user_agent_extra="dropship/0.1")


def client(service: str, **kwargs: Any) -> Any:
    """A boto3 client with standard retries. ``AWS_ENDPOINT_URL`` (the local stack) is honoured by boto3."""
    return boto3.client(service, config=CLIENT_CONFIG, **kwargs)  # type: ignore[call-overload]


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, EndpointConnectionError | ConnectionClosedError | ReadTimeoutError):
        return True
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return error_code(exc) in _TRANSIENT_CODES or status >= 500
    return False


@contextmanager
def transient_as_retryable() -> Iterator[None]:
    """Re-raise throttling and 5xx failures as ``TransientAwsError`` so the state machine retries them by name."""
    try:
        yield
    except Exception as exc:
        if is_transient(exc):
            raise TransientAwsError(f"{type(exc).__name__}: {exc}") from exc
        raise

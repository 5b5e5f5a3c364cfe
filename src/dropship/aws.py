"""Creating AWS clients and telling transient AWS failures from real ones."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotocoreConnectionError

from dropship import __version__
from dropship.errors import TransientAwsError

# What botocore's standard retry mode (the mode CLIENT_CONFIG sets) retries, as listed in
# botocore.retries.standard; a unit test keeps these equal to botocore's own lists. boto3 retries them
# first; what still fails after that is retried by the state machine.
THROTTLING_ERROR_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    }
)
TRANSIENT_ERROR_CODES = frozenset({"RequestTimeout", "RequestTimeoutException", "PriorRequestNotComplete"})
TRANSIENT_STATUS_CODES = frozenset({500, 502, 503, 504})
THROTTLING_STATUS_CODES = frozenset({429})
# Connection failures (refused, reset, DNS, TLS, proxy, connect timeout) and HTTP client failures (read
# timeout, connection closed mid-response).
TRANSIENT_EXCEPTIONS = (BotocoreConnectionError, HTTPClientError)

CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, user_agent_extra=f"dropship/{__version__}")


def client(service: str, **kwargs: Any) -> Any:
    """A boto3 client with standard retries. ``AWS_ENDPOINT_URL`` (the local stack) is honoured by boto3."""
    return boto3.client(service, config=CLIENT_CONFIG, **kwargs)  # type: ignore[call-overload]


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def conditional_write(call: Any, **kwargs: Any) -> bool:
    """Run a conditional DynamoDB write; False when its condition did not hold."""
    try:
        call(**kwargs)
        return True
    except ClientError as exc:
        if error_code(exc) == "ConditionalCheckFailedException":
            return False
        raise


def resume_once(call: Any) -> bool:
    """Send a task token's success or failure; False when it was already used or timed out (a duplicate
    event or a second look), which is no error."""
    try:
        call()
        return True
    except ClientError as exc:
        if error_code(exc) in ("TaskTimedOut", "TaskDoesNotExist", "InvalidToken"):
            return False
        raise


def is_transient(exc: BaseException) -> bool:
    """Whether botocore's standard retry mode would retry this failure (throttling, 5xx, a dropped connection)."""
    if isinstance(exc, TRANSIENT_EXCEPTIONS):
        return True
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        code = error_code(exc)
        return (
            code in THROTTLING_ERROR_CODES
            or code in TRANSIENT_ERROR_CODES
            or status in TRANSIENT_STATUS_CODES
            or status in THROTTLING_STATUS_CODES
        )
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


def model_error(exc: ClientError) -> tuple[int, str] | None:
    """``(the container's status, its message)`` of InvokeEndpoint's ``ModelError``; None for any other error.

    botocore puts ModelError's modelled fields (``OriginalStatusCode``, ``OriginalMessage``) at the top of
    the parsed response, beside ``Error``.
    """
    if error_code(exc) != "ModelError":
        return None
    details: dict[str, Any] = {**exc.response.get("Error", {}), **exc.response}
    status = int(str(details.get("OriginalStatusCode") or 500))
    return status, str(details.get("OriginalMessage") or details.get("Message", ""))

"""Typed failures of a release.

Every contract error code (CONTRACT.md section 2) has exactly one exception class here, defined in the
contract's order: ``ERROR_CODES`` is read from the classes. The class name ends in ``Error`` and is what
Lambda reports as ``errorType``, so the state machine retries and catches by class name; ``code`` is what
users see as the execution's ``Error`` and in ``Release Failed`` events.
"""

from __future__ import annotations


class DropshipError(Exception):
    """A release failure with a contract error code and a message a person can act on."""

    code = "InternalError"


class InvalidKeyError(DropshipError):
    code = "InvalidKey"


class InvalidManifestError(DropshipError):
    code = "InvalidManifest"


class InvalidArtifactError(DropshipError):
    code = "InvalidArtifact"


class ArtifactTooLargeError(DropshipError):
    code = "ArtifactTooLarge"


class UnsafeArtifactError(DropshipError):
    code = "UnsafeArtifact"


class ImageNotAllowedError(DropshipError):
    code = "ImageNotAllowed"


class EndpointFailedError(DropshipError):
    code = "EndpointFailed"


class EndpointTimeoutError(DropshipError):
    code = "EndpointTimeout"


class SmokeTestFailedError(DropshipError):
    code = "SmokeTestFailed"


class AliasConflictError(DropshipError):
    code = "AliasConflict"


class AlarmTriggeredError(DropshipError):
    """The watch after the alias moved saw an alarm or a guard trip, and put the alias back."""

    code = "AlarmTriggered"


class AbortedError(DropshipError):
    """The execution was stopped or timed out; a reaper compensates it."""

    code = "Aborted"


class InternalError(DropshipError):
    code = "InternalError"


class TransientAwsError(Exception):
    """An AWS call that failed in a way worth retrying (throttling, 5xx) after boto3's own retries.

    Not a contract code: the state machine retries it by name with backoff, and if it keeps failing
    the release fails as ``InternalError``.
    """


# The contract's codes, in its order: one per subclass, in the order they are defined above.
ERROR_CODES: tuple[str, ...] = tuple(cls.code for cls in DropshipError.__subclasses__())

_BY_CLASS_NAME: dict[str, str] = {cls.__name__: cls.code for cls in DropshipError.__subclasses__()}


def code_for(error_name: str | None) -> str:
    """Map the name of a failed state's error (an exception class or a States.* error) to a contract code."""
    return _BY_CLASS_NAME.get(error_name or "", "InternalError")

"""The S3 drop layout and the names derived from it (CONTRACT.md sections 1 and 2)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from dropship.errors import InvalidKeyError

MODELS_PREFIX = "models/"
RELEASED_PREFIX = "released/"
ARTIFACT_NAME = "model.tar.gz"
MANIFEST_NAME = "release.json"
# S3 user metadata on a tarball naming the release.json version that applies to it (the CLI sets it), or
# NO_MANIFEST for none at all (CONTRACT.md section 1).
MANIFEST_PIN = "dropship-manifest-version"
NO_MANIFEST = "none"

MODEL_PATTERN = r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$"
MODEL_MAX_LENGTH = 32
VERSION_PATTERN = r"^[A-Za-z0-9](?:[A-Za-z0-9.\-]{0,18}[A-Za-z0-9])?$"
_MODEL_RE = re.compile(MODEL_PATTERN)
_VERSION_RE = re.compile(VERSION_PATTERN)
_SAGEMAKER_NAME_MAX = 63


@dataclass(frozen=True)
class DropKey:
    """``models/<model>/<version>/model.tar.gz``, parsed and checked."""

    model: str
    version: str

    @property
    def artifact_key(self) -> str:
        return f"{MODELS_PREFIX}{self.model}/{self.version}/{ARTIFACT_NAME}"

    @property
    def manifest_key(self) -> str:
        return f"{MODELS_PREFIX}{self.model}/{self.version}/{MANIFEST_NAME}"


def check_model_name(model: str) -> str:
    if len(model) > MODEL_MAX_LENGTH or not _MODEL_RE.fullmatch(model):
        raise InvalidKeyError(
            f"model name {model!r} is not allowed: use 1-32 lowercase letters, digits and single hyphens, "
            "starting with a letter and ending with a letter or digit (e.g. 'churn', 'fraud-v2')"
        )
    return model


def check_version(version: str) -> str:
    if not _VERSION_RE.fullmatch(version):
        raise InvalidKeyError(
            f"version {version!r} is not allowed: use 1-20 letters, digits, '.' and '-', starting and ending "
            "with a letter or digit (e.g. '3', '1.4.0', '2026-11-25')"
        )
    return version


def is_drop_key(key: str) -> bool:
    """True for keys the release rule fires on: under ``models/`` and ending in ``/model.tar.gz``."""
    return key.startswith(MODELS_PREFIX) and key.endswith("/" + ARTIFACT_NAME)


def parse_drop_key(key: str) -> DropKey:
    """Parse a drop key, raising ``InvalidKeyError`` with the exact reason when it is malformed."""
    if not is_drop_key(key):
        raise InvalidKeyError(f"key {key!r} is not of the form models/<model>/<version>/{ARTIFACT_NAME}")
    parts = key[len(MODELS_PREFIX) :].split("/")
    if len(parts) != 3:
        raise InvalidKeyError(
            f"key {key!r} must be exactly models/<model>/<version>/{ARTIFACT_NAME} (no extra folders)"
        )
    model, version, _ = parts
    return DropKey(check_model_name(model), check_version(version))


def guess_model_version(key: str) -> tuple[str, str]:
    """Best-effort model and version from any key, for reporting a failure of a malformed key."""
    parts = key.split("/")
    model = parts[1] if len(parts) > 2 else ""
    version = parts[2] if len(parts) > 3 else ""
    return model[:64], version[:64]


def released_key(model: str, sha256: str) -> str:
    """The immutable, content-addressed copy that SageMaker loads."""
    return f"{RELEASED_PREFIX}{model}/{sha256}/{ARTIFACT_NAME}"


def resource_name(model: str, version: str, execution_arn: str) -> str:
    """Name of the SageMaker model, endpoint config and endpoint of one release.

    The short hash is of the execution, so names are stable across Lambda retries of one execution
    (a retried create finds its own resource) and unique between executions (a re-upload of the same
    version never collides with the endpoint still serving the previous upload).
    """
    short_hash = hashlib.sha256(execution_arn.encode()).hexdigest()[:8]
    safe_version = re.sub(r"[^A-Za-z0-9]+", "-", version).strip("-") or "v"
    name = f"{model}-{safe_version}-{short_hash}"
    if len(name) > _SAGEMAKER_NAME_MAX:
        room = _SAGEMAKER_NAME_MAX - len(model) - len(short_hash) - 2
        name = f"{model}-{safe_version[:room].rstrip('-')}-{short_hash}"
    return name

"""The server's configuration, read once from the environment and validated."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
"""SageMaker's limit for real-time request and response bodies (6 MiB)."""


class SettingsError(ValueError):
    """An environment variable has a value the server cannot use."""


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Settings:
    model_dir: str = "/opt/ml/model"
    host: str = "0.0.0.0"  # noqa: S104  (SageMaker requires listening on every interface)
    port: int = 8080
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    timeout: int = 60
    inference_threads: int = 1
    program: str = "inference.py"
    program_explicit: bool = False
    code_dirs: tuple[str, ...] = ()
    default_accept: str = "application/json"
    install_requirements: bool = True
    allow_package_sources: bool = False
    log_level: str = "info"
    access_log: bool = False
    graceful_timeout: int = 20
    worker_class: str = "uvicorn"
    max_payload_bytes: int = MAX_PAYLOAD_BYTES

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and validate every setting; raises SettingsError naming the variable at fault."""
        env = os.environ if env is None else env
        model_dir = env.get("SM_MODEL_DIR") or "/opt/ml/model"
        program = env.get("SAGEMAKER_PROGRAM", "").strip()
        submit_dir = env.get("SAGEMAKER_SUBMIT_DIRECTORY", "").strip()
        baked = submit_dir if submit_dir and "://" not in submit_dir else "/opt/ml/code"
        return cls(
            model_dir=model_dir,
            host=env.get("SAGEMAKER_BIND_TO_HOST") or "0.0.0.0",  # noqa: S104
            port=_int(env, "SAGEMAKER_BIND_TO_PORT", 8080, 1, 65535),
            workers=_int(env, "SAGEMAKER_MODEL_SERVER_WORKERS", os.cpu_count() or 1, 1, 256),
            timeout=_int(env, "SAGEMAKER_MODEL_SERVER_TIMEOUT", 60, 1, 3600),
            inference_threads=_int(env, "DROPSHIP_INFERENCE_THREADS", 1, 1, 256),
            program=program or "inference.py",
            program_explicit=bool(program),
            code_dirs=(os.path.join(model_dir, "code"), baked),
            default_accept=_media_type(env, "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", "application/json"),
            install_requirements=_bool(env, "DROPSHIP_INSTALL_REQUIREMENTS", True),
            allow_package_sources=_bool(env, "DROPSHIP_ALLOW_PACKAGE_SOURCES", False),
            log_level=_choice(env, "DROPSHIP_LOG_LEVEL", "info", ("debug", "info", "warning", "error")),
            access_log=_bool(env, "DROPSHIP_ACCESS_LOG", False),
            graceful_timeout=_int(env, "DROPSHIP_GRACEFUL_TIMEOUT", 20, 1, 3600),
            worker_class=_choice(env, "DROPSHIP_WORKER_CLASS", "uvicorn", ("uvicorn", "asgi")),
        )


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None
    if not low <= value <= high:
        raise SettingsError(f"{name}={value} is outside {low}..{high}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise SettingsError(f"{name}={raw!r} is not a boolean (use 1 or 0)")


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = env.get(name, "").strip().lower() or default
    if raw not in choices:
        raise SettingsError(f"{name}={raw!r} is not one of {', '.join(choices)}")
    return raw


def _media_type(env: Mapping[str, str], name: str, default: str) -> str:
    raw = env.get(name, "").split(";")[0].strip().lower() or default
    if raw.count("/") != 1 or "*" in raw:
        raise SettingsError(f"{name}={raw!r} is not a concrete media type such as application/json")
    return raw

"""The local stack's settings, from ``DROPSHIP_LOCAL_*`` environment variables read once when it starts."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

ENV_NAMES = {
    "endpoint_startup_timeout_s": "DROPSHIP_LOCAL_ENDPOINT_STARTUP_TIMEOUT",
    "endpoint_startup_delay_s": "DROPSHIP_LOCAL_ENDPOINT_STARTUP_DELAY",
    "endpoint_install_timeout_s": "DROPSHIP_LOCAL_ENDPOINT_INSTALL_TIMEOUT",
    "lambda_idle_s": "DROPSHIP_LOCAL_LAMBDA_IDLE_SECONDS",
    "lambda_concurrency": "DROPSHIP_LOCAL_LAMBDA_CONCURRENCY",
    "lambda_function_concurrency": "DROPSHIP_LOCAL_LAMBDA_FUNCTION_CONCURRENCY",
    "lambda_throttle_wait_s": "DROPSHIP_LOCAL_LAMBDA_THROTTLE_WAIT_SECONDS",
    "alarm_evaluation_s": "DROPSHIP_LOCAL_ALARM_EVALUATION_SECONDS",
    "capture_flush_s": "DROPSHIP_LOCAL_CAPTURE_FLUSH_SECONDS",
}


class SettingsError(ValueError):
    """A ``DROPSHIP_LOCAL_*`` variable has a value the stack cannot use; the message names it."""


@dataclass(frozen=True)
class LocalSettings:
    # An endpoint's process must answer GET /ping within this many seconds, or the endpoint is Failed.
    endpoint_startup_timeout_s: float = 120.0
    # Seconds an endpoint stays Creating before its process starts (SageMaker takes minutes; for benchmarks).
    endpoint_startup_delay_s: float = 0.0
    # More seconds to start for an endpoint whose model has code/requirements.txt: serve runs pip first.
    endpoint_install_timeout_s: float = 600.0
    # A warm Lambda worker (~50 MB) unused this long is stopped, as Lambda reclaims idle environments.
    lambda_idle_s: float = 300.0
    # Lambda invocations running at once in the account, and per function without reserved concurrency.
    lambda_concurrency: int = 32
    lambda_function_concurrency: int = 16
    # How long an invocation over a limit waits for a slot before it is throttled (HTTP 429). Long: the
    # limits stand in for memory, not for AWS's (1,000 at once), and a release must not fail on them.
    lambda_throttle_wait_s: float = 60.0
    # CloudWatch evaluates metric alarms about once a minute; locally every few seconds, so a watched release
    # rolls back soon after its bad period ends (0: no evaluation, alarms change only by SetAlarmState).
    alarm_evaluation_s: float = 2.0
    # Data capture files are written to S3 this often (SageMaker takes a minute or two).
    capture_flush_s: float = 2.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LocalSettings:
        env = os.environ if env is None else env
        values: dict[str, float | int] = {}
        for field in fields(cls):
            name = ENV_NAMES[field.name]
            raw = env.get(name, "").strip()
            if not raw:
                continue
            whole = field.type in (int, "int")
            try:
                value: float | int = int(raw) if whole else float(raw)
            except ValueError:
                raise SettingsError(f"{name}={raw!r} is not {'a whole number' if whole else 'a number'}") from None
            if value < (1 if whole else 0):
                raise SettingsError(f"{name}={raw!r} must be {'at least 1' if whole else 'zero or more'}")
            values[field.name] = value
        return cls(**values)  # type: ignore[arg-type]

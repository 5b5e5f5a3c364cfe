"""Each function's configuration, read from its environment once and validated.

A misconfigured function fails on its first invocation with a message naming the variable, instead of
deep inside a release. Nothing is read at import time.
"""

from __future__ import annotations

import functools
import os
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from dropship.errors import InternalError

SettingsT = TypeVar("SettingsT", bound=BaseModel)


class Settings(BaseModel):
    """Base for a function's environment: fields are upper-cased environment variable names."""

    model_config = ConfigDict(defer_build=True, frozen=True, extra="ignore")


@functools.cache
def load(settings_type: type[SettingsT]) -> SettingsT:
    values = {name: os.environ[name.upper()] for name in settings_type.model_fields if name.upper() in os.environ}
    try:
        return settings_type.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(f"{str(e['loc'][0]).upper()}: {e['msg']}" for e in exc.errors())
        raise InternalError(f"function is misconfigured: {problems}") from exc


def csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())

"""Events as AWS documents them (``tests/local/events/``) and a comparison of shapes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

EVENTS = Path(__file__).parent / "events"


def documented(name: str) -> Any:
    return json.loads((EVENTS / name).read_text())


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def assert_shaped_like(actual: Any, example: Any, path: str = "$") -> None:
    """``actual`` has every field of the documented ``example``, each of the same JSON type."""
    if isinstance(example, dict):
        assert isinstance(actual, dict), f"{path}: {actual!r} is not an object"
        missing = sorted(set(example) - set(actual))
        assert not missing, f"{path}: missing {missing} (has {sorted(actual)})"
        for key, value in example.items():
            assert_shaped_like(actual[key], value, f"{path}.{key}")
    elif isinstance(example, list):
        assert isinstance(actual, list), f"{path}: {actual!r} is not a list"
        for index, item in enumerate(actual):
            assert_shaped_like(item, example[0], f"{path}[{index}]")
    else:
        assert _json_type(actual) == _json_type(example), f"{path}: {actual!r} is not a {_json_type(example)}"

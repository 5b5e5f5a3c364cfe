"""A Mermaid picture of a state machine, generated from its ASL (the README's diagram; a test keeps it current).

A Parallel state is drawn as a composite state holding its branches. Usage:
``python -m dropship.diagram statemachine/release.asl.json``
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _id(name: str) -> str:
    return "".join(ch for ch in name.title() if ch.isalnum())


def edges(name: str, state: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``(source, target, label)`` of every transition out of a state."""
    found: list[tuple[str, str, str]] = []
    for choice in state.get("Choices", []):
        value = next((v for k, v in choice.items() if k.endswith(("Equals", "Path")) and k != "Variable"), "")
        found.append((name, choice["Next"], str(value).lower() if isinstance(value, bool) else str(value)))
    if "Default" in state:
        found.append((name, state["Default"], "otherwise"))
    if "Next" in state:
        found.append((name, state["Next"], ""))
    for catch in state.get("Catch", []):
        found.append((name, catch["Next"], "on error"))
    return found


def _lines(machine: dict[str, Any], indent: str) -> list[str]:
    lines = [f"{indent}[*] --> {_id(machine['StartAt'])}"]
    for name, state in machine["States"].items():
        lines.append(f"{indent}{_id(name)}: {name}")
        for branch in state.get("Branches", []):
            lines.append(f"{indent}state {_id(name)} {{")
            lines.extend(_lines(branch, indent + "    "))
            lines.append(f"{indent}}}")
    for name, state in machine["States"].items():
        for source, target, label in edges(name, state):
            suffix = f": {label}" if label else ""
            lines.append(f"{indent}{_id(source)} --> {_id(target)}{suffix}")
        if state["Type"] in ("Succeed", "Fail") or state.get("End"):
            lines.append(f"{indent}{_id(name)} --> [*]")
    return lines


def mermaid(asl: dict[str, Any]) -> str:
    return "\n".join(["stateDiagram-v2", *_lines(asl, "    ")]) + "\n"


def main(argv: list[str]) -> int:
    path = Path(argv[1] if len(argv) > 1 else "statemachine/release.asl.json")
    sys.stdout.write(mermaid(json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))

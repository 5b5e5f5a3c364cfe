"""A Mermaid picture of a state machine, generated from its ASL (the README's diagram; a test keeps it current).

Usage: ``python -m dropship.diagram statemachine/release.asl.json``
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _id(name: str) -> str:
    return "".join(ch for ch in name.title() if ch.isalnum())


def _edges(name: str, state: dict[str, Any]) -> list[tuple[str, str, str]]:
    edges: list[tuple[str, str, str]] = []
    for choice in state.get("Choices", []):
        value = next((v for k, v in choice.items() if k.endswith(("Equals", "Path")) and k != "Variable"), "")
        edges.append((name, choice["Next"], str(value).lower() if isinstance(value, bool) else str(value)))
    if "Default" in state:
        edges.append((name, state["Default"], "otherwise"))
    if "Next" in state:
        edges.append((name, state["Next"], ""))
    for catch in state.get("Catch", []):
        edges.append((name, catch["Next"], "on error"))
    return edges


def mermaid(asl: dict[str, Any]) -> str:
    lines = ["stateDiagram-v2", f"    [*] --> {_id(asl['StartAt'])}"]
    for name in asl["States"]:
        lines.append(f"    {_id(name)}: {name}")
    seen = set()
    for name, state in asl["States"].items():
        for source, target, label in _edges(name, state):
            edge = (source, target, label)
            if edge in seen:
                continue
            seen.add(edge)
            suffix = f": {label}" if label else ""
            lines.append(f"    {_id(source)} --> {_id(target)}{suffix}")
        if state["Type"] in ("Succeed", "Fail") or state.get("End"):
            lines.append(f"    {_id(name)} --> [*]")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    path = Path(argv[1] if len(argv) > 1 else "statemachine/release.asl.json")
    sys.stdout.write(mermaid(json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))

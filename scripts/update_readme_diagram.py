"""Rewrite the Mermaid picture in README.md from statemachine/release.asl.json."""

import json
import re
from pathlib import Path

from dropship.diagram import mermaid

ROOT = Path(__file__).resolve().parent.parent
readme = ROOT / "README.md"
diagram = mermaid(json.loads((ROOT / "statemachine" / "release.asl.json").read_text()))
text = readme.read_text()
updated = re.sub(r"```mermaid\n.*?```", lambda _: f"```mermaid\n{diagram}```", text, count=1, flags=re.S)
readme.write_text(updated)
print("README.md diagram is", "unchanged" if updated == text else "updated")

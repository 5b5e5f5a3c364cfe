"""Installing and removing the seams: attribute replacements on moto classes and modules.

moto's backends are process-wide, so are these patches; ``Patches.undo`` puts every original back
so a stopped local stack leaves moto as it found it.
"""

from __future__ import annotations

from typing import Any

_MISSING = object()


class Patches:
    """A stack of ``setattr`` replacements that can be undone in reverse order."""

    def __init__(self) -> None:
        self._undo: list[tuple[Any, str, Any]] = []

    def replace(self, owner: Any, name: str, value: Any) -> Any:
        """Set ``owner.name = value``; return the attribute it replaces (for wrappers to call)."""
        original = owner.__dict__.get(name, _MISSING) if isinstance(owner, type) else getattr(owner, name, _MISSING)
        current = getattr(owner, name, None)
        setattr(owner, name, value)
        self._undo.append((owner, name, original))
        return current

    def undo(self) -> None:
        while self._undo:
            owner, name, original = self._undo.pop()
            if original is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, original)

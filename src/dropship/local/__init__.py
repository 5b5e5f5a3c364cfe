"""The local stack: an emulated AWS account (moto in server mode plus dropship's seams) that deploys the
project's real ``template.yaml`` and runs its state machine, Lambda code and inference container.

``LocalStack`` is the one entry point, used by the integration tests and ``dropship local up``
(``python -m dropship.local``). Importing this package imports nothing beyond the standard library:
``dropship.local.paths`` and ``dropship.local.processes`` serve the command line without the ``local``
extra, and the names below are loaded on first use (moto itself only when a stack starts).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dropship.local.deploy import DeployedFunction, DeployError, Deployment
    from dropship.local.ports import free_port
    from dropship.local.stack import LocalStack, LocalStackError

__all__ = ["DeployError", "DeployedFunction", "Deployment", "LocalStack", "LocalStackError", "free_port"]

_HOMES = {
    "DeployError": "dropship.local.deploy",
    "DeployedFunction": "dropship.local.deploy",
    "Deployment": "dropship.local.deploy",
    "LocalStack": "dropship.local.stack",
    "LocalStackError": "dropship.local.stack",
    "free_port": "dropship.local.ports",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)

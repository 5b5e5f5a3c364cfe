"""Installing a model's `code/requirements.txt` at start-up (skipped when already satisfied)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib
import importlib.metadata
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator

from dropship_serve.errors import ModelLoadError
from dropship_serve.logs import get_logger

PIP_TIMEOUT_S = 900


def unsatisfied(path: str) -> list[str]:
    """The lines of a requirements file not already met by installed distributions.

    Lines that are options, URLs or paths cannot be checked and count as unsatisfied.
    """
    try:
        from packaging.requirements import InvalidRequirement, Requirement
    except ImportError:  # pragma: no cover - packaging comes with gunicorn
        return ["(packaging is not installed: cannot check)"]
    missing = []
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = raw.split(" #")[0].strip()
            if not line or line.startswith("#"):
                continue
            try:
                req = Requirement(line)
            except InvalidRequirement:
                missing.append(line)
                continue
            if req.url or (req.marker is not None and not req.marker.evaluate()):
                if req.url:
                    missing.append(line)
                continue
            if _canonical(req.name) in STAND_INS:
                continue
            versions = _installed_versions(req.name)
            if not any(req.specifier.contains(version, prereleases=True) for version in versions):
                missing.append(line)
    return missing


SAME_PACKAGE = {"xgboost": ("xgboost-cpu",)}
"""Distributions that install the same importable package: the image's `xgboost-cpu` is `import xgboost`."""

STAND_INS = frozenset({"sagemaker-containers", "sagemaker-xgboost-container"})
"""Met by dropship's stand-ins (dropship_serve/compat), as the framework images have them preinstalled:
sagemaker-xgboost-container is not published, and sagemaker-containers pins Flask 1.1.1 and builds a C
extension."""


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _installed_versions(name: str) -> list[str]:
    versions = []
    for distribution in (name, *SAME_PACKAGE.get(_canonical(name), ())):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions.append(importlib.metadata.version(distribution))
    return versions


def ensure_installed(path: str, install: bool) -> None:
    """Make the requirements importable: nothing if satisfied, else `pip install -r` (one worker at a time)."""
    log = get_logger()
    missing = unsatisfied(path)
    if not missing:
        log.info("requirements already satisfied", extra={"event": "requirements_satisfied", "path": path})
        return
    if not install:
        log.warning(
            "requirements not installed (DROPSHIP_INSTALL_REQUIREMENTS=0)",
            extra={"event": "requirements_skipped", "path": path, "unsatisfied": missing},
        )
        return
    digest = hashlib.sha256(os.path.abspath(path).encode()).hexdigest()[:16]
    lock_path = os.path.join(tempfile.gettempdir(), f"dropship-requirements-{digest}.lock")
    with open(lock_path, "w") as lock, _locked(lock.fileno()):
        missing = unsatisfied(path)  # another worker may have installed them while we waited
        if not missing:
            return
        log.info("installing requirements", extra={"event": "requirements_install", "path": path})
        command = [sys.executable, "-m", "pip", "install", "--no-input", "--disable-pip-version-check"]
        try:
            done = subprocess.run(
                [*command, "-r", path], capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired:
            raise ModelLoadError(f"pip install -r {path} took more than {PIP_TIMEOUT_S} s") from None
        if done.returncode != 0:
            tail = (done.stdout + done.stderr).strip().splitlines()[-20:]
            raise ModelLoadError(f"pip install -r {path} failed: " + " | ".join(tail))
    importlib.invalidate_caches()
    log.info("requirements installed", extra={"event": "requirements_installed", "path": path})


@contextlib.contextmanager
def _locked(fd: int) -> Iterator[None]:
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)

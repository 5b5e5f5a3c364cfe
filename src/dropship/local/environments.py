"""Python environments of their own for local endpoints whose model has ``code/requirements.txt``.

The image installs a model's requirements into its own virtualenv at start-up; locally the same
``serve`` does it into a virtualenv made for the model, never into the developer's. One environment per
hash of (the requirements file, the container's pinned ``requirements.txt``, the serving interpreter and
its packages), kept under the cache dir (``<state>/cache/environments``, which ``dropship local down``
keeps): a later endpoint with the same file finds its requirements met, and ``serve`` runs no pip.

An environment is created without pip (milliseconds) and sees the serving interpreter's packages, what
the image provides, through a ``.pth`` file: after its own ``site-packages``, so what the model's
requirements install comes first. ``python -m pip`` in it is the serving environment's pip, installing
into the environment (``sys.prefix``); pip never uninstalls what lies outside it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

SEED_FILE = "_dropship_serving.pth"
_SITE_PATHS = "import json, sysconfig; p = sysconfig.get_paths(); print(json.dumps([p['purelib'], p['platlib']]))"


class EnvironmentCreationError(RuntimeError):
    """An environment could not be created; the message says why."""


class ModelEnvironments:
    """Creates (once) and finds the environment of a requirements file for a serving interpreter."""

    def __init__(self, cache_dir: Path, pinned_requirements: Path) -> None:
        self.root = Path(cache_dir) / "environments"
        self.pinned_requirements = Path(pinned_requirements)
        self._seeds: dict[str, list[str]] = {}
        self._lock = threading.Lock()

    def python_for(self, requirements: Path, interpreter: str) -> str:
        """The python of the environment for ``requirements`` and ``interpreter``, created if there is none."""
        try:
            content = requirements.read_bytes()
        except OSError as exc:
            raise EnvironmentCreationError(f"cannot read {requirements.name}: {exc}") from exc
        with self._lock:
            home = self.root / self.key(content, interpreter)
            if not (home / "pyvenv.cfg").is_file():
                self._create(home, interpreter)
        return str(home / "bin" / "python")

    def key(self, requirements: bytes, interpreter: str) -> str:
        pinned = self.pinned_requirements.read_bytes() if self.pinned_requirements.is_file() else b""
        digest = hashlib.sha256()
        for part in (
            requirements,
            pinned,
            os.path.realpath(interpreter).encode(),
            *map(str.encode, self.seed(interpreter)),
        ):
            digest.update(hashlib.sha256(part).digest())
        return digest.hexdigest()[:24]

    def seed(self, interpreter: str) -> list[str]:
        """The serving interpreter's ``site-packages`` (what the image provides)."""
        if interpreter not in self._seeds:
            try:
                out = subprocess.run(
                    [interpreter, "-c", _SITE_PATHS], capture_output=True, text=True, timeout=60, check=True
                ).stdout
            except (OSError, subprocess.SubprocessError) as exc:
                raise EnvironmentCreationError(f"cannot ask {interpreter} where its packages are: {exc}") from exc
            self._seeds[interpreter] = list(dict.fromkeys(json.loads(out)))
        return self._seeds[interpreter]

    def _create(self, home: Path, interpreter: str) -> None:
        """A virtualenv without pip, seeded; built beside ``home`` and renamed into place whole."""
        self.root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(home, ignore_errors=True)  # never a whole one here (they appear by rename): a leftover
        building = Path(tempfile.mkdtemp(prefix=f".{home.name}-", dir=self.root))
        try:
            subprocess.run(
                [interpreter, "-m", "venv", "--without-pip", str(building)],
                capture_output=True,
                text=True,
                timeout=120,
                check=True,
            )
            (site,) = (building / "lib").glob("python*/site-packages")
            (site / SEED_FILE).write_text("".join(f"{path}\n" for path in self.seed(interpreter)))
            try:
                building.rename(home)
            except OSError:
                if not (home / "pyvenv.cfg").is_file():  # else another stack made the same one meanwhile
                    raise
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            detail = exc.stderr.strip() if isinstance(exc, subprocess.CalledProcessError) else str(exc)
            raise EnvironmentCreationError(f"cannot create the model's Python environment: {detail}") from exc
        finally:
            shutil.rmtree(building, ignore_errors=True)

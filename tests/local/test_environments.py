"""Python environments of their own for models with code/requirements.txt, cached by the file's hash."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from dropship.local.environments import EnvironmentCreationError, ModelEnvironments

PINNED = Path(__file__).resolve().parents[2] / "container" / "requirements.txt"


def _requirements(tmp_path: Path, text: str, name: str = "requirements.txt") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_one_environment_per_requirements_file_created_once(tmp_path: Path) -> None:
    environments = ModelEnvironments(tmp_path / "cache", PINNED)
    first = _requirements(tmp_path, "inflection==0.5.1\n", "a.txt")
    same = _requirements(tmp_path, "inflection==0.5.1\n", "b.txt")
    other = _requirements(tmp_path, "inflection==0.5.0\n", "c.txt")

    # When two endpoints with the same file start at once
    found: list[str] = []

    def start(path: Path) -> None:
        found.append(environments.python_for(path, sys.executable))

    threads = [threading.Thread(target=start, args=(path,)) for path in (first, same)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then they share one environment; another file has its own
    assert len(set(found)) == 1
    another = environments.python_for(other, sys.executable)
    assert another != found[0]
    made = sorted(p.name for p in (tmp_path / "cache" / "environments").iterdir())
    assert made == sorted(Path(python).parents[1].name for python in (found[0], another))  # nothing half-built
    # and a second look finds it without creating anything
    config = Path(found[0]).parents[1] / "pyvenv.cfg"
    created = config.stat().st_mtime_ns
    assert environments.python_for(first, sys.executable) == found[0]
    assert config.stat().st_mtime_ns == created


def test_the_environment_sees_the_serving_packages_after_its_own(tmp_path: Path) -> None:
    python = ModelEnvironments(tmp_path / "cache", PINNED).python_for(_requirements(tmp_path, "six\n"), sys.executable)
    probe = "import json, sys, sklearn; print(json.dumps([sys.prefix, sys.path, sklearn.__file__]))"
    prefix, path, sklearn_file = json.loads(
        subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True, env={}).stdout
    )
    assert prefix == str(Path(python).parents[1])  # pip installs here, not into the serving environment
    own = next(i for i, entry in enumerate(path) if entry.startswith(prefix) and entry.endswith("site-packages"))
    serving = path.index(next(p for p in sys.path if p.endswith("site-packages")))
    assert own < serving
    assert not sklearn_file.startswith(prefix)  # what the image provides comes from the serving environment


def test_a_leftover_without_its_config_is_replaced(tmp_path: Path) -> None:
    environments = ModelEnvironments(tmp_path / "cache", PINNED)
    requirements = _requirements(tmp_path, "six\n")
    home = tmp_path / "cache" / "environments" / environments.key(requirements.read_bytes(), sys.executable)
    (home / "lib").mkdir(parents=True)  # what a crash could have left
    python = environments.python_for(requirements, sys.executable)
    assert (home / "pyvenv.cfg").is_file() and python == str(home / "bin" / "python")


def test_an_interpreter_that_cannot_make_one_is_a_clear_error(tmp_path: Path) -> None:
    environments = ModelEnvironments(tmp_path / "cache", PINNED)
    with pytest.raises(EnvironmentCreationError, match="where its packages are"):
        environments.python_for(_requirements(tmp_path, "six\n"), str(tmp_path / "no-python"))
    with pytest.raises(EnvironmentCreationError, match="cannot read"):
        environments.python_for(tmp_path / "missing.txt", sys.executable)

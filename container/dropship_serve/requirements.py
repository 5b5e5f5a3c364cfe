"""A model's `code/requirements.txt`: read as pip reads it, checked, installed at start-up by `serve`.

Lines that change where packages come from (`--index-url`, `--extra-index-url`, `--find-links`,
`--trusted-host`, `--no-index`, direct URLs, VCS links, local paths, editable installs) are refused with
the file, the line and the option named, unless the model's environment has
`DROPSHIP_ALLOW_PACKAGE_SOURCES=true` (the stack's `AllowPackageSources` parameter sets it). Requirements
the environment already meets are not installed: a model whose requirements the image has starts
without network. A failed install is a `ModelLoadError` whose message starts with pip's own error line.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib
import importlib.metadata
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from packaging.requirements import InvalidRequirement, Requirement

from dropship_serve.errors import ModelLoadError
from dropship_serve.logs import get_logger

PIP_TIMEOUT_S = 900
ALLOW_SOURCES_VARIABLE = "DROPSHIP_ALLOW_PACKAGE_SOURCES"
ALLOW_SOURCES_HINT = (
    "refused because it changes where packages come from; the stack's AllowPackageSources parameter allows it"
)

SOURCE_OPTIONS = {
    "-i": "--index-url",
    "--index-url": "--index-url",
    "--extra-index-url": "--extra-index-url",
    "-f": "--find-links",
    "--find-links": "--find-links",
    "--trusted-host": "--trusted-host",
    "--no-index": "--no-index",
    "-e": "--editable",
    "--editable": "--editable",
}
"""Options that name a package source (the key as written, the value as reported)."""
INCLUDE_OPTIONS = {
    "-r": "requirement",
    "--requirement": "requirement",
    "-c": "constraint",
    "--constraint": "constraint",
}
_SHORT_WITH_VALUE = ("-i", "-f", "-e", "-r", "-c")  # pip also reads "-ihttps://..." and "-rbase.txt"
_VCS_PREFIXES = ("git+", "hg+", "svn+", "bzr+")
_ARCHIVE_SUFFIXES = (".whl", ".zip", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar")
_COMMENT = re.compile(r"(^|\s+)#.*$")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")

SAME_PACKAGE = {"xgboost": ("xgboost-cpu",)}
"""Distributions that install the same importable package: the image's `xgboost-cpu` is `import xgboost`."""

STAND_INS = frozenset({"sagemaker-containers", "sagemaker-xgboost-container"})
"""Met by dropship's stand-ins (dropship_serve/compat), as the framework images have them preinstalled:
sagemaker-xgboost-container is not published, and sagemaker-containers pins Flask 1.1.1 and builds a C
extension."""


class RefusedRequirements(ModelLoadError):
    """A requirements file names a package source the stack does not allow, or cannot be read."""


@dataclass(frozen=True)
class Line:
    """One logical line of a requirements file (continuations joined, comment removed)."""

    path: str
    number: int  # of its first physical line
    text: str


@dataclass
class RequirementsFile:
    """What pip would be asked to do, read from a requirements file and the files it includes."""

    # None: a URL or a path (allowed sources), or a line pip will say is not a requirement
    requirements: list[tuple[Line, Requirement | None]] = field(default_factory=list)
    options: list[Line] = field(default_factory=list)  # global options kept for pip (--pre, --prefer-binary)
    constraint_files: list[str] = field(default_factory=list)


def read(path: str, allow_sources: bool) -> RequirementsFile:
    """Read `path` (following `-r` and `-c`) as pip would; raises RefusedRequirements naming the line.

    Files are named from the parent of the file's directory: `<model>/code/requirements.txt` is
    `code/requirements.txt`.
    """
    root = os.path.dirname(os.path.dirname(os.path.abspath(path)))
    parsed = RequirementsFile()
    _read_into(parsed, os.path.abspath(path), allow_sources, root, seen=set())
    return parsed


def _read_into(parsed: RequirementsFile, path: str, allow_sources: bool, root: str, seen: set[str]) -> None:
    seen.add(path)
    for line in logical_lines(path):
        where = f"{os.path.relpath(line.path, root)} line {line.number}"
        if line.text.startswith("-"):
            _read_option(parsed, line, where, allow_sources, root, seen)
            continue
        requirement_text = _requirement_part(line.text)
        kind = _source_kind(requirement_text, os.path.dirname(path))
        if kind is not None:
            if not allow_sources:
                raise RefusedRequirements(f"{where}: {kind} {requirement_text!r} is {ALLOW_SOURCES_HINT}")
            parsed.requirements.append((line, None))
            continue
        try:
            parsed.requirements.append((line, Requirement(requirement_text)))
        except InvalidRequirement:
            parsed.requirements.append((line, None))  # pip says what is wrong with it


def _read_option(
    parsed: RequirementsFile, line: Line, where: str, allow_sources: bool, root: str, seen: set[str]
) -> None:
    try:
        tokens = shlex.split(line.text)
    except ValueError:
        tokens = line.text.split()
    name, _, value = tokens[0].partition("=")
    if not value and name[:2] in _SHORT_WITH_VALUE and len(name) > 2 and not name.startswith("--"):
        name, value = name[:2], name[2:]
    if not value and len(tokens) > 1:
        value = tokens[1]
    if name in SOURCE_OPTIONS:
        if not allow_sources:
            option = name if name == SOURCE_OPTIONS[name] else f"{name} ({SOURCE_OPTIONS[name]})"
            raise RefusedRequirements(f"{where}: {option} is {ALLOW_SOURCES_HINT}")
        beside = os.path.join(os.path.dirname(line.path), value)
        if SOURCE_OPTIONS[name] == "--find-links" and value and os.path.exists(beside):
            line = Line(line.path, line.number, f"--find-links {shlex.quote(beside)}")  # pip reads it so
        parsed.options.append(line)
    elif name in INCLUDE_OPTIONS:
        included = os.path.normpath(os.path.join(os.path.dirname(line.path), os.path.expanduser(value)))
        if _URL.match(value):
            if not allow_sources:
                raise RefusedRequirements(f"{where}: {name} with a URL is {ALLOW_SOURCES_HINT}")
            parsed.options.append(line)
        elif not os.path.isfile(included):
            raise RefusedRequirements(f"{where}: {name} {value}: no such file next to {os.path.basename(line.path)}")
        elif INCLUDE_OPTIONS[name] == "constraint":
            parsed.constraint_files.append(included)
        elif included not in seen:
            _read_into(parsed, included, allow_sources, root, seen)
    else:  # --pre, --prefer-binary, --only-binary, --require-hashes ...: pip judges them
        parsed.options.append(line)


def logical_lines(path: str) -> Iterator[Line]:
    """Non-empty lines without comments, `\\` continuations joined, numbered as pip joins and numbers them."""
    try:
        with open(path, encoding="utf-8") as f:
            physical = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise RefusedRequirements(f"cannot read {path}: {exc}") from None
    start, parts = 0, list[str]()
    for number, raw in enumerate(physical, start=1):
        if not parts:
            start = number
        if raw.endswith("\\") and not _COMMENT.match(raw):
            parts.append(raw.rstrip("\\"))
            continue
        parts.append(raw)
        text = _COMMENT.sub("", "".join(parts)).strip()
        parts = []
        if text:
            yield Line(path, start, text)
    text = _COMMENT.sub("", "".join(parts)).strip()
    if text:
        yield Line(path, start, text)


def _requirement_part(text: str) -> str:
    """A requirement line without its per-requirement options (`--hash=...`), split as pip splits it."""
    words = text.split(" ")
    for index, word in enumerate(words):
        if word.startswith("-"):
            return " ".join(words[:index]).strip()
    return text


def _source_kind(text: str, directory: str) -> str | None:
    """What package source a requirement names, if any: a URL, a VCS link, a local path."""
    if text.startswith(_VCS_PREFIXES):
        return "the VCS link"
    if _URL.match(text):
        return "the URL"
    if "@" in text:
        with contextlib.suppress(InvalidRequirement):
            if Requirement(text).url:
                return "the direct URL"
    local = os.path.join(directory, text)
    if (
        text.startswith((".", "/", "~"))
        or "/" in text.split(";")[0]
        or "\\" in text
        or text.lower().endswith(_ARCHIVE_SUFFIXES)
        or os.path.isfile(local)
        or any(os.path.isfile(os.path.join(local, name)) for name in ("setup.py", "pyproject.toml"))
    ):
        return "the local path"  # pip installs from the path itself, as it does for a project directory
    return None


def is_met(requirement: Requirement) -> bool:
    """Whether an installed distribution (or a stand-in) satisfies `requirement` here."""
    if requirement.marker is not None and not requirement.marker.evaluate():
        return True  # not for this interpreter or platform: pip skips it too
    if _canonical(requirement.name) in STAND_INS:
        return True
    versions = _installed_versions(requirement.name)
    return any(requirement.specifier.contains(version, prereleases=True) for version in versions)


def unsatisfied(path: str) -> list[str]:
    """The lines of a requirements file not already met by installed distributions.

    Lines that are URLs, paths or not requirements cannot be checked and count as unsatisfied.
    """
    return [line.text for line in _pending(read(path, allow_sources=True))]


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _installed_versions(name: str) -> list[str]:
    versions = []
    for distribution in (name, *SAME_PACKAGE.get(_canonical(name), ())):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions.append(importlib.metadata.version(distribution))
    return versions


def ensure_installed(path: str, install: bool, allow_sources: bool = False) -> None:
    """Make the requirements importable: nothing if they are met, else `pip install` of what is not.

    Raises RefusedRequirements for a refused package source and ModelLoadError (pip's error line first)
    for a failed install. One process installs into an environment at a time; the others wait for it.
    """
    log = get_logger()
    if not install:
        try:
            missing = unsatisfied(path)
        except RefusedRequirements as exc:  # an include that is missing: nothing is installed anyway
            missing = [str(exc)]
        if missing:
            log.warning(
                "requirements not installed (DROPSHIP_INSTALL_REQUIREMENTS=0)",
                extra={"event": "requirements_skipped", "path": path, "unsatisfied": missing},
            )
        return
    parsed = read(path, allow_sources)
    if not _pending(parsed):
        log.info("requirements already satisfied", extra={"event": "requirements_satisfied", "path": path})
        return
    digest = hashlib.sha256(sys.prefix.encode()).hexdigest()[:16]
    lock_path = os.path.join(tempfile.gettempdir(), f"dropship-requirements-{digest}.lock")
    with open(lock_path, "w") as lock, _locked(lock.fileno()):
        pending = _pending(parsed)  # another process may have installed them while we waited
        if not pending:
            log.info("requirements already satisfied", extra={"event": "requirements_satisfied", "path": path})
            return
        log.info(
            "installing requirements",
            extra={"event": "requirements_install", "path": path, "unsatisfied": [line.text for line in pending]},
        )
        started = time.monotonic()
        _pip_install(parsed, pending, path)
    importlib.invalidate_caches()
    log.info(
        "requirements installed",
        extra={"event": "requirements_installed", "path": path, "seconds": round(time.monotonic() - started, 3)},
    )


def _pending(parsed: RequirementsFile) -> list[Line]:
    return [line for line, requirement in parsed.requirements if requirement is None or not is_met(requirement)]


def _pip_install(parsed: RequirementsFile, pending: list[Line], path: str) -> None:
    """`pip install` the pending lines; the met ones are constraints, so pip does not change them.

    Met lines are not handed to pip as requirements: `xgboost==3.0.5` is met by `xgboost-cpu`, and the
    stand-ins are not installable, yet pip would try.
    """
    met = [(line, req) for line, req in parsed.requirements if req is not None and line not in pending]
    code_dir = os.path.dirname(os.path.abspath(path))
    with tempfile.TemporaryDirectory(prefix="dropship-requirements-") as scratch:
        wanted = os.path.join(scratch, "requirements.txt")
        kept = os.path.join(scratch, "constraints.txt")
        with open(wanted, "w", encoding="utf-8") as f:
            f.writelines(f"{line.text}\n" for line in [*parsed.options, *pending])
        with open(kept, "w", encoding="utf-8") as f:
            f.writelines(f"{constraint}\n" for constraint in _constraints(met))
        command = [sys.executable, "-m", "pip", "install", "--no-input", "--disable-pip-version-check"]
        command += ["-r", wanted, "-c", kept]
        for constraint_file in parsed.constraint_files:
            command += ["-c", constraint_file]
        try:
            done = subprocess.run(
                command, cwd=code_dir, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired:
            raise ModelLoadError(f"pip install -r {path} took more than {PIP_TIMEOUT_S} s") from None
    if done.returncode != 0:
        output = (done.stdout + "\n" + done.stderr).strip()
        last = output.splitlines()[-1] if output else ""
        get_logger().error(
            f"pip install failed: {last}", extra={"event": "requirements_install_failed", "output": output[-8000:]}
        )
        shown = os.path.relpath(path, os.path.dirname(code_dir))
        raise ModelLoadError(f"{pip_error_line(done.stderr or done.stdout)} (pip install -r {shown} failed)")


def _constraints(met: list[tuple[Line, Requirement]]) -> Iterator[str]:
    """Met requirements as constraint lines: name, versions and marker only (pip refuses extras there).
    Stand-ins are left out: pip would look them up."""
    for _, requirement in met:
        if _canonical(requirement.name) in STAND_INS or not requirement.specifier:
            continue
        marker = f"; {requirement.marker}" if requirement.marker is not None else ""
        yield f"{requirement.name}{requirement.specifier}{marker}"


def pip_error_line(output: str) -> str:
    """pip's own first error line (`ERROR: Could not find a version ...`), else its last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in lines:
        if line.startswith(("ERROR:", "error:")):
            return line
    return lines[-1] if lines else "pip failed without saying why"


@contextlib.contextmanager
def _locked(fd: int) -> Iterator[None]:
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)

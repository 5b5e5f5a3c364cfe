"""Turning a model folder into ``model.tar.gz``: relative names, regular files and folders only.

The tarball is reproducible (sorted members, fixed owner and times), so packing an unchanged folder
twice gives the same sha256.
"""

from __future__ import annotations

import gzip
import os
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dropship.cli.errors import CliError

TARBALL_SUFFIXES = (".tar.gz", ".tgz")
_GZIP_MAGIC = b"\x1f\x8b"


@contextmanager
def artifact(path: Path) -> Iterator[Path]:
    """The tarball to upload for PATH: a folder packed into a temporary file, or a ``.tar.gz`` as it is."""
    if path.is_dir():
        with tempfile.TemporaryDirectory(prefix="dropship-pack-") as tmp:
            tarball = Path(tmp) / "model.tar.gz"
            pack_directory(path, tarball)
            yield tarball
        return
    if not path.exists():
        raise CliError(f"{path} does not exist")
    if not path.is_file() or not path.name.endswith(TARBALL_SUFFIXES):
        raise CliError(f"{path} is neither a folder nor a .tar.gz file")
    with path.open("rb") as handle:
        if handle.read(2) != _GZIP_MAGIC:
            raise CliError(f"{path} is not gzip-compressed: pass the model folder, or a real .tar.gz")
    yield path


def pack_directory(root: Path, destination: Path) -> list[str]:
    """Write ``root``'s contents as a gzip tar to ``destination``; return the member names in order."""
    root = root.resolve()
    entries = sorted(_walk(root), key=lambda entry: entry[0].split("/"))
    if not entries:
        raise CliError(f"{root} is empty: put the model files (and code/inference.py, if any) in it")
    names = []
    with (
        destination.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as compressed,
        tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for name, source in entries:
            info = tar.gettarinfo(str(source), arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            info.mode = 0o755 if info.isdir() or info.mode & 0o111 else 0o644
            if info.isreg():
                with source.open("rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)
            names.append(name)
    return names


def _walk(root: Path) -> Iterator[tuple[str, Path]]:
    """``(member name, file to read)`` pairs; symlinks inside the folder are followed to files."""
    for directory, dirnames, filenames in os.walk(root):
        here = Path(directory)
        for name in [*dirnames, *filenames]:
            path = here / name
            relative = path.relative_to(root).as_posix()
            source = _checked(root, path, relative)
            yield relative, source


def _checked(root: Path, path: Path, relative: str) -> Path:
    if path.is_symlink():
        target = path.resolve()
        if not target.is_relative_to(root):
            raise CliError(f"refusing to pack {relative}: it is a symlink pointing outside the folder ({target})")
        if target.is_dir():
            raise CliError(f"refusing to pack {relative}: it is a symlink to a folder; copy the folder instead")
        if not target.is_file():
            raise CliError(f"refusing to pack {relative}: it is a broken symlink")
        return target
    mode = path.lstat().st_mode
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise CliError(f"refusing to pack {relative}: only regular files and folders can go into model.tar.gz")
    return path

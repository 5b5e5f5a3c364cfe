"""Turning a model folder into ``model.tar.gz``: relative names, regular files and folders only.

The tarball is reproducible (sorted members, fixed owner and times), so packing an unchanged folder
twice gives the same sha256. A ``release.json`` at the top of the folder is the release's manifest, not
part of the model, so it is set aside rather than packed.
"""

from __future__ import annotations

import gzip
import os
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from dropship.artifact import ArtifactLimits
from dropship.cli.errors import CliError
from dropship.errors import ArtifactTooLargeError
from dropship.names import ARTIFACT_NAME, MANIFEST_NAME

TARBALL_SUFFIXES = (".tar.gz", ".tgz")
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class Folder:
    """A model folder, checked and listed: what goes into model.tar.gz, and the manifest set aside."""

    root: Path
    entries: tuple[tuple[str, Path], ...]  # (member name, file to read), in archive order
    manifest: Path | None  # the folder's own release.json: the release's manifest, never packed

    @property
    def members(self) -> int:
        """Archive members, folders included (what MaxArtifactMembers counts)."""
        return len(self.entries)

    @property
    def files(self) -> int:
        return sum(1 for _, source in self.entries if source.is_file())

    @property
    def file_bytes(self) -> int:
        """Total size of the files (what MaxUncompressedBytes counts)."""
        return sum(source.stat().st_size for _, source in self.entries if source.is_file())


def read_source(path: Path) -> Folder | Path:
    """PATH checked: a folder to pack, or a ``.tar.gz`` file to upload as it is."""
    if path.is_dir():
        return read_folder(path)
    if not path.exists():
        raise CliError(f"{path} does not exist")
    if not path.is_file() or not path.name.endswith(TARBALL_SUFFIXES):
        raise CliError(f"{path} is neither a folder nor a .tar.gz file")
    with path.open("rb") as handle:
        if handle.read(2) != _GZIP_MAGIC:
            raise CliError(f"{path} is not gzip-compressed: pass the model folder, or a real .tar.gz")
    return path


def read_folder(root: Path) -> Folder:
    """List ``root`` for packing; refuses what cannot or should not go into the tarball."""
    root = root.resolve()
    entries = []
    manifest = None
    for name, source in _walk(root):
        if name == MANIFEST_NAME and source.is_file():
            manifest = source
            continue
        if name.rsplit("/", 1)[-1] == ARTIFACT_NAME and source.is_file():
            raise CliError(
                f"refusing to pack {root}: it holds {name}, a tarball left from an earlier packing; "
                f"remove it, or release that file itself (dropship release {root / name} ...)"
            )
        entries.append((name, source))
    if not entries:
        raise CliError(f"{root} is empty: put the model files (and code/inference.py, if any) in it")
    entries.sort(key=lambda entry: entry[0].split("/"))
    return Folder(root, tuple(entries), manifest)


def check_folder_limits(folder: Folder, limits: ArtifactLimits) -> None:
    """Refuse, before packing, a folder that Validate Artifact would refuse as too large."""
    if folder.members > limits.max_members:
        raise ArtifactTooLargeError(
            f"{folder.root} holds {folder.members} files and folders, over the stack's limit of "
            f"{limits.max_members} (stack parameter MaxArtifactMembers)"
        )
    if folder.file_bytes > limits.max_uncompressed_bytes:
        raise ArtifactTooLargeError(
            f"{folder.root} holds {format_size(folder.file_bytes)} of files, over the stack's limit of "
            f"{format_size(limits.max_uncompressed_bytes)} (stack parameter MaxUncompressedBytes)"
        )


def check_tarball_limit(tarball: Path, limits: ArtifactLimits) -> None:
    size = tarball.stat().st_size
    if size > limits.max_compressed_bytes:
        raise ArtifactTooLargeError(
            f"model.tar.gz is {format_size(size)}, over the stack's limit of "
            f"{format_size(limits.max_compressed_bytes)} (stack parameter MaxArtifactBytes)"
        )


@contextmanager
def artifact(source: Folder | Path) -> Iterator[Path]:
    """The tarball to upload: a folder packed into a temporary file, or the given ``.tar.gz`` as it is."""
    if isinstance(source, Folder):
        with tempfile.TemporaryDirectory(prefix="dropship-pack-") as tmp:
            tarball = Path(tmp) / ARTIFACT_NAME
            pack(source, tarball)
            yield tarball
        return
    yield source


def pack_directory(root: Path, destination: Path) -> list[str]:
    """Write ``root``'s contents as a gzip tar to ``destination``; return the member names in order."""
    return pack(read_folder(root), destination)


def pack(folder: Folder, destination: Path) -> list[str]:
    names = []
    with (
        destination.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as compressed,
        tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for name, source in folder.entries:
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


def format_size(size: int) -> str:
    """``812 B``, ``4.1 KiB``, ``1.5 GiB``."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


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

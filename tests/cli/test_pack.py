"""Packing a model folder into model.tar.gz."""

from __future__ import annotations

import gzip
import hashlib
import os
import tarfile
from pathlib import Path

import pytest

from dropship.artifact import ArtifactLimits
from dropship.cli.errors import CliError
from dropship.cli.pack import (
    Folder,
    artifact,
    check_folder_limits,
    check_tarball_limit,
    format_size,
    pack_directory,
    read_folder,
    read_source,
)
from dropship.errors import ArtifactTooLargeError


def model_folder(root: Path) -> Path:
    (root / "code").mkdir(parents=True)
    (root / "code" / "inference.py").write_text("def model_fn(model_dir):\n    return None\n")
    (root / "code" / "requirements.txt").write_text("scikit-learn\n")
    (root / "model.joblib").write_bytes(b"\x80\x04model")
    return root


def members(tarball: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(tarball, "r:gz") as tar:
        return tar.getmembers()


def test_a_folder_becomes_a_tarball_of_sorted_relative_names(tmp_path: Path) -> None:
    # Given a model folder with code/inference.py
    folder = model_folder(tmp_path / "model")

    # When it is packed
    tarball = tmp_path / "model.tar.gz"
    names = pack_directory(folder, tarball)

    # Then the members are relative to the folder, sorted, folders and regular files only
    assert names == ["code", "code/inference.py", "code/requirements.txt", "model.joblib"]
    infos = members(tarball)
    assert [info.name for info in infos] == names
    assert all(info.isdir() or info.isfile() for info in infos)
    assert not any(info.name.startswith(("/", "./")) or ".." in info.name.split("/") for info in infos)
    with tarfile.open(tarball, "r:gz") as tar:
        handle = tar.extractfile("code/inference.py")
        assert handle is not None
        assert handle.read().startswith(b"def model_fn")


def test_packing_is_reproducible(tmp_path: Path) -> None:
    # Given the same folder packed twice, with a file touched in between
    folder = model_folder(tmp_path / "model")
    first, second = tmp_path / "a.tar.gz", tmp_path / "b.tar.gz"
    pack_directory(folder, first)
    os.utime(folder / "model.joblib", (1_000_000, 1_000_000))
    pack_directory(folder, second)

    # Then both tarballs are byte for byte the same (so the same model gets the same sha256)
    assert hashlib.sha256(first.read_bytes()).digest() == hashlib.sha256(second.read_bytes()).digest()
    assert gzip.decompress(first.read_bytes())  # a real gzip stream


def test_a_symlink_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    # Given a folder with a symlink to a file outside it
    folder = model_folder(tmp_path / "model")
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the model")
    (folder / "code" / "leak.txt").symlink_to(secret)

    # When it is packed, Then it is refused naming the link
    with pytest.raises(CliError, match=r"code/leak.txt: it is a symlink pointing outside the folder"):
        pack_directory(folder, tmp_path / "model.tar.gz")


def test_a_symlink_inside_the_folder_is_stored_as_a_regular_file(tmp_path: Path) -> None:
    # Given a folder with a symlink to a file of its own
    folder = model_folder(tmp_path / "model")
    (folder / "latest.joblib").symlink_to(folder / "model.joblib")

    # When it is packed
    tarball = tmp_path / "model.tar.gz"
    pack_directory(folder, tarball)

    # Then the link is a regular file with the target's content
    link = next(info for info in members(tarball) if info.name == "latest.joblib")
    assert link.isfile()
    assert link.size == len(b"\x80\x04model")


def test_an_empty_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(CliError, match="is empty"):
        pack_directory(tmp_path / "empty", tmp_path / "model.tar.gz")


def test_a_tarball_is_used_as_it_is(tmp_path: Path) -> None:
    # Given a model.tar.gz made elsewhere
    tarball = tmp_path / "given.tar.gz"
    pack_directory(model_folder(tmp_path / "model"), tarball)

    # When it is the release PATH, Then that very file is uploaded
    source = read_source(tarball)
    assert source == tarball
    with artifact(source) as chosen:
        assert chosen == tarball


def test_a_folder_is_packed_into_a_temporary_file_that_is_removed_afterwards(tmp_path: Path) -> None:
    folder = read_source(model_folder(tmp_path / "model"))
    assert isinstance(folder, Folder)
    with artifact(folder) as chosen:
        assert chosen.name == "model.tar.gz"
        assert chosen.parent != folder
        assert [info.name for info in members(chosen)][-1] == "model.joblib"
    assert not chosen.exists()


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("model.joblib", b"x", "neither a folder nor a .tar.gz"),
        ("model.tar.gz", b"plain text", "not gzip-compressed"),
    ],
)
def test_other_paths_are_refused(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(CliError, match=message):
        read_source(path)


def test_a_missing_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CliError, match="does not exist"):
        read_source(tmp_path / "nope")


def test_the_folders_release_json_is_set_aside_not_packed(tmp_path: Path) -> None:
    # Given a model folder with its manifest at the top, and a file of the same name deeper down
    folder = model_folder(tmp_path / "model")
    (folder / "release.json").write_text("{}")
    (folder / "code" / "release.json").write_text('{"the model": "reads this one"}')

    # When it is read and packed
    listed = read_folder(folder)
    tarball = tmp_path / "model.tar.gz"
    names = pack_directory(folder, tarball)

    # Then the top-level release.json is the manifest, and only the model's own files are packed
    assert listed.manifest == folder / "release.json"
    assert "release.json" not in names
    assert "code/release.json" in names
    assert [info.name for info in members(tarball)] == names


@pytest.mark.parametrize("where", ["model.tar.gz", "code/model.tar.gz"])
def test_a_folder_holding_a_model_tar_gz_is_refused(tmp_path: Path, where: str) -> None:
    # Given a folder that holds a tarball from an earlier packing
    folder = model_folder(tmp_path / "model")
    (folder / where).write_bytes(b"\x1f\x8b old")

    # When it is read, Then it is refused naming the tarball and what to do instead
    with pytest.raises(CliError, match=rf"it holds {where}, a tarball left from an earlier packing; remove it"):
        read_source(folder)


def test_the_folder_counts_members_and_file_bytes_as_validation_does(tmp_path: Path) -> None:
    # Given a folder of two files (4 + 6 bytes) in a sub-folder, and its manifest
    folder = tmp_path / "model"
    (folder / "code").mkdir(parents=True)
    (folder / "code" / "a.py").write_bytes(b"1234")
    (folder / "weights").write_bytes(b"123456")
    (folder / "release.json").write_text("{}")

    listed = read_folder(folder)

    # Then members count folders too (as MaxArtifactMembers does), and sizes only the packed files
    assert (listed.members, listed.files, listed.file_bytes) == (3, 2, 10)


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        (ArtifactLimits(max_members=2), r"holds 3 files and folders, over the stack's limit of 2 .*MaxArtifactMembers"),
        (
            ArtifactLimits(max_uncompressed_bytes=9),
            r"holds 10 B of files, over the stack's limit of 9 B \(stack parameter MaxUncompressedBytes\)",
        ),
    ],
)
def test_a_folder_over_the_limits_is_refused(tmp_path: Path, limits: ArtifactLimits, message: str) -> None:
    folder = tmp_path / "model"
    (folder / "code").mkdir(parents=True)
    (folder / "code" / "a.py").write_bytes(b"1234")
    (folder / "weights").write_bytes(b"123456")
    with pytest.raises(ArtifactTooLargeError, match=message):
        check_folder_limits(read_folder(folder), limits)
    check_folder_limits(read_folder(folder), ArtifactLimits(max_members=3, max_uncompressed_bytes=10))


def test_a_tarball_over_the_compressed_limit_is_refused(tmp_path: Path) -> None:
    tarball = tmp_path / "model.tar.gz"
    pack_directory(model_folder(tmp_path / "model"), tarball)
    size = tarball.stat().st_size
    with pytest.raises(ArtifactTooLargeError, match=r"stack parameter MaxArtifactBytes"):
        check_tarball_limit(tarball, ArtifactLimits(max_compressed_bytes=size - 1))
    check_tarball_limit(tarball, ArtifactLimits(max_compressed_bytes=size))


@pytest.mark.parametrize(
    ("size", "shown"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (5 * 1024**2, "5.0 MiB"),
        (3 * 1024**4, "3072.0 GiB"),
    ],
)
def test_sizes_are_shown_in_binary_units(size: int, shown: str) -> None:
    assert format_size(size) == shown

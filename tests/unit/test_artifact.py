"""Artifact validation on real tarballs built in memory (and one by GNU tar), never extracted."""

from __future__ import annotations

import gzip
import hashlib
import io
import random
import shutil
import subprocess
import tarfile
import tracemalloc
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
from pydantic import ValidationError

from dropship.artifact import ArtifactLimits, ArtifactReport, inspect_artifact, safe_member_name
from dropship.errors import ArtifactTooLargeError, InvalidArtifactError, UnsafeArtifactError

LIMITS = ArtifactLimits()
MODEL_BYTES = random.Random(7).randbytes(50_000)  # incompressible, like a real model file
INFERENCE_PY = b"import joblib\n\ndef model_fn(model_dir):\n    return joblib.load(f'{model_dir}/model.joblib')\n"
REQUIREMENTS = b"scikit-learn==1.5.2\n"


# Builders -----------------------------------------------------------------------------------------


def member(
    name: str,
    data: bytes = b"",
    *,
    kind: bytes = tarfile.REGTYPE,
    linkname: str = "",
    mode: int = 0o644,
    size: int | None = None,
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = mode
    info.mtime = 1_700_000_000
    info.size = len(data) if size is None else size
    return info, data


def directory(name: str, mode: int = 0o755) -> tuple[tarfile.TarInfo, bytes]:
    return member(name, kind=tarfile.DIRTYPE, mode=mode)


def tar_bytes(members: Iterable[tuple[tarfile.TarInfo, bytes]], **options: object) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT, **options) as tar:  # type: ignore[call-overload]
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() or info.size else None)
    return buffer.getvalue()


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def tarball(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    return gz(tar_bytes(members))


def model_tarball() -> bytes:
    return tarball(
        directory("code"),
        member("model.joblib", MODEL_BYTES),
        member("code/inference.py", INFERENCE_PY),
        member("code/requirements.txt", REQUIREMENTS),
    )


def inspect(data: bytes, limits: ArtifactLimits = LIMITS) -> ArtifactReport:
    return inspect_artifact(io.BytesIO(data), limits)


class TrickleStream(io.RawIOBase):
    """A network-like stream: each read returns fewer bytes than asked, in an irregular pattern."""

    SIZES = (1, 7, 512, 3, 4096, 2, 65_537, 11, 100, 1000)

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._offset = 0
        self._reads = 0

    def read(self, size: int = -1) -> bytes:
        step = self.SIZES[self._reads % len(self.SIZES)]
        self._reads += 1
        if size is not None and size >= 0:
            step = min(step, size)
        chunk = self._data[self._offset : self._offset + step]
        self._offset += len(chunk)
        return chunk


class BrokenStream(io.RawIOBase):
    """Delivers a few bytes, then the connection drops."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._served = False

    def read(self, size: int = -1) -> bytes:
        if self._served:
            raise ConnectionResetError("connection reset by peer")
        self._served = True
        return self._data[:100]


# Valid artifacts ----------------------------------------------------------------------------------


def test_valid_model_directory_is_reported() -> None:
    # Given a model directory packaged as the contract expects
    data = model_tarball()
    # When it is inspected
    report = inspect(data)
    # Then the digest is the object's own and the sizes are the files'
    assert report.sha256 == hashlib.sha256(data).hexdigest()
    assert report.compressed_bytes == len(data)
    assert report.uncompressed_bytes == len(MODEL_BYTES) + len(INFERENCE_PY) + len(REQUIREMENTS)
    assert report.member_count == 4
    assert report.files == 3


def test_partial_reads_of_a_network_stream_give_the_same_report() -> None:
    # Given the artifact arriving in small, irregular chunks, as from a socket
    data = model_tarball() + b"trailing"
    # When it is inspected from the trickling stream and from memory
    trickled = inspect_artifact(TrickleStream(data), LIMITS)  # type: ignore[arg-type]
    # Then both agree, and the digest covers every byte
    assert trickled == inspect(data)
    assert trickled.sha256 == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("trailer", [b"\x00" * 1000, b"garbage after the gzip end", b"\x1f"])
def test_bytes_after_the_gzip_data_are_allowed_and_hashed(trailer: bytes) -> None:
    # Given a valid artifact followed by bytes that are not gzip (padding, garbage, half a magic number)
    data = model_tarball() + trailer
    # When inspected
    report = inspect(data)
    # Then it passes and the digest and size are those of the whole object
    assert report.sha256 == hashlib.sha256(data).hexdigest()
    assert report.compressed_bytes == len(data)


def test_archive_split_over_concatenated_gzip_members_is_read_whole() -> None:
    # Given a tar compressed as two gzip members, as gzip and tar -z read it
    raw = tar_bytes([member("model.joblib", MODEL_BYTES), member("code/inference.py", INFERENCE_PY)])
    data = gz(raw[:700]) + gz(raw[700:])
    # When inspected
    report = inspect(data)
    # Then both members are seen
    assert (report.member_count, report.files) == (2, 2)


def test_archive_made_by_gnu_tar_with_dot_prefix_passes(tmp_path: Path) -> None:
    # Given a model directory packaged with the command the docs give
    if shutil.which("tar") is None:
        pytest.skip("GNU tar is not installed")
    model = tmp_path / "model"
    (model / "code").mkdir(parents=True)
    (model / "model.joblib").write_bytes(MODEL_BYTES)
    (model / "code" / "inference.py").write_bytes(INFERENCE_PY)
    (model / "code" / "lib").symlink_to("../model.joblib")
    artifact = tmp_path / "model.tar.gz"
    subprocess.run(["tar", "-czf", str(artifact), "-C", str(model), "."], check=True)
    # When inspected
    report = inspect(artifact.read_bytes())
    # Then "./", "./code/" and the inside symlink are all fine
    assert report.files == 2
    assert report.member_count == 5


def test_safe_links_and_global_pax_header_pass() -> None:
    # Given links that stay inside, and a global pax header as `git archive` writes
    members = [
        member("model.joblib", MODEL_BYTES),
        member("latest", kind=tarfile.SYMTYPE, linkname="model.joblib"),
        member("code/shared", kind=tarfile.SYMTYPE, linkname="../model.joblib"),
        member("code/dot", kind=tarfile.SYMTYPE, linkname="."),
        member("copy.joblib", kind=tarfile.LNKTYPE, linkname="model.joblib"),
        directory("shared", mode=0o2775),  # setgid on a directory is harmless
    ]
    data = gz(tar_bytes(members, pax_headers={"comment": "0123abcd"}))
    # When inspected
    report = inspect(data)
    # Then it passes; only the regular file counts as a file
    assert (report.member_count, report.files) == (6, 1)


def test_tar_without_end_of_archive_marker_passes() -> None:
    # Given a tar whose writer left out the two zero blocks (nothing is hidden after it)
    info, data = member("model.joblib", b"x" * 600)
    raw = info.tobuf(tarfile.PAX_FORMAT) + data + b"\x00" * (1024 - 600)
    # When inspected
    report = inspect(gz(raw))
    # Then it passes
    assert report.files == 1


# Not a gzip-compressed tarball --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"PK\x03\x04 a zip file", "it is zip, not gzip"),
        (b"BZh91AY&SY", "it is bzip2, not gzip"),
        (b"just some text", "not gzip-compressed"),
        (b"\x1f", "not gzip-compressed"),
        (tar_bytes([member("model.joblib", b"x")]), "not gzip-compressed"),
        (gz(b"this is text, not a tar archive\n" * 40), "not a valid tar archive"),
        (gz(b"short text"), "not a valid tar archive"),
        (gz(b""), "not a valid tar archive"),
    ],
    ids=["empty", "zip", "bzip2", "text", "one-byte", "plain-tar", "gzip-text", "gzip-short", "gzip-empty"],
)
def test_not_a_gzip_tarball_is_invalid(data: bytes, message: str) -> None:
    # Given bytes that are not a gzip-compressed tar, When inspected, Then InvalidArtifact says why
    with pytest.raises(InvalidArtifactError, match=message):
        inspect(data)


def test_empty_archive_is_invalid() -> None:
    # Given a well-formed tar with no members, When inspected, Then it is invalid
    with pytest.raises(InvalidArtifactError, match="archive is empty"):
        inspect(tarball())


@pytest.mark.parametrize("offset", [0.3, 0.5, 0.7])
def test_corrupted_gzip_is_invalid(offset: float) -> None:
    # Given a valid artifact with bytes flipped in the middle of the compressed data
    data = bytearray(model_tarball())
    middle = int(len(data) * offset)
    for index in range(middle, middle + 8):
        data[index] ^= 0xFF
    # When inspected, Then it is invalid (corrupt deflate data or a CRC mismatch)
    with pytest.raises(InvalidArtifactError, match="gzip data is corrupt"):
        inspect(bytes(data))


def test_crc_mismatch_is_invalid() -> None:
    # Given a valid artifact whose gzip trailer CRC is wrong
    data = bytearray(model_tarball())
    data[-8] ^= 0x01
    # When inspected, Then the CRC check fails
    with pytest.raises(InvalidArtifactError, match="CRC"):
        inspect(bytes(data))


@pytest.mark.parametrize("keep", [lambda n: n - 1, lambda n: n - 100, lambda n: n // 2, lambda n: 30])
def test_truncated_gzip_is_invalid(keep: Callable[[int], int]) -> None:
    # Given an upload cut short, When inspected, Then it is invalid and says it is truncated
    data = model_tarball()
    with pytest.raises(InvalidArtifactError, match="truncated"):
        inspect(data[: keep(len(data))])


def test_tar_truncated_inside_complete_gzip_is_invalid() -> None:
    # Given a tar cut in the middle of a member's data, then compressed correctly
    raw = tar_bytes([member("model.joblib", MODEL_BYTES)])
    # When inspected, Then it is invalid
    with pytest.raises(InvalidArtifactError, match="unexpected end of data"):
        inspect(gz(raw[:20_000]))


def test_tar_header_cut_short_is_invalid() -> None:
    # Given a tar that ends in the middle of a header block
    raw = tar_bytes([member("a.txt", b"a")])[:1024] + tar_bytes([member("b.txt", b"b")])[:300]
    # When inspected, Then it is invalid
    with pytest.raises(InvalidArtifactError, match="truncated"):
        inspect(gz(raw))


def test_invalid_header_in_the_middle_is_invalid() -> None:
    # Given a garbage block between two members (tarfile would stop there, GNU tar would skip it)
    first = tar_bytes([member("a.txt", b"a")])[:1024]
    second = tar_bytes([member("../evil", b"b")])
    # When inspected, Then it is invalid and points at the offset
    with pytest.raises(InvalidArtifactError, match="invalid header at offset 1024"):
        inspect(gz(first + b"\xab" * 512 + second))


def test_members_hidden_after_the_end_marker_are_unsafe() -> None:
    # Given a second archive appended after the first one's end-of-archive marker
    data = gz(tar_bytes([member("a.txt", b"a")]) + tar_bytes([member("../evil", b"b")]))
    # When inspected, Then it is refused: tar --ignore-zeros would extract the hidden member
    with pytest.raises(UnsafeArtifactError, match="follows the end-of-archive marker"):
        inspect(data)


# Unsafe members -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../etc/passwd", "'../etc/passwd' escapes the model directory: it has a '..' component"),
        ("code/../../x", "'..' component"),
        ("code/..", "'..' component"),
        ("/etc/passwd", "absolute path"),
        ("C:\\Windows\\evil.dll", "absolute path"),
        ("c:evil", "absolute path"),
        ("\\evil", "absolute path"),
        ("code\\..\\..\\evil", "'..' component"),
    ],
)
def test_member_names_leaving_the_model_directory_are_unsafe(name: str, message: str) -> None:
    # Given a file whose name points outside the model directory
    data = tarball(member("model.joblib", b"m"), member(name, b"evil"))
    # When inspected, Then it is unsafe and the member is named
    with pytest.raises(UnsafeArtifactError, match=message.replace("\\", "\\\\")):
        inspect(data)


def test_nul_in_a_pax_name_is_unsafe() -> None:
    # Given a name carried in a pax record (non-ASCII) with a NUL byte inside
    data = tarball(member("modèle\x00.joblib", b"m"))
    # When inspected, Then it is unsafe
    with pytest.raises(UnsafeArtifactError, match="NUL byte"):
        inspect(data)


def test_directory_traversal_is_unsafe_too() -> None:
    with pytest.raises(UnsafeArtifactError, match=r"'\.\.' component"):
        inspect(tarball(directory("../outside")))


@pytest.mark.parametrize(
    ("name", "target", "message"),
    [
        ("passwd", "/etc/passwd", "absolute path"),
        ("a", "../../x", "leaves the model directory"),
        ("code/a", "../../x", "leaves the model directory"),
        ("up", "..", "leaves the model directory"),
        ("win", "C:\\x", "absolute path"),
        ("empty", "", "target is empty"),
    ],
)
def test_symlinks_pointing_outside_are_unsafe(name: str, target: str, message: str) -> None:
    # Given a symlink whose target, from the link's directory, is outside the archive root
    data = tarball(member("model.joblib", b"m"), member(name, kind=tarfile.SYMTYPE, linkname=target))
    # When inspected, Then it is unsafe and both ends are named
    with pytest.raises(UnsafeArtifactError, match=f"symlink '{name}' -> .*{message}"):
        inspect(data)


def test_symlink_escaping_through_an_earlier_symlink_is_unsafe() -> None:
    # Given a -> . (the root, fine alone) and b -> a/.. (a/.. looks like the root, but a is the root itself)
    data = tarball(member("a", kind=tarfile.SYMTYPE, linkname="."), member("b", kind=tarfile.SYMTYPE, linkname="a/.."))
    # When inspected, Then b is followed through a, as an extractor would right after writing it, and leaves
    with pytest.raises(UnsafeArtifactError, match=r"'b' -> 'a/\.\.' escapes .*it leaves the model directory"):
        inspect(data)


def test_symlink_escaping_through_a_later_symlink_is_unsafe() -> None:
    # Given x -> y/.. (the root while y is a plain name) and then y -> . (so y/.. is the root's parent)
    data = tarball(member("x", kind=tarfile.SYMTYPE, linkname="y/.."), member("y", kind=tarfile.SYMTYPE, linkname="."))
    # When inspected, Then following x once everything is extracted leaves the root
    with pytest.raises(UnsafeArtifactError, match=r"'x' -> 'y/\.\.' leaves the model directory when followed"):
        inspect(data)


def test_redefined_symlink_that_writes_outside_is_unsafe(tmp_path: Path) -> None:
    # Given the archive from issue 8: d -> . makes d/e the root's e; e -> .. is then outside; d is redefined
    # to a harmless d -> sub so the final links look fine; e/evil.txt is written through e
    members = [
        member("d", kind=tarfile.SYMTYPE, linkname="."),
        member("d/e", kind=tarfile.SYMTYPE, linkname=".."),
        member("d", kind=tarfile.SYMTYPE, linkname="sub"),
        member("e/evil.txt", b"pwned"),
    ]
    data = tarball(*members)
    # (extracted member by member without a filter, it does write outside the target)
    target = tmp_path / "model"
    target.mkdir()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for info in tar.getmembers():
            tar.extract(info, target, filter="fully_trusted")
    assert (tmp_path / "evil.txt").read_bytes() == b"pwned"
    # When inspected, Then it is refused at the member that goes through the earlier symlink
    with pytest.raises(UnsafeArtifactError, match=r"member 'd/e' passes through 'd', a symlink earlier"):
        inspect(data)


@pytest.mark.parametrize(
    "members",
    [
        [member("d", kind=tarfile.SYMTYPE, linkname="."), directory("d/x")],
        [member("d", kind=tarfile.SYMTYPE, linkname="sub"), directory("sub"), member("d/f", b"x")],
        [
            member("x", b"x"),
            member("d", kind=tarfile.SYMTYPE, linkname="."),
            member("d/f", kind=tarfile.LNKTYPE, linkname="x"),
        ],
        [directory("a"), member("a/d", kind=tarfile.SYMTYPE, linkname="."), member("a/d/d/f", b"x")],
    ],
    ids=["directory", "file", "hardlink", "nested"],
)
def test_members_written_through_an_earlier_symlink_are_unsafe(members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
    with pytest.raises(UnsafeArtifactError, match=r"passes through '(a/)?d', a symlink earlier in the archive"):
        inspect(tarball(*members))


def test_member_inside_an_earlier_file_is_unsafe() -> None:
    with pytest.raises(UnsafeArtifactError, match=r"member 'f/x' is inside 'f', a file earlier in the archive"):
        inspect(tarball(member("f", b"x"), member("f/x", b"y")))


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([member("a", b"1"), member("a", b"2")], r"'a' redefines 'a', already a file"),
        ([member("a", b"1"), member("./a", b"2")], r"'\./a' redefines 'a', already a file"),
        ([member("code//a", b"1"), member("code/./a", b"2")], r"redefines 'code/a', already a file"),
        ([directory("a"), directory("a/")], r"'a' redefines 'a', already a directory"),
        ([directory("./"), directory(".")], r"'\.' redefines '\.', already a directory"),
        ([member("a", kind=tarfile.SYMTYPE, linkname="b"), member("a", b"x")], r"already a symlink"),
        ([member("a", b"x"), member("a", kind=tarfile.SYMTYPE, linkname="b")], r"already a file"),
        ([directory("a"), member("a", b"x")], r"'a' redefines 'a', already a directory"),
        ([member("a/b", b"x"), member("a", kind=tarfile.SYMTYPE, linkname=".")], r"already a directory \(implied"),
        ([member("a", b"x"), member("a", kind=tarfile.LNKTYPE, linkname="a")], r"'a' redefines 'a', already a file"),
    ],
    ids=[
        "file-file", "dot-slash", "empty-and-dot-parts", "dir-dir", "root-root", "symlink-file", "file-symlink",
        "dir-file", "implied-dir-symlink", "file-hardlink",
    ],
)  # fmt: skip
def test_a_name_defined_twice_is_unsafe(members: list[tuple[tarfile.TarInfo, bytes]], message: str) -> None:
    # Given a second member at a path an earlier member defined, When inspected, Then it is refused naming both
    with pytest.raises(UnsafeArtifactError, match=message):
        inspect(tarball(*members))


def test_a_directory_after_its_contents_is_fine() -> None:
    # Given an archive listing a file before its directory (tools that add files first do this)
    report = inspect(tarball(member("code/inference.py", INFERENCE_PY), directory("code"), directory("./")))
    # Then it passes: the directory only gets its own entry
    assert (report.member_count, report.files) == (3, 1)


@pytest.mark.parametrize("name", ["model.joblib/", "code/model.joblib/.", "code\\model.joblib\\"])
def test_a_non_directory_named_like_a_directory_is_unsafe(name: str) -> None:
    # tarfile would write a file where GNU tar makes a directory, or fail on "a/."
    with pytest.raises(UnsafeArtifactError, match=r"is not a directory but its name ends with '/' or '/\.'"):
        inspect(tarball(member(name, b"x")))


def test_the_directories_names_imply_are_capped_by_the_member_limit() -> None:
    # Given two files whose names imply 5 directories, and a limit of 4 members
    data = tarball(member("a/b/c/f", b"x"), member("d/e/f", b"y"))
    # When inspected, Then the implied directories count against MaxArtifactMembers
    with pytest.raises(ArtifactTooLargeError, match=r"imply more than 4 directories.*MaxArtifactMembers"):
        inspect(data, ArtifactLimits(max_members=4))
    assert inspect(data, ArtifactLimits(max_members=5)).files == 2


def test_symlink_loop_is_unsafe() -> None:
    data = tarball(member("a", kind=tarfile.SYMTYPE, linkname="b"), member("b", kind=tarfile.SYMTYPE, linkname="a"))
    with pytest.raises(UnsafeArtifactError, match="symlink loop"):
        inspect(data)


@pytest.mark.parametrize(
    ("target", "message"),
    [("../x", "'..' component"), ("/etc/shadow", "absolute path"), ("", "target is empty"), (".", "itself")],
)
def test_hardlinks_to_unsafe_targets_are_unsafe(target: str, message: str) -> None:
    # Given a hardlink whose target is not a safe member name
    data = tarball(member("model.joblib", b"m"), member("copy", kind=tarfile.LNKTYPE, linkname=target))
    # When inspected, Then it is unsafe
    with pytest.raises(UnsafeArtifactError, match=f"hardlink 'copy' -> .*{message}"):
        inspect(data)


@pytest.mark.parametrize(
    "members",
    [
        [member("copy", kind=tarfile.LNKTYPE, linkname="model.joblib"), member("model.joblib", b"m")],
        [member("copy", kind=tarfile.LNKTYPE, linkname="missing")],
        [member("copy", kind=tarfile.LNKTYPE, linkname="copy")],
        [directory("code"), member("copy", kind=tarfile.LNKTYPE, linkname="code")],
        [member("m", b"m"), member("s", kind=tarfile.SYMTYPE, linkname="m"), member("copy", kind=tarfile.LNKTYPE,
                                                                                    linkname="s")],
        [member("a/m", b"m"), member("d", kind=tarfile.SYMTYPE, linkname="a"), member("copy", kind=tarfile.LNKTYPE,
                                                                                      linkname="d/m")],
    ],
    ids=["later-file", "missing", "itself", "directory", "symlink", "through-symlink"],
)  # fmt: skip
def test_hardlinks_must_repeat_a_file_stored_before_them(members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
    # An extractor falls back to copying the target member when it cannot link to it; a symlink copied to
    # the hardlink's place would be resolved from a different directory.
    with pytest.raises(UnsafeArtifactError, match="does not point at a file earlier in the archive"):
        inspect(tarball(*members))


def test_hardlink_to_an_earlier_hardlink_passes() -> None:
    data = tarball(
        member("./model.joblib", b"m"),
        member("a", kind=tarfile.LNKTYPE, linkname="model.joblib"),
        member("b", kind=tarfile.LNKTYPE, linkname="./a"),
    )
    assert (inspect(data).member_count, inspect(data).files) == (3, 1)


@pytest.mark.parametrize(
    ("kind", "what"),
    [(tarfile.CHRTYPE, "a character device"), (tarfile.BLKTYPE, "a block device"), (tarfile.FIFOTYPE, "a FIFO")],
)
def test_devices_and_fifos_are_unsafe(kind: bytes, what: str) -> None:
    # Given a device node or FIFO in the archive, When inspected, Then it is refused
    data = tarball(member("model.joblib", b"m"), member("dev/node", kind=kind))
    with pytest.raises(UnsafeArtifactError, match=f"'dev/node' is {what}; devices and FIFOs are not allowed"):
        inspect(data)


def test_unknown_member_type_is_unsafe() -> None:
    data = tarball(member("odd", b"data", kind=b"Z"))
    with pytest.raises(UnsafeArtifactError, match="unsupported type"):
        inspect(data)


def test_non_directory_named_as_the_root_is_unsafe() -> None:
    with pytest.raises(UnsafeArtifactError, match="names the model directory itself"):
        inspect(tarball(member("./", kind=tarfile.SYMTYPE, linkname="code")))


@pytest.mark.parametrize("mode", [0o4755, 0o2755, 0o6755])
def test_setuid_and_setgid_files_are_unsafe(mode: int) -> None:
    # Given an executable file with setuid or setgid set, When inspected, Then it is refused
    data = tarball(member("code/serve", b"#!/bin/sh\n", mode=mode))
    with pytest.raises(UnsafeArtifactError, match="'code/serve' has the setuid or setgid bit set"):
        inspect(data)


def test_huge_pax_header_is_refused_before_it_is_read_into_memory() -> None:
    # Given a member whose name is 2 MiB long, so its pax header is 2 MiB
    data = tarball(member("a" * (2 * 1024 * 1024), b"m"))
    # When inspected, Then the header is refused by its declared size
    with pytest.raises(UnsafeArtifactError, match="header data"):
        inspect(data)


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("model.joblib", True),
        ("./code/inference.py", True),
        ("a..b/c..", True),
        ("", True),
        ("../x", False),
        ("a/../b", False),
        ("/abs", False),
        ("\\abs", False),
        ("D:/x", False),
        ("a\x00b", False),
    ],
)
def test_safe_member_name(name: str, safe: bool) -> None:
    assert safe_member_name(name) is safe


# Limits -------------------------------------------------------------------------------------------


def test_compressed_size_over_the_limit_is_too_large() -> None:
    # Given an artifact one byte over the compressed limit
    data = model_tarball()
    limits = ArtifactLimits(max_compressed_bytes=len(data) - 1)
    # When inspected, Then it is too large and names the stack parameter
    with pytest.raises(ArtifactTooLargeError, match=f"larger than {len(data) - 1} bytes.*MaxArtifactBytes"):
        inspect(data, limits)
    # And exactly at the limit it passes
    assert inspect(data, ArtifactLimits(max_compressed_bytes=len(data))).compressed_bytes == len(data)


def test_trailing_bytes_count_toward_the_compressed_limit() -> None:
    data = model_tarball()
    with pytest.raises(ArtifactTooLargeError, match="MaxArtifactBytes"):
        inspect(data + b"\x00" * 10, ArtifactLimits(max_compressed_bytes=len(data) + 9))


def test_file_data_over_the_limit_is_too_large() -> None:
    # Given files whose sizes add up to one byte over the limit
    data = tarball(member("a", b"x" * 600), member("b", b"y" * 401))
    # When inspected, Then it is too large, naming the member that crossed it and the stack parameter
    with pytest.raises(ArtifactTooLargeError, match=r"more than 1000 bytes.*'b' declares 401.*MaxUncompressedBytes"):
        inspect(data, ArtifactLimits(max_uncompressed_bytes=1000))
    # And at exactly the limit it passes
    assert inspect(data, ArtifactLimits(max_uncompressed_bytes=1001)).uncompressed_bytes == 1001


def test_too_many_members_is_too_large() -> None:
    data = tarball(*(member(f"f{index}", b"") for index in range(11)))
    with pytest.raises(ArtifactTooLargeError, match=r"more than 10 members.*MaxArtifactMembers"):
        inspect(data, ArtifactLimits(max_members=10))
    assert inspect(data, ArtifactLimits(max_members=11)).member_count == 11


def _compressed_zeros(prefix: bytes, zeros: int, suffix: bytes = b"") -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [compressor.compress(prefix)]
    block = bytes(1024 * 1024)
    for _ in range(zeros // len(block)):
        parts.append(compressor.compress(block))
    parts.append(compressor.compress(suffix))
    parts.append(compressor.flush())
    return b"".join(parts)


def test_gzip_bomb_fails_on_its_header_with_flat_memory() -> None:
    # Given a 256 MiB member of zeros (about 250 KiB compressed) and a 1 MiB uncompressed limit
    size = 256 * 1024 * 1024
    header = member("weights.bin", size=size)[0].tobuf(tarfile.PAX_FORMAT)
    data = _compressed_zeros(header, size, bytes(1024))
    source = io.BytesIO(data)
    # When inspected
    tracemalloc.start()
    try:
        with pytest.raises(ArtifactTooLargeError, match="MaxUncompressedBytes"):
            inspect_artifact(source, ArtifactLimits(max_uncompressed_bytes=1024 * 1024))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Then it stopped after the first chunk, never inflating the data
    assert source.tell() <= 64 * 1024
    assert peak < 2 * 1024 * 1024


def test_zero_padding_bomb_after_the_archive_is_too_large() -> None:
    # Given a small valid tar followed by 64 MiB of zero "padding" inside the gzip data
    raw = tar_bytes([member("model.joblib", b"m")])
    data = _compressed_zeros(raw, 64 * 1024 * 1024)
    limits = ArtifactLimits(max_uncompressed_bytes=1024 * 1024, max_members=10)
    # When inspected, Then the decompressed total is capped
    with pytest.raises(ArtifactTooLargeError, match="decompresses to more than"):
        inspect(data, limits)


# The boundary with the caller ---------------------------------------------------------------------


def test_a_dropped_connection_propagates_unchanged() -> None:
    # Given a stream that fails mid-read, When inspected, Then the stream's own error comes out (retryable)
    with pytest.raises(ConnectionResetError):
        inspect_artifact(BrokenStream(model_tarball()), LIMITS)  # type: ignore[arg-type]


def test_limits_are_positive_and_frozen() -> None:
    with pytest.raises(ValidationError):
        ArtifactLimits(max_members=0)
    with pytest.raises(ValidationError):
        LIMITS.max_members = 5  # type: ignore[misc]
    assert LIMITS.max_compressed_bytes == 10 * 1024**3
    assert LIMITS.max_uncompressed_bytes == 20 * 1024**3


def _with_size_field(header: bytes, field: bytes) -> bytes:
    """A ustar header with its 12-byte size field replaced and its checksum recomputed."""
    block = bytearray(header[:512])
    block[124:136] = field
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\x00 " % sum(block)
    return bytes(block)


def test_negative_member_size_is_invalid() -> None:
    # Given a header whose base-256 size field encodes -1024 (tarfile would then seek backwards)
    header = member("model.joblib", b"")[0].tobuf(tarfile.USTAR_FORMAT)
    negative = b"\xff" * 10 + b"\xfc\x00"
    data = gz(_with_size_field(header, negative) + bytes(2048))
    # When inspected, Then it is invalid, not an internal error
    with pytest.raises(InvalidArtifactError, match="negative size"):
        inspect(data)

"""Validate ``model.tar.gz`` in one forward pass over the S3 object body (CONTRACT.md section 2).

The validating Lambda reads the object as a stream (botocore's ``StreamingBody``): no seeking back, no
whole copy in memory or on disk, and nothing is ever extracted. Three layers, each reading from the one
below:

1. ``_HashingReader`` reads the object in bounded chunks. Every byte passes through it exactly once, so
   ``sha256`` is the digest of the object as uploaded, trailing bytes after the gzip data included.
   It stops at ``max_compressed_bytes``.
2. ``_GzipDecoder`` inflates with ``zlib`` in bounded chunks. It is ours rather than ``tarfile``'s
   ``r|gz`` because that one never checks the gzip CRC and reads ahead, so it cannot tell what follows
   the end of the archive. Ours checks the CRC and length of every gzip member (concatenated members are
   read as ``gzip -d`` does; bytes that do not start a member are trailing data, hashed but not decoded),
   caps the decompressed total, refuses to hand ``tarfile`` more than 1 MiB of headers for one member
   (a huge pax header would otherwise be read into memory), and only seeks forward, skipping member data
   without keeping it.
3. ``tarfile`` parses the headers (mode ``r:`` on the decoder: plain reads and forward seeks). Each member
   is checked (name, type, links, mode bits, declared size) before any of its data is inflated, so a
   gzip bomb fails on its header, not after filling memory.

Checked: gzip and tar are well formed and complete; no absolute paths, ``..`` components or NUL bytes in
names; symlinks stay inside the model directory, followed through the archive's own symlinks both as they
are when the link is extracted and once everything is; no member is written through an earlier symlink or
inside an earlier file, and no path is defined twice (an extractor writing member by member would follow
what the first definition left behind); hardlinks only repeat a file stored before them; no devices, FIFOs
or unknown member types; no setuid or setgid files; file data, member count, implied directories and
compressed size under the stack limits; nothing but zero padding after the end-of-archive marker (a
second archive hidden there would be extracted by ``tar --ignore-zeros`` without being checked). So an
accepted archive extracts inside its target with ``tarfile``'s ``data`` filter, or member by member with no
filter at all (a property test checks both).

Errors raised by ``stream.read`` itself (a dropped connection) are not facts about the artifact and
propagate unchanged for the caller to retry.
"""

from __future__ import annotations

import enum
import hashlib
import re
import stat
import tarfile
import zlib
from collections import deque
from collections.abc import Mapping
from typing import BinaryIO, cast

from pydantic import BaseModel, ConfigDict, Field

from dropship.errors import ArtifactTooLargeError, InternalError, InvalidArtifactError, UnsafeArtifactError

GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 64 * 1024
_BLOCK = tarfile.BLOCKSIZE
# Tar headers, pax records and long names read for one member; real ones are a few KiB.
_MAX_HEADER_BYTES = 1024 * 1024
# Decompressed bytes allowed beyond file data, per member allowed plus a fixed part: headers, padding.
_OVERHEAD_PER_MEMBER = 4 * 1024
_OVERHEAD_FIXED = 16 * 1024 * 1024
_MAX_NAME_CHARS = 4096  # PATH_MAX on Linux: longer names cannot be extracted anyway
_MAX_SYMLINK_CHARS = 16 * 1024 * 1024
_MAX_LINK_HOPS = 40  # as Linux's own limit for following symlinks
_SHOWN_NAME_CHARS = 200
_DRIVE = re.compile(r"^[A-Za-z]:")
_SEPARATORS = re.compile(r"[/\\]")
_OTHER_FORMATS = {
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
    b"(\xb5/\xfd": "zstd",
    b"PK\x03\x04": "zip",
}
_PACKAGING_HINT = "package the model directory with `tar -czf model.tar.gz -C <model dir> .`"
_DEVICE_KINDS = {
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.FIFOTYPE: "a FIFO",
}


class ArtifactLimits(BaseModel):
    """Stack limits an artifact must stay under (stack parameters ``MaxArtifactBytes`` and friends)."""

    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True)

    max_compressed_bytes: int = Field(10 * 1024**3, gt=0, description="MaxArtifactBytes")
    max_uncompressed_bytes: int = Field(20 * 1024**3, gt=0, description="MaxUncompressedBytes")
    max_members: int = Field(100_000, gt=0, description="MaxArtifactMembers")


class ArtifactReport(BaseModel):
    """What validation learned about an artifact that passed."""

    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True)

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Digest of the object as uploaded.")
    compressed_bytes: int = Field(ge=0, description="Size of the object.")
    uncompressed_bytes: int = Field(ge=0, description="Sum of the sizes of the regular files.")
    member_count: int = Field(ge=1, description="Archive members of every type.")
    files: int = Field(ge=0, description="Regular files.")


def inspect_artifact(stream: BinaryIO, limits: ArtifactLimits) -> ArtifactReport:
    """Validate a gzip-compressed tarball read once from ``stream``, and report its digest and sizes.

    Raises ``InvalidArtifactError``, ``UnsafeArtifactError`` or ``ArtifactTooLargeError`` with a message
    naming the offending member and what to change.
    """
    source = _HashingReader(stream, limits.max_compressed_bytes)
    try:
        decoder = _GzipDecoder(source, _decompressed_ceiling(limits))
        scan = _scan(decoder, limits)
        decoder.drain_padding()
        source.drain()
    except RecursionError:
        raise InvalidArtifactError("the archive nests tar extended headers too deeply to read") from None
    except (tarfile.TarError, zlib.error, EOFError, OSError, ValueError, IndexError, OverflowError) as error:
        if source.failed:
            raise  # the stream broke, not the artifact: the caller may retry
        raise InvalidArtifactError(f"not a valid tar archive: {error}; {_PACKAGING_HINT}") from None
    return ArtifactReport(
        sha256=source.hexdigest(),
        compressed_bytes=source.count,
        uncompressed_bytes=scan.file_bytes,
        member_count=scan.members,
        files=scan.files,
    )


def safe_member_name(name: str) -> bool:
    """Whether a member name (or hardlink target) stays inside the directory the archive extracts to."""
    return _name_problem(name) is None


def _decompressed_ceiling(limits: ArtifactLimits) -> int:
    return limits.max_uncompressed_bytes + limits.max_members * _OVERHEAD_PER_MEMBER + _OVERHEAD_FIXED


class _HashingReader:
    """Reads the object once, in bounded chunks, hashing and counting every byte."""

    def __init__(self, stream: BinaryIO, max_bytes: int) -> None:
        self._stream = stream
        self._max_bytes = max_bytes
        self._sha256 = hashlib.sha256()
        self.count = 0
        self.failed = False

    def read(self, size: int = _CHUNK) -> bytes:
        try:
            data = self._stream.read(size)
        except BaseException:
            self.failed = True
            raise
        if not data:
            return b""
        self._sha256.update(data)
        self.count += len(data)
        if self.count > self._max_bytes:
            raise ArtifactTooLargeError(
                f"artifact is larger than {self._max_bytes} bytes compressed; raise the stack parameter "
                "MaxArtifactBytes or make the model smaller"
            )
        return bytes(data)

    def drain(self) -> None:
        """Hash whatever follows the gzip data, so the digest covers the whole object."""
        while self.read(_CHUNK):
            pass

    def hexdigest(self) -> str:
        return self._sha256.hexdigest()


class _GzipDecoder:
    """A forward-only file of the decompressed tar stream, for ``tarfile`` to parse.

    Inflates one or more concatenated gzip members (zlib checks each CRC and length). Anything after
    the last member that does not start a new one is trailing data: hashed by the reader, never decoded.
    """

    def __init__(self, source: _HashingReader, ceiling: int) -> None:
        self._source = source
        self._ceiling = ceiling
        self._input = self._first_bytes()
        self._inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        self._buffer = b""  # inflated, not yet taken past self._taken
        self._taken = 0
        self._ended = False
        self.position = 0
        self.decoded = 0
        self.last_read = b""
        self.header_budget = _MAX_HEADER_BYTES

    def _first_bytes(self) -> bytes:
        head = self._source.read(_CHUNK)
        while 0 < len(head) < 6:  # enough for every magic number we recognise
            more = self._source.read(_CHUNK)
            if not more:
                break
            head += more
        if not head:
            raise InvalidArtifactError(f"artifact is empty (0 bytes); {_PACKAGING_HINT}")
        if not head.startswith(GZIP_MAGIC):
            kind = next((name for magic, name in _OTHER_FORMATS.items() if head.startswith(magic)), None)
            found = f"it is {kind}, not gzip" if kind else "it does not start with the gzip magic bytes 1f 8b"
            raise InvalidArtifactError(f"artifact is not gzip-compressed: {found}; {_PACKAGING_HINT}")
        return head

    # The file interface tarfile uses.

    def read(self, size: int = -1) -> bytes:
        if size < 0:  # tarfile never reads "everything"; this is a header with a negative size
            raise InvalidArtifactError(f"a tar header before offset {self.position} declares a negative size")
        self.header_budget -= size
        if self.header_budget < 0:
            raise UnsafeArtifactError(
                f"a tar header at offset {self.position} declares more than {_MAX_HEADER_BYTES} bytes of "
                "header data (pax records or long names); real archives need a few KiB"
            )
        parts = []
        wanted = size
        while wanted > 0:
            chunk = self._take(wanted)
            if not chunk:
                break
            parts.append(chunk)
            wanted -= len(chunk)
        self.last_read = b"".join(parts)
        return self.last_read

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence != 0:
            raise InternalError("tarfile seeked relative to the end or the current position")
        if offset < self.position:  # only a negative size in a header moves tarfile backwards
            raise InvalidArtifactError(f"a tar header before offset {self.position} declares a negative size")
        while self.position < offset and self._take(offset - self.position):
            pass
        return self.position

    # After the archive.

    def drain_padding(self) -> None:
        """Decode to the end of the gzip data, which must hold nothing but zero padding."""
        while chunk := self._take(_CHUNK):
            if chunk.count(0) != len(chunk):
                raise UnsafeArtifactError(
                    f"data follows the end-of-archive marker (before offset {self.position}); some "
                    f"extractors would unpack it without it being checked; {_PACKAGING_HINT}"
                )

    # Internals.

    def _take(self, limit: int) -> bytes:
        if self._taken == len(self._buffer):
            self._buffer, self._taken = self._inflate(), 0
        chunk = self._buffer[self._taken : self._taken + limit]
        self._taken += len(chunk)
        self.position += len(chunk)
        return chunk

    def _inflate(self) -> bytes:
        while not self._ended:
            if self._inflater.eof:
                self._next_member()
                continue
            if not self._input:
                self._input = self._source.read(_CHUNK)
            # An inflater may hold output back once it has taken all its input (ISA-L's does, which
            # benchmarks/validate.py swaps in); zlib keeps the gzip trailer unconsumed until then. So the
            # data ends short only when nothing was fed and nothing came out.
            fed = bool(self._input)
            try:
                out = self._inflater.decompress(self._input, _CHUNK)
            except zlib.error as error:
                raise InvalidArtifactError(
                    f"the gzip data is corrupt ({_zlib_reason(error)}) within the first {self._source.count} "
                    "bytes; upload the file again, and check it with `gzip -t model.tar.gz`"
                ) from None
            eof = self._inflater.eof
            self._input = self._inflater.unused_data if eof else self._inflater.unconsumed_tail
            if out:
                self.decoded += len(out)
                if self.decoded > self._ceiling:
                    raise ArtifactTooLargeError(
                        f"archive decompresses to more than {self._ceiling} bytes (file data plus tar headers "
                        "and padding); raise the stack parameter MaxUncompressedBytes or make the model smaller"
                    )
                return out
            if not fed and not eof:
                raise InvalidArtifactError(
                    f"the gzip data is truncated (the object ends after {self._source.count} bytes); "
                    "upload the complete file again"
                )
        return b""

    def _next_member(self) -> None:
        while len(self._input) < len(GZIP_MAGIC):
            more = self._source.read(_CHUNK)
            if not more:
                break
            self._input += more
        if self._input.startswith(GZIP_MAGIC):
            self._inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        else:
            self._ended = True
            self._input = b""


def _zlib_reason(error: zlib.error) -> str:
    reason = str(error).split(": ", 1)[-1]
    if reason in {"incorrect data check", "incorrect length check"}:
        return f"{reason}: the CRC or length in the gzip trailer does not match the data"
    return reason


class _Kind(enum.Enum):
    """What a path is after the members read so far, as an extractor would have left it."""

    IMPLIED_DIRECTORY = "a directory (implied by an earlier member's name)"
    DIRECTORY = "a directory"
    FILE = "a file"
    SYMLINK = "a symlink"


class _Scan:
    def __init__(self, limits: ArtifactLimits) -> None:
        self.limits = limits
        self.members = 0
        self.files = 0
        self.file_bytes = 0
        self.symlinks: dict[str, str] = {}  # normalised name -> target, in archive order
        self.symlink_chars = 0
        # Every path defined or implied so far, keyed by a 128-bit digest of its normalised form so memory
        # stays small however long the names are.
        self.paths: dict[bytes, _Kind] = {_path_key(""): _Kind.IMPLIED_DIRECTORY}
        self.implied_directories = 0


def _scan(decoder: _GzipDecoder, limits: ArtifactLimits) -> _Scan:
    scan = _Scan(limits)
    fileobj = cast(BinaryIO, decoder)  # reads, tells and seeks forward: all tarfile's "r:" mode does
    with tarfile.open(fileobj=fileobj, mode="r:", encoding="utf-8", errors="surrogateescape") as tar:
        while member := _next_member(tar, decoder):
            _count_and_check(member, scan, limits)
    _check_end(decoder)
    if scan.members == 0:
        raise InvalidArtifactError(f"archive is empty: it has no members; {_PACKAGING_HINT}")
    _check_symlinks_resolve_inside(scan.symlinks)
    return scan


def _next_member(tar: tarfile.TarFile, decoder: _GzipDecoder) -> tarfile.TarInfo | None:
    decoder.header_budget = _MAX_HEADER_BYTES
    member = tar.next()
    # tarfile keeps every TarInfo it reads (undocumented, in 3.11 to 3.13); we never look one up
    # again, so drop them and memory stays flat however many members there are.
    tar.members.clear()  # type: ignore[attr-defined]
    return member


def _count_and_check(member: tarfile.TarInfo, scan: _Scan, limits: ArtifactLimits) -> None:
    if member.size < 0:
        raise InvalidArtifactError(f"member {_show(member.name)} declares a negative size ({member.size})")
    scan.members += 1
    if scan.members > limits.max_members:
        raise ArtifactTooLargeError(
            f"archive has more than {limits.max_members} members; raise the stack parameter "
            "MaxArtifactMembers or package fewer files"
        )
    _check_member(member, scan)
    if member.isreg():
        # The declared size, before any of the data is inflated: a bomb stops here.
        scan.files += 1
        scan.file_bytes += member.size
        if scan.file_bytes > limits.max_uncompressed_bytes:
            raise ArtifactTooLargeError(
                f"archive holds more than {limits.max_uncompressed_bytes} bytes of file data (member "
                f"{_show(member.name)} declares {member.size}); raise the stack parameter "
                "MaxUncompressedBytes or make the model smaller"
            )


def _check_end(decoder: _GzipDecoder) -> None:
    """tarfile stops quietly at a bad or short header; only a zero block (or nothing) is a real end."""
    block = decoder.last_read
    if block == b"" or block == bytes(_BLOCK):
        return
    start = decoder.position - len(block)
    if len(block) < _BLOCK:
        raise InvalidArtifactError(
            f"the tar archive is truncated: the header at offset {start} is cut short; {_PACKAGING_HINT}"
        )
    raise InvalidArtifactError(
        f"the tar archive has an invalid header at offset {start}; tarfile would stop there while other "
        f"extractors skip ahead and unpack what follows; {_PACKAGING_HINT}"
    )


def _check_member(member: tarfile.TarInfo, scan: _Scan) -> None:
    name = member.name
    shown = _show(name)
    problem = _name_problem(name)
    if problem:
        raise UnsafeArtifactError(f"member {shown} escapes the model directory: {problem}")
    if member.isdir():
        _check_path(member, scan, _Kind.DIRECTORY)
        return
    if not _parts(name):
        raise UnsafeArtifactError(f"member {shown} is not a directory but names the model directory itself")
    if _SEPARATORS.split(name)[-1] in ("", "."):
        raise UnsafeArtifactError(
            f"member {shown} is not a directory but its name ends with '/' or '/.'; extractors disagree on "
            "whether it is a file or a directory"
        )
    if member.type in _DEVICE_KINDS:
        raise UnsafeArtifactError(
            f"member {shown} is {_DEVICE_KINDS[member.type]}; devices and FIFOs are not allowed in a model"
        )
    if member.issym():
        _check_path(member, scan, _Kind.SYMLINK)
        _check_symlink(member, scan)
    elif member.islnk():
        _check_hardlink(member, scan)  # before its own name is known: a link to itself repeats nothing
        _check_path(member, scan, _Kind.FILE)
    elif member.isreg():
        _check_path(member, scan, _Kind.FILE)
    else:
        raise UnsafeArtifactError(
            f"member {shown} has unsupported type {member.type!r}; only files, directories and links are allowed"
        )
    if member.mode & (stat.S_ISUID | stat.S_ISGID):
        raise UnsafeArtifactError(
            f"member {shown} has the setuid or setgid bit set (mode {member.mode:o}); clear it with `chmod ug-s`"
        )


def _check_path(member: tarfile.TarInfo, scan: _Scan, kind: _Kind) -> None:
    """The member's path as an extractor meets it: through real directories only, and defined once.

    An extractor writing members one by one follows whatever an earlier member left on the path: a symlink
    (``d -> .``, then ``d/e -> ..`` lands outside however ``d`` is redefined later) or a file. So every
    directory on the path must be a real directory, and no name may be defined twice.
    """
    path = "/".join(_parts(member.name))
    shown = _show(member.name)
    # Walk up from the parent until a directory already known: its own ancestors were checked when it was.
    end = len(path)
    while (end := path.rfind("/", 0, end)) > 0:
        ancestor = path[:end]
        key = _path_key(ancestor)
        found = scan.paths.get(key)
        if found in (_Kind.DIRECTORY, _Kind.IMPLIED_DIRECTORY):
            break
        if found is _Kind.SYMLINK:
            raise UnsafeArtifactError(
                f"member {shown} passes through {_show(ancestor)}, a symlink earlier in the archive; an extractor "
                "would write wherever that link points"
            )
        if found is _Kind.FILE:
            raise UnsafeArtifactError(f"member {shown} is inside {_show(ancestor)}, a file earlier in the archive")
        scan.paths[key] = _Kind.IMPLIED_DIRECTORY
        scan.implied_directories += 1
        if scan.implied_directories > scan.limits.max_members:
            raise ArtifactTooLargeError(
                f"the archive's names imply more than {scan.limits.max_members} directories; raise the stack "
                "parameter MaxArtifactMembers or package fewer files"
            )
    key = _path_key(path)
    found = scan.paths.get(key)
    if found is not None and not (found is _Kind.IMPLIED_DIRECTORY and kind is _Kind.DIRECTORY):
        raise UnsafeArtifactError(
            f"member {shown} redefines {_show(path or '.')}, already {found.value} earlier in the archive; "
            "extractors would replace it or write through it; package each path once"
        )
    scan.paths[key] = kind


def _path_key(path: str) -> bytes:
    return hashlib.blake2b(path.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _check_symlink(member: tarfile.TarInfo, scan: _Scan) -> None:
    shown, target = _show(member.name), member.linkname
    problem = _target_problem(target)
    if problem is None:
        # Resolved through the symlinks extracted before it, as the link would be followed right after.
        problem = _escapes([*_parts(member.name)[:-1], *_parts(target)], scan.symlinks)
        if problem is not None:
            problem = f"resolved from the link's directory it {problem}"
    if problem:
        raise UnsafeArtifactError(f"symlink {shown} -> {_show(target)} escapes the model directory: {problem}")
    scan.symlink_chars += len(member.name) + len(target)
    if scan.symlink_chars > _MAX_SYMLINK_CHARS:
        raise UnsafeArtifactError(f"archive has more than {_MAX_SYMLINK_CHARS} characters of symlinks")
    scan.symlinks["/".join(_parts(member.name))] = target


def _check_hardlink(member: tarfile.TarInfo, scan: _Scan) -> None:
    target = member.linkname
    problem = _target_problem(target) or _name_problem(target)
    if problem is None and not _parts(target):
        problem = "it links to the model directory itself"
    if problem:
        raise UnsafeArtifactError(
            f"hardlink {_show(member.name)} -> {_show(target)} escapes the model directory: {problem}"
        )
    if scan.paths.get(_path_key("/".join(_parts(target)))) is not _Kind.FILE:
        raise UnsafeArtifactError(
            f"hardlink {_show(member.name)} -> {_show(target)} does not point at a file earlier in the archive; "
            "a hardlink may only repeat a file stored before it"
        )


def _check_symlinks_resolve_inside(symlinks: Mapping[str, str]) -> None:
    """Follow every symlink through the others: ``a/b -> ..`` then ``a/b/c -> ..`` climbs out of the root."""
    for name, target in symlinks.items():
        parts = name.split("/")
        outcome = _escapes([*parts[:-1], *_parts(target)], symlinks)
        if outcome:
            raise UnsafeArtifactError(
                f"symlink {_show(name)} -> {_show(target)} {outcome} when followed through the archive's other symlinks"
            )


def _escapes(parts: list[str], symlinks: Mapping[str, str]) -> str | None:
    """Walk ``parts`` from the root, following ``symlinks``; say how it goes wrong, or None if it stays in."""
    resolved: list[str] = []
    pending = deque(parts)
    hops = 0
    while pending:
        part = pending.popleft()
        if part == "..":
            if not resolved:
                return "leaves the model directory"
            resolved.pop()
            continue
        resolved.append(part)
        target = symlinks.get("/".join(resolved))
        if target is None:
            continue
        hops += 1
        if hops > _MAX_LINK_HOPS:
            return "is part of a symlink loop"
        resolved.pop()
        if _is_absolute(target):
            return "leaves the model directory"
        pending.extendleft(reversed(_parts(target)))
    return None


def _name_problem(name: str) -> str | None:
    if "\x00" in name:
        return "the name contains a NUL byte"
    if len(name) > _MAX_NAME_CHARS:
        return f"the name is longer than {_MAX_NAME_CHARS} characters"
    if _is_absolute(name):
        return "it is an absolute path"
    if ".." in _SEPARATORS.split(name):
        return "it has a '..' component"
    return None


def _target_problem(target: str) -> str | None:
    if not target:
        return "the link target is empty"
    if "\x00" in target:
        return "the link target contains a NUL byte"
    if len(target) > _MAX_NAME_CHARS:
        return f"the link target is longer than {_MAX_NAME_CHARS} characters"
    if _is_absolute(target):
        return "the link target is an absolute path"
    return None


def _is_absolute(path: str) -> bool:
    return path.startswith(("/", "\\")) or _DRIVE.match(path) is not None


def _parts(path: str) -> list[str]:
    """Path components, with empty and ``.`` ones dropped; ``/`` and ``\\`` both separate."""
    return [part for part in _SEPARATORS.split(path) if part not in ("", ".")]


def _show(name: str) -> str:
    return repr(name if len(name) <= _SHOWN_NAME_CHARS else name[:_SHOWN_NAME_CHARS] + "...")

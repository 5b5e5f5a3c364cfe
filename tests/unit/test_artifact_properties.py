"""The validator's promise, checked on generated archives: what it accepts extracts inside the target.

Hypothesis builds small adversarial archives from a tiny alphabet of names, so collisions, redefinitions,
links through links, ``..`` and absolute names come up often. Every archive ``inspect_artifact`` accepts is
then really extracted twice: with ``tarfile``'s ``data`` filter (which must not object), and member by member
with ``TarFile.extract`` and no filter, as a naive extractor would. Neither may leave the target, and every
link left in the target must resolve inside it.

The extractions run in a forked child. When the tests run as root the child is chrooted into a jail, so a
regression that lets an escape through writes inside the jail, where the test sees it, not on this machine;
otherwise the target sits deep inside the jail so that ``..`` runs are caught before they reach its top.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from dropship.artifact import ArtifactLimits, inspect_artifact
from dropship.errors import ArtifactTooLargeError, InvalidArtifactError, UnsafeArtifactError

LIMITS = ArtifactLimits(max_members=64)
DEPTH = 24  # directories between the jail's top and the target
# Absolute names and link targets point here: inside the jail when chrooted, and never at a real system path.
ABSOLUTE_ROOT = "/dropship-escape"


@dataclass(frozen=True)
class Member:
    kind: str  # file, dir, symlink, hardlink, fifo
    name: str
    link: str = ""
    mode: int = 0o644
    data: bytes = b""

    def tarinfo(self) -> tarfile.TarInfo:
        info = tarfile.TarInfo(self.name)
        info.type = {
            "file": tarfile.REGTYPE,
            "dir": tarfile.DIRTYPE,
            "symlink": tarfile.SYMTYPE,
            "hardlink": tarfile.LNKTYPE,
            "fifo": tarfile.FIFOTYPE,
        }[self.kind]
        info.linkname = self.link
        info.mode = self.mode
        info.mtime = 1_700_000_000
        info.size = len(self.data) if self.kind == "file" else 0
        return info


def archive(members: list[Member]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member in members:
            tar.addfile(member.tarinfo(), io.BytesIO(member.data) if member.kind == "file" else None)
    return gzip.compress(buffer.getvalue(), mtime=0)


# Strategies -------------------------------------------------------------------------------------------

# Names mostly of plain parts, so archives often pass and get extracted; link targets climb more often.
NAME_PARTS = ["a", "b", "d", "e"] * 4 + [".", "", ".."]
TARGET_PARTS = ["a", "b", "d", "e", "..", "..", ".", ""]


@st.composite
def paths(draw: st.DrawFn, parts: list[str]) -> str:
    path = "/".join(draw(st.lists(st.sampled_from(parts), min_size=1, max_size=4)))
    style = draw(st.sampled_from(["plain"] * 24 + ["dot", "dot", "slash", "absolute"]))
    if style == "dot":
        return "./" + path
    if style == "slash":
        return path + "/"
    if style == "absolute":
        return f"{ABSOLUTE_ROOT}/{path}"
    return path


@st.composite
def archives(draw: st.DrawFn) -> list[Member]:
    """Members that often reuse earlier names: repeated (a redefinition), or extended (a path through them)."""
    result: list[Member] = []
    for _ in range(draw(st.integers(1, 6))):
        earlier = [member.name for member in result]
        how = draw(st.sampled_from(["fresh", "repeat", "extend"])) if earlier else "fresh"
        if how == "repeat":
            name = draw(st.sampled_from(earlier))
        elif how == "extend":
            name = draw(st.sampled_from(earlier)).rstrip("/") + "/" + draw(st.sampled_from(NAME_PARTS[:4]))
        else:
            name = draw(paths(NAME_PARTS))
        result.append(draw(member_named(name, earlier)))
    return result


@st.composite
def member_named(draw: st.DrawFn, name: str, earlier: list[str]) -> Member:
    kind = draw(st.sampled_from(["file"] * 6 + ["dir"] * 3 + ["symlink"] * 6 + ["hardlink"] * 3 + ["fifo"]))
    if kind == "file":
        mode = draw(st.sampled_from([0o644, 0o755, 0o600] * 5 + [0o4755]))
        return Member(kind, name, mode=mode, data=draw(st.binary(max_size=8)))
    if kind == "dir":  # owner-writable, so extracting into it works for a non-root user too
        return Member(kind, name, mode=draw(st.sampled_from([0o755, 0o700, 0o2775])))
    # Links point at earlier names as often as not: from the root, or climbing from the link's directory.
    targets = [paths(TARGET_PARTS if kind == "symlink" else NAME_PARTS)]
    if earlier:
        climb = st.sampled_from(["", "../", "../../", "./"])
        targets.append(st.tuples(climb, st.sampled_from(earlier)).map("".join))
    link = draw(st.one_of(*targets))
    return Member(kind, name, link=link, mode=0o777 if kind == "symlink" else 0o644)


def m(kind: str, name: str, link: str = "", data: bytes = b"x") -> Member:
    return Member(kind, name, link=link, data=data if kind == "file" else b"", mode=0o755 if kind == "dir" else 0o644)


# The known attacks, always tried first.
ISSUE_8 = [m("symlink", "d", "."), m("symlink", "d/e", ".."), m("symlink", "d", "sub"), m("file", "e/evil.txt")]
RELINKED_DIR = [m("symlink", "d", "."), m("symlink", "d", "sub"), m("file", "d/x")]
HARDLINK_TO_SYMLINK = [m("dir", "a"), m("symlink", "a/s", "../x"), m("hardlink", "h", "a/s"), m("file", "h/y")]
FILE_THEN_SYMLINK = [m("file", "x"), m("symlink", "x", ".."), m("file", "x/y")]


# Extraction in a jail -----------------------------------------------------------------------------------


def extract_in_child(data: bytes, jail: Path, target: Path, how: str) -> str | None:
    """Extract ``data`` into ``target`` in a forked child (chrooted into ``jail`` as root); the error, if any."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read_end)
        status = 0
        try:
            root = jail
            if os.geteuid() == 0:
                os.chroot(jail)
                os.chdir("/")
                root = Path("/")
            where = root / target.relative_to(jail)
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
                if how == "data":
                    tar.extractall(where, filter="data")
                else:
                    for info in tar.getmembers():
                        tar.extract(info, where, filter="fully_trusted")
        except BaseException:
            os.write(write_end, traceback.format_exc().encode())
            status = 1
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        error = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    return error or (None if status == 0 else f"child exited with status {status}")


def make_jail(base: Path) -> tuple[Path, Path]:
    jail = base / "jail"
    target = jail.joinpath(*(["up"] * DEPTH), "model")
    target.mkdir(parents=True)
    return jail, target


def escapes(jail: Path, target: Path) -> list[str]:
    """Whatever is in the jail but outside the target, and links in the target that resolve outside it."""
    allowed = {target, *target.parents}
    found = []
    for directory, dirnames, filenames in os.walk(jail):
        for name in dirnames + filenames:
            path = Path(directory, name)
            if path not in allowed and target not in path.parents:
                found.append(f"{path.relative_to(jail)} was written outside the target")
    real_target = target.resolve()
    links_inside: dict[tuple[int, int], list[int]] = {}  # inode -> [names in the target, its link count]
    for directory, dirnames, filenames in os.walk(target):
        for name in dirnames + filenames:
            path = Path(directory, name)
            resolved = path.resolve()
            if resolved != real_target and real_target not in resolved.parents:
                found.append(f"{path.relative_to(target)} resolves to {resolved}, outside the target")
            info = path.lstat()
            if stat.S_ISREG(info.st_mode):
                links_inside.setdefault((info.st_dev, info.st_ino), [0, info.st_nlink])[0] += 1
    for count, nlink in links_inside.values():
        if count != nlink:
            found.append(f"a file in the target is hardlinked to {nlink - count} file(s) outside it")
    return found


def accepted(data: bytes) -> bool:
    try:
        inspect_artifact(io.BytesIO(data), LIMITS)
    except (UnsafeArtifactError, InvalidArtifactError, ArtifactTooLargeError):
        return False
    return True


def check_extracts_inside(data: bytes, base: Path) -> None:
    for how in ("data", "member-by-member"):
        jail, target = make_jail(base / how)
        error = extract_in_child(data, jail, target, how)
        assert error is None, f"{how} extraction of an accepted archive failed:\n{error}"
        assert escapes(jail, target) == [], how


# Properties -----------------------------------------------------------------------------------------------


@settings(max_examples=max(400, settings.default.max_examples))
@given(archives())
@example(ISSUE_8)
@example(RELINKED_DIR)
@example(HARDLINK_TO_SYMLINK)
@example(FILE_THEN_SYMLINK)
def test_every_accepted_archive_extracts_inside_the_target(members: list[Member]) -> None:
    data = archive(members)
    event("accepted" if accepted(data) else "refused")
    if accepted(data):
        with tempfile.TemporaryDirectory() as base:
            check_extracts_inside(data, Path(base))


@pytest.mark.parametrize("members", [ISSUE_8, RELINKED_DIR, HARDLINK_TO_SYMLINK, FILE_THEN_SYMLINK])
def test_the_known_attacks_are_refused(members: list[Member]) -> None:
    assert not accepted(archive(members))


def test_the_harness_sees_an_escape(tmp_path: Path) -> None:
    # The oracle itself: the issue's archive, extracted member by member, is reported as leaving the target.
    jail, target = make_jail(tmp_path)
    assert extract_in_child(archive(ISSUE_8), jail, target, "member-by-member") is None
    assert any("outside the target" in problem for problem in escapes(jail, target))


@given(st.lists(st.sampled_from(["a", "b", "c/d", "c", "e/f/g"]), min_size=1, max_size=6, unique=True))
def test_archives_of_distinct_plain_files_are_accepted(names: list[str]) -> None:
    # Refusing is not the whole job: a plain model directory (no file is also a folder of another) passes.
    paths = [n for n in names if not any(other.startswith(n + "/") for other in names)]
    data = archive([m("file", name) for name in paths])
    report = inspect_artifact(io.BytesIO(data), LIMITS)
    assert report.files == len(paths)

"""The local stack's child processes (endpoint servers, Lambda workers), which never outlive it.

Every child is started by one ``Supervisor``:

- in its own session and process group, so stopping it signals the whole tree (an endpoint's gunicorn
  master and the workers it forks);
- on Linux with the parent-death signal (``prctl(PR_SET_PDEATHSIG, SIGKILL)``, set between fork and
  exec): the kernel kills the child the moment the stack dies, even by SIGKILL. The kernel sends it when
  the *thread* that forked the child ends, so every child is forked by one long-lived spawner thread;
- registered with a reaper: a tiny process reading a pipe from the stack. When the stack dies, however it
  dies, the kernel closes the pipe and the reaper SIGKILLs every process group still registered
  (gunicorn's workers are forked by the master, so the parent-death signal does not reach them);
- recorded under ``<records dir>/<pid>.json`` (pid, the process's start time, command) until it ends, so
  what a dead stack left (say the reaper was killed with it) can be found and stopped later
  (``dropship local up``, ``dropship local status``), checked by its start time to still be ours.

A watcher thread notices children that exit and calls their ``on_exit`` (an endpoint whose server dies
becomes ``Failed``).

Standard library only: the command line imports ``leftovers`` and ``stop_leftovers`` without moto.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

WATCH_INTERVAL_S = 0.2
_PR_SET_PDEATHSIG = 1

# Run with `python -I -S -c`: starts in milliseconds, a few MB. Lines "+<pgid>" / "-<pgid>" on stdin;
# at end of file (the stack exited, however) every registered group is killed.
_REAPER = """
import os, signal, sys
for name in ("SIGINT", "SIGHUP", "SIGTERM"):
    signal.signal(getattr(signal, name), signal.SIG_IGN)
groups = set()
for line in sys.stdin:
    line = line.strip()
    if line[:1] == "+":
        groups.add(int(line[1:]))
    elif line[:1] == "-":
        groups.discard(int(line[1:]))
for group in groups:
    try:
        os.killpg(group, signal.SIGKILL)
    except OSError:
        pass
"""


def _parent_death_hook() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child die with this process (Linux only; else None)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    parent = os.getpid()

    def die_with_parent() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)

    return die_with_parent


def _stat_fields(pid: int | str) -> list[str] | None:
    """/proc/<pid>/stat from field 3 (state) on; the command name (field 2) may hold spaces and parentheses."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_identity(pid: int) -> str | None:
    """What tells this process from a later one given the same pid: its start time. None if it is gone."""
    if Path("/proc/self/stat").exists():
        fields = _stat_fields(pid)
        return fields[19] if fields else None  # field 22, starttime
    try:  # no /proc (macOS): ps prints the start time
        out = subprocess.run(["ps", "-o", "lstart=", "-p", str(pid)], capture_output=True, text=True, check=False)
    except OSError:
        return None
    return out.stdout.strip() or None


def group_members(leader: int, identity: str) -> list[int]:
    """The processes still in the process group ``leader`` started (its own session), itself included.

    Linux never gives a new process a pid still used as a process group id, so once the leader is gone
    every process left in its group is one it started; while it lives, its start time must match.
    Without /proc only the leader itself is found.
    """
    current = process_identity(leader)
    if current is not None and current != identity:
        return []  # the pid now belongs to an unrelated process
    if not Path("/proc/self/stat").exists():
        return [leader] if current is not None else []
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(entry.name)
            if fields and fields[2] == str(leader) and fields[0] != "Z":  # field 5, pgrp; not a zombie
                members.append(int(entry.name))
    return sorted(members)


def signal_group(pid: int, signum: int) -> None:
    """Signal the process group ``pid`` leads (its own session); quietly nothing if it is gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


@dataclass(frozen=True)
class Record:
    """A started child, as written under the records dir."""

    pid: int
    identity: str
    kind: str
    name: str
    command: tuple[str, ...]

    def running(self) -> list[int]:
        """The processes of its group still running (none when it is gone)."""
        return group_members(self.pid, self.identity) if self.identity else []


@dataclass
class _Child:
    process: subprocess.Popen[bytes]
    record: Record
    on_exit: Callable[[int], None] | None
    stopping: bool = False


class Supervisor:
    """Starts, watches and stops the local stack's child processes. ``start()`` before ``spawn()``."""

    def __init__(self, records_dir: Path) -> None:
        self.records_dir = Path(records_dir)
        self._children: dict[int, _Child] = {}
        self._lock = threading.Lock()
        self._requests: queue.Queue[tuple[Callable[[], Any], Future[Any]] | None] = queue.Queue()
        self._stopped = threading.Event()
        self._spawner: threading.Thread | None = None
        self._watcher: threading.Thread | None = None
        self._reaper: subprocess.Popen[bytes] | None = None
        self._preexec = _parent_death_hook()

    # -- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> Supervisor:
        self.records_dir.mkdir(parents=True, exist_ok=True)
        self._spawner = threading.Thread(target=self._spawn_loop, name="local-stack-spawner", daemon=True)
        self._spawner.start()
        self._reaper = self._submit(self._start_reaper)
        self._watcher = threading.Thread(target=self._watch_loop, name="local-stack-watcher", daemon=True)
        self._watcher.start()
        _supervisors.add(self)
        return self

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop every child still running (process group SIGTERM, then SIGKILL), then the reaper."""
        with self._lock:
            children = list(self._children.values())
        stoppers = [threading.Thread(target=self.terminate, args=(c.process, grace_s)) for c in children]
        for thread in stoppers:
            thread.start()
        for thread in stoppers:
            thread.join()
        self._stopped.set()
        reaper, self._reaper = self._reaper, None
        if reaper is not None and reaper.stdin is not None:
            with contextlib.suppress(OSError):
                reaper.stdin.close()  # end of file: the reaper exits (nothing is left to kill)
            with contextlib.suppress(subprocess.TimeoutExpired):
                reaper.wait(timeout=grace_s)
        self._requests.put(None)
        for worker in (self._spawner, self._watcher):
            if worker is not None and worker is not threading.current_thread():
                worker.join(timeout=grace_s)
        _supervisors.discard(self)

    # -- starting -----------------------------------------------------------------------------------
    def spawn(
        self,
        command: list[str],
        *,
        kind: str,
        name: str,
        on_exit: Callable[[int], None] | None = None,
        **popen: Any,
    ) -> subprocess.Popen[bytes]:
        """Start ``command`` (``subprocess.Popen`` arguments in ``popen``) as a supervised child.

        ``on_exit(returncode)`` is called from the watcher thread if it exits without ``terminate``.
        """
        if self._stopped.is_set() or self._spawner is None:
            raise RuntimeError("the local stack's process supervisor is not running")

        def start() -> subprocess.Popen[bytes]:
            return subprocess.Popen(command, start_new_session=True, preexec_fn=self._preexec, **popen)

        process: subprocess.Popen[bytes] = self._submit(start)
        record = Record(process.pid, process_identity(process.pid) or "", kind, name, tuple(str(c) for c in command))
        with self._lock:
            self._children[process.pid] = _Child(process, record, on_exit)
        self._write_record(record)
        self._tell_reaper(f"+{process.pid}")
        return process

    def _submit(self, function: Callable[[], Any]) -> Any:
        if threading.current_thread() is self._spawner:
            return function()
        future: Future[Any] = Future()
        self._requests.put((function, future))
        return future.result()

    def _spawn_loop(self) -> None:
        """The one thread that forks children: the parent-death signal fires when *it* ends."""
        while True:
            request = self._requests.get()
            if request is None:
                return
            function, future = request
            try:
                future.set_result(function())
            except BaseException as exc:
                future.set_exception(exc)

    def _start_reaper(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _REAPER],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # terminal signals (Ctrl-C) reach the stack, not its reaper
        )

    def _tell_reaper(self, line: str) -> None:
        reaper = self._reaper
        if reaper is None or reaper.stdin is None:
            return
        try:
            with self._lock:
                reaper.stdin.write(f"{line}\n".encode())
                reaper.stdin.flush()
        except (OSError, ValueError):
            log.warning("the local stack's reaper is gone: children are stopped by the stack alone")

    # -- stopping -----------------------------------------------------------------------------------
    def terminate(self, process: subprocess.Popen[bytes], grace_s: float = 5.0) -> int | None:
        """SIGTERM the child's process group, SIGKILL it after ``grace_s`` (at once if 0): the whole group goes."""
        with self._lock:
            child = self._children.get(process.pid)
            if child is not None:
                child.stopping = True
        if process.poll() is None and grace_s > 0:
            signal_group(process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=grace_s)
        if process.poll() is None:
            signal_group(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5.0)
        # What the leader forked and left behind. (Its pid is not given to another process meanwhile: the
        # kernel keeps it while the group has members, and hands out freed pids only after wrapping around.)
        signal_group(process.pid, signal.SIGKILL)
        self._forget(process.pid)
        return process.returncode

    def _forget(self, pid: int) -> None:
        with self._lock:
            child = self._children.pop(pid, None)
        if child is None:
            return
        self._tell_reaper(f"-{pid}")
        (self.records_dir / f"{pid}.json").unlink(missing_ok=True)

    def _watch_loop(self) -> None:
        while not self._stopped.wait(WATCH_INTERVAL_S):
            with self._lock:
                children = list(self._children.values())
            for child in children:
                code = child.process.poll()
                if code is None or child.stopping:
                    continue
                signal_group(child.process.pid, signal.SIGKILL)  # its workers, if the leader crashed
                self._forget(child.process.pid)
                if child.on_exit is not None:
                    try:
                        child.on_exit(code)
                    except Exception:  # a callback bug must not stop the watcher
                        log.exception("on_exit of %s %s failed", child.record.kind, child.record.name)

    # -- records ------------------------------------------------------------------------------------
    def _write_record(self, record: Record) -> None:
        path = self.records_dir / f"{record.pid}.json"
        try:
            path.write_text(json.dumps(record.__dict__))
        except OSError:
            log.warning("could not record child process %s in %s", record.pid, path)

    def children(self, kind: str | None = None) -> list[Record]:
        with self._lock:
            return [c.record for c in self._children.values() if kind is None or c.record.kind == kind]


def read_records(records_dir: Path) -> list[Record]:
    """Every record under ``records_dir`` (unreadable ones skipped)."""
    records = []
    for path in sorted(Path(records_dir).glob("*.json")):
        try:
            data = json.loads(path.read_text())
            records.append(
                Record(int(data["pid"]), str(data["identity"]), data["kind"], data["name"], tuple(data["command"]))
            )
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return records


def leftovers(records_dir: Path) -> dict[Record, list[int]]:
    """Recorded children whose process group still runs, with the pids left in it."""
    found = {}
    for record in read_records(records_dir):
        pids = record.running()
        if pids:
            found[record] = pids
    return found


def stop_leftovers(records_dir: Path, grace_s: float = 3.0) -> dict[Record, list[int]]:
    """SIGKILL what recorded children left running (whole process groups); remove every record."""
    found = leftovers(records_dir)
    for record, pids in found.items():
        signal_group(record.pid, signal.SIGKILL)
        for pid in pids:  # a member that left the group, on a system without process groups
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + grace_s
    while any(r.running() for r in found) and time.monotonic() < deadline:
        time.sleep(0.05)
    for path in Path(records_dir).glob("*.json"):
        path.unlink(missing_ok=True)
    return found


def tree_size(path: Path) -> int:
    """Bytes in the files under ``path`` (0 if it does not exist)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


_supervisors: weakref.WeakSet[Supervisor] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    """No child outlives the interpreter that started it (also covered by the signal and the reaper)."""
    for supervisor in list(_supervisors):
        with contextlib.suppress(Exception):
            supervisor.stop(grace_s=2.0)

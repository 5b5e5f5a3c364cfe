"""Child processes that never outlive the local stack, and finding what a dead stack left."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from dropship.local.processes import Supervisor, leftovers, read_records, stop_leftovers
from tests.local.conftest import await_exit, group_of, wait_until

SRC = Path(__file__).resolve().parents[2] / "src"

# A server that forks a worker ignoring SIGTERM, as gunicorn's master forks its workers.
FORKING = """
import os, signal, time
if os.fork() == 0:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
while True:
    time.sleep(60)
"""

# A stand-in for the stack: a supervisor starting one forking child, then waiting to be killed.
STACK = """
import json, sys, threading
from pathlib import Path
from dropship.local.processes import Supervisor

supervisor = Supervisor(Path(sys.argv[1])).start()
child = supervisor.spawn([sys.executable, "-c", sys.argv[2]], kind="endpoint", name="tree")
print(json.dumps({"leader": child.pid, "reaper": supervisor._reaper.pid}), flush=True)
threading.Event().wait()
"""


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[Supervisor]:
    started = Supervisor(tmp_path / "processes").start()
    try:
        yield started
    finally:
        started.stop()


def _stand_in_stack(records: Path) -> tuple[subprocess.Popen[str], int, int]:
    process = subprocess.Popen(
        [sys.executable, "-c", STACK, str(records), FORKING],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(SRC)},
    )
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], 30)
    assert ready, "the stand-in stack did not start"
    pids = json.loads(process.stdout.readline())
    return process, pids["leader"], pids["reaper"]


def test_a_stack_killed_with_sigkill_takes_its_whole_process_tree(tmp_path: Path) -> None:
    # Given a stack whose child forked a worker that ignores SIGTERM
    stack, leader, _ = _stand_in_stack(tmp_path / "processes")
    tree = wait_until(lambda: len(group_of(leader)) == 2 and group_of(leader), 10)

    # When the stack is killed with SIGKILL (no clean-up code of its own runs)
    stack.kill()
    stack.wait()

    # Then the child (parent-death signal) and the worker it forked (the reaper) end too
    await_exit(tree)


def test_what_a_dead_stack_left_is_found_and_stopped(tmp_path: Path) -> None:
    # Given a stack killed together with its reaper: its child dies with it, the forked worker is left
    records = tmp_path / "processes"
    stack, leader, reaper = _stand_in_stack(records)
    tree = wait_until(lambda: len(group_of(leader)) == 2 and group_of(leader), 10)
    os.kill(reaper, signal.SIGKILL)
    stack.kill()
    stack.wait()
    await_exit([leader])
    (worker,) = set(tree) - {leader}

    # When the records are read, Then the leftover worker is found, by its process group
    found = leftovers(records)
    assert [(record.kind, record.name, pids) for record, pids in found.items()] == [("endpoint", "tree", [worker])]

    # And stopping the leftovers ends it and removes the records
    stop_leftovers(records)
    await_exit([worker])
    assert read_records(records) == []
    assert leftovers(records) == {}


def test_terminate_stops_the_whole_group(supervisor: Supervisor) -> None:
    child = supervisor.spawn([sys.executable, "-c", FORKING], kind="endpoint", name="tree")
    tree = wait_until(lambda: len(group_of(child.pid)) == 2 and group_of(child.pid), 10)
    assert [r.pid for r in read_records(supervisor.records_dir)] == [child.pid]

    supervisor.terminate(child, grace_s=0.5)

    await_exit(tree)
    assert read_records(supervisor.records_dir) == []
    assert supervisor.children() == []


def test_a_child_that_exits_is_reported_and_forgotten(supervisor: Supervisor) -> None:
    exited = threading.Event()
    codes: list[int] = []

    def on_exit(code: int) -> None:
        codes.append(code)
        exited.set()

    supervisor.spawn([sys.executable, "-c", "raise SystemExit(7)"], kind="lambda", name="f", on_exit=on_exit)

    assert exited.wait(10)
    assert codes == [7]
    assert supervisor.children() == []
    assert read_records(supervisor.records_dir) == []


def test_a_stale_record_is_not_a_leftover(tmp_path: Path) -> None:
    # Given a record of a process that has ended (its pid may since belong to anyone)
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    records = tmp_path / "processes"
    records.mkdir()
    (records / "1.json").write_text(
        json.dumps({"pid": int(done.stdout), "identity": "1", "kind": "lambda", "name": "f", "command": ["x"]})
    )
    # Then it is no leftover, and stopping leftovers clears the record
    assert leftovers(records) == {}
    assert stop_leftovers(records) == {}
    assert list(records.iterdir()) == []

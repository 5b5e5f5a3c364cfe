"""``dropship local up --detach | down | status`` around a stand-in for ``python -m dropship.local``.

The stand-in serves moto on the port and creates a ``dropship`` stack with the real output names, then
waits for SIGTERM, which is all the CLI relies on. The real engine is exercised by the end-to-end tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from cli_support import STACK_TEMPLATE

import dropship.cli.local as cli_local
from dropship.cli.errors import CliError
from dropship.local.ports import free_port
from tests.local.conftest import await_exit

STAND_IN = """
import json, signal, sys, threading
import boto3
from moto.server import ThreadedMotoServer

# stand-in for: python -m dropship.local
host, port, template = sys.argv[1], int(sys.argv[2]), sys.argv[3]
server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
server.start()
boto3.client(
    "cloudformation", endpoint_url=f"http://{host}:{port}", region_name="us-east-1",
    aws_access_key_id="x", aws_secret_access_key="x",
).create_stack(StackName="dropship", TemplateBody=template)
print("dropship local stack ready: (stand-in)", flush=True)
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
stop.wait()
server.stop()
print("stopped cleanly", flush=True)
"""


@pytest.fixture
def port(clean_env: None, monkeypatch: pytest.MonkeyPatch) -> int:
    chosen = free_port()
    monkeypatch.setenv("DROPSHIP_ENDPOINT_URL", f"http://127.0.0.1:{chosen}")
    return chosen


def test_the_project_dir_is_this_repository_by_default(clean_env: None, project_dir: Path) -> None:
    assert cli_local.project_dir(None) == project_dir


def test_the_project_dir_can_be_chosen(clean_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "template.yaml").write_text("Resources: {}\n")
    assert cli_local.project_dir(str(tmp_path)) == tmp_path.resolve()
    monkeypatch.setenv("DROPSHIP_PROJECT_DIR", str(tmp_path))
    assert cli_local.project_dir(None) == tmp_path.resolve()
    with pytest.raises(CliError, match=r"has no template\.yaml"):
        cli_local.project_dir(str(tmp_path / "elsewhere"))


def test_the_state_dir_is_dropship_home(clean_env: None, tmp_path: Path) -> None:
    assert cli_local.pid_file() == tmp_path / "dropship-home" / "stack.pid"
    assert cli_local.log_file() == tmp_path / "dropship-home" / "stack.log"


def test_down_when_nothing_runs(port: int, cli: Any) -> None:
    result = cli("local", "down")
    assert result.code == 0
    assert "not running: nothing to stop" in result.out


def test_status_when_nothing_runs(port: int, cli: Any) -> None:
    cli("local", "status").assert_error("the local stack is not running", "start it with `dropship local up`")


def test_a_stale_pid_file_is_ignored(port: int, cli: Any) -> None:
    # Given a pid file left by a stack that died
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    cli_local.pid_file().parent.mkdir(parents=True)
    stale = {
        "pid": int(finished.stdout),
        "host": "127.0.0.1",
        "port": port,
        "project_dir": "/",
        "log_file": "x",
        "started_at": "t",
    }
    cli_local.pid_file().write_text(json.dumps(stale))
    # Then nothing is reported running, and down removes the file
    assert cli_local.read_running() is None
    assert cli("local", "down").code == 0
    assert not cli_local.pid_file().exists()


@pytest.mark.parametrize("mode", [[], ["--detach"]], ids=["default", "detach"])
def test_up_returns_when_ready_then_status_then_down(
    port: int, cli: Any, monkeypatch: pytest.MonkeyPatch, mode: list[str]
) -> None:
    # Given the server command is the stand-in
    monkeypatch.setattr(
        cli_local,
        "server_command",
        lambda host, port, directory: [sys.executable, "-c", STAND_IN, host, str(port), json.dumps(STACK_TEMPLATE)],
    )

    # When the local stack is started (it runs in the background by default, as the contract says)
    up = cli("local", "up", *mode, "--port", str(port))

    # Then it returns once the stack answers, printing the endpoint and the outputs
    assert up.code == 0, up.err
    assert f"ready on http://127.0.0.1:{port}" in up.out
    assert "ReleaseStateMachineArn" in up.out
    # And, as --local would not reach this port, how to point the CLI at it
    assert f"Use it with `DROPSHIP_ENDPOINT_URL=http://127.0.0.1:{port} dropship ...`" in up.out
    running = cli_local.read_running()
    assert running is not None
    assert running.port == port

    # And status reports it with its pid; a second up is a no-op
    status = cli("local", "status")
    assert status.code == 0, status.err
    assert f"running (pid {running.pid}) on http://127.0.0.1:{port}" in status.out
    assert "already running" in cli("local", "up", "--detach", "--port", str(port)).out

    # When it is brought down, Then the process stopped cleanly and the pid file is gone
    down = cli("local", "down")
    assert down.code == 0, down.err
    assert "Stopped." in down.out
    assert not cli_local.pid_file().exists()
    assert "stopped cleanly" in cli_local.log_file().read_text()
    cli("local", "status").assert_error("not running")


def test_up_detached_reports_a_server_that_dies(port: int, cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a server command that fails at once
    script = "import sys; print('cannot serve on 127.0.0.1: address in use'); sys.exit(3)  # dropship"
    monkeypatch.setattr(cli_local, "server_command", lambda *_: [sys.executable, "-c", script])

    # When the local stack is started detached
    result = cli("local", "up", "--detach", "--port", str(port))

    # Then it exits 1 with the log's tail and the reason on the last line
    assert result.code == 1
    assert "cannot serve on 127.0.0.1: address in use" in result.err
    assert result.err.strip().splitlines()[-1].startswith("dropship: error: the local stack exited with code 3")
    assert not cli_local.pid_file().exists()


def test_a_stack_already_answering_on_the_port_is_not_taken_for_ours() -> None:
    # Given a log in which our process has not said it is ready (another server may answer on the port)
    from dropship.cli.local import _said_ready

    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "stack.log"
        log.write_text("Starting ...\n")
        assert not _said_ready(log)
        # When our process prints its ready line, Then it is ready
        log.write_text("Starting ...\ndropship local stack ready: http://127.0.0.1:4566 {}\n")
        assert _said_ready(log)


def _stand_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        cli_local,
        "server_command",
        lambda host, port, directory: [sys.executable, "-c", STAND_IN, host, str(port), json.dumps(STACK_TEMPLATE)],
    )


def test_up_serves_on_dropship_local_port_by_default(port: int, cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given DROPSHIP_LOCAL_PORT names a port and no --port is given
    _stand_in(monkeypatch)
    monkeypatch.setenv("DROPSHIP_LOCAL_PORT", str(port))
    # When the local stack is started, Then it serves on that port
    up = cli("local", "up")
    try:
        assert up.code == 0, up.err
        assert f"ready on http://127.0.0.1:{port}" in up.out
        # And `dropship --local` reaches it, since it reads the same variable
        assert "Use it with `dropship --local ...`" in up.out
    finally:
        assert cli("local", "down").code == 0


def test_a_bad_dropship_local_port_is_a_one_line_error(
    clean_env: None, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DROPSHIP_LOCAL_PORT", "http")
    cli("local", "up").assert_error("DROPSHIP_LOCAL_PORT='http' is not a port number")


@pytest.mark.parametrize("mode", [[], ["--foreground"]], ids=["detached", "foreground"])
def test_without_the_local_extra_up_names_what_to_install(
    clean_env: None, cli: Any, monkeypatch: pytest.MonkeyPatch, mode: list[str]
) -> None:
    # Given an installation without the `local` extra (moto cannot be imported)
    monkeypatch.setitem(sys.modules, "moto", None)
    # When the local stack is started, Then one line says what to install, and nothing was started
    result = cli("local", "up", *mode, "--port", str(free_port()))
    assert result.code == 1
    assert result.err.count("\n") == 1, result.err
    assert "no module moto" in result.err
    assert "pip install 'dropship[local]'" in result.err
    assert not cli_local.pid_file().exists()


# A server that forked a worker, both in their own session: what a dead stack leaves.
FORKING = "import os, time\nos.fork()\nwhile True:\n    time.sleep(60)\n"


def _leftover_endpoint(run_dir: Path) -> list[int]:
    """Start a process group as an endpoint a dead stack left, recorded as the stack records it."""
    from dropship.local.processes import group_members, process_identity

    process = subprocess.Popen([sys.executable, "-c", FORKING], start_new_session=True)
    identity = process_identity(process.pid)
    assert identity is not None
    records = run_dir / "processes"
    records.mkdir(parents=True)
    record = {"pid": process.pid, "identity": identity, "kind": "endpoint", "name": "churn-1", "command": ["serve"]}
    (records / f"{process.pid}.json").write_text(json.dumps(record))
    (run_dir / "endpoints").mkdir()
    (run_dir / "endpoints" / "model.bin").write_bytes(b"x" * 1024 * 1024)
    deadline = time.monotonic() + 10
    while len(members := group_members(process.pid, identity)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    return members


def test_status_reports_a_dead_stack_then_up_cleans_up_after_it(
    port: int, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a stack that died (its pid file left behind) leaving an endpoint's processes and working files
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    dead_pid = int(finished.stdout)
    state = cli_local.state_dir()
    group = _leftover_endpoint(state / "run")
    cli_local.pid_file().write_text(
        json.dumps(
            {
                "pid": dead_pid,
                "host": "127.0.0.1",
                "port": port,
                "project_dir": "/",
                "log_file": "x",
                "started_at": "t0",
            }
        )
    )

    # When its status is asked, Then it says the stack died and what it left
    status = cli("local", "status")
    assert status.code == 1
    assert f"The local stack died (pid {dead_pid}, started t0)" in status.out
    assert "2 processes (endpoint churn-1)" in status.out
    assert "1.0 MiB of working files" in status.out
    assert "`dropship local up` cleans up what it left" in status.err

    # When the stack is started again, Then one line says what was cleaned up, and it is gone
    _stand_in(monkeypatch)
    up = cli("local", "up", "--port", str(port))
    try:
        assert up.code == 0, up.err
        first = up.out.splitlines()[0]
        assert first == (
            f"Cleaned up after a local stack that died (pid {dead_pid}): stopped 2 processes, "
            "removed 1.0 MiB of working files."
        )
        await_exit(group)
        assert not (state / "run").exists()
    finally:
        assert cli("local", "down").code == 0


def test_a_clean_start_says_nothing_about_cleaning(port: int, cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _stand_in(monkeypatch)
    up = cli("local", "up", "--port", str(port))
    try:
        assert up.code == 0, up.err
        assert "Cleaned up" not in up.out
    finally:
        cli("local", "down")

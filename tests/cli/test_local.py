"""``dropship local up --detach | down | status`` around a stand-in for ``python -m dropship.local``.

The stand-in serves moto on the port and creates a ``dropship`` stack with the real output names, then
waits for SIGTERM, which is all the CLI relies on. The real engine is exercised by the end-to-end tests.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from cli_support import STACK_TEMPLATE

import dropship.cli.local as cli_local
from dropship.cli.errors import CliError

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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

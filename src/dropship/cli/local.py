"""``dropship local up|down|status``: the local stack, detached in the background (or in the foreground).

Detached, the stack runs as ``python -m dropship.local`` in its own session; its pid file
(``stack.pid``, JSON), log (``stack.log``), the endpoints' and functions' logs (``logs/``) and working
files (``run/``) live in the state dir: ``$DROPSHIP_HOME`` when set, else ``~/.dropship/local``
(``dropship.local.paths``). ``up`` serves on ``--port``, else ``$DROPSHIP_LOCAL_PORT``, else 4566.

A stack that died (``kill -9``, a crash) is reported by ``status`` with what it left (processes, working
files), and cleaned up by the next ``up``. This module needs only the standard library and boto3: without
the ``local`` extra, ``up`` says what to install.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dropship
from dropship.cli.errors import CliError
from dropship.cli.pack import format_size
from dropship.cli.stack import (
    DEFAULT_STACK_NAME,
    ENDPOINT_ENV,
    LOCAL_REGION,
    OUTPUT_NAMES,
    Stack,
    Target,
    local_endpoint_url,
    local_port,
)
from dropship.local import paths
from dropship.local.processes import Record, leftovers, stop_leftovers, tree_size

HOME_ENV = paths.HOME_ENV
PROJECT_DIR_ENV = "DROPSHIP_PROJECT_DIR"
# What `python -m dropship.local` imports beyond the core dependencies (the `local` extra).
LOCAL_EXTRA_MODULES = ("moto", "samtranslator", "yaml", "requests")
READY_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 30.0
POLL_S = 0.5
LOG_TAIL_LINES = 30


@dataclass(frozen=True)
class Running:
    """What the pid file records about a detached local stack."""

    pid: int
    host: str
    port: int
    project_dir: str
    log_file: str
    started_at: str

    @property
    def endpoint_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"


def state_dir() -> Path:
    return paths.state_dir()


def pid_file() -> Path:
    return paths.pid_file()


def log_file() -> Path:
    return paths.stack_log()


def require_local_extra() -> None:
    """One line naming what to install when the local stack's dependencies are missing."""
    missing = [name for name in LOCAL_EXTRA_MODULES if not _importable(name)]
    if missing:
        raise CliError(
            f"the local stack needs the 'local' extra, which is not installed (no module {', '.join(missing)}): "
            "pip install 'dropship[local]'"
        )


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def project_dir(option: str | None) -> Path:
    """``--project-dir``, else ``$DROPSHIP_PROJECT_DIR``, else the repository this package runs from."""
    chosen = option or os.environ.get(PROJECT_DIR_ENV)
    if chosen:
        path = Path(chosen).expanduser().resolve()
        if not (path / "template.yaml").is_file():
            raise CliError(f"{path} has no template.yaml: point --project-dir at the dropship repository")
        return path
    here = Path(dropship.__file__).resolve().parents[2]
    if (here / "template.yaml").is_file():
        return here
    raise CliError("cannot find the dropship project (template.yaml): pass --project-dir or set DROPSHIP_PROJECT_DIR")


def run(args: argparse.Namespace, stack_factory: Callable[[], Stack]) -> int:
    del stack_factory  # the local commands make their own target
    if args.local_command == "up":
        # The contract: `local up` returns once the stack is ready, leaving it running in the background.
        return foreground(args) if args.foreground else detach(args)
    if args.local_command == "down":
        return down()
    return status()


# -- up ----------------------------------------------------------------------------------------------


def foreground(args: argparse.Namespace) -> int:
    """Run the stack in this process until Ctrl-C (or SIGTERM), like ``docker compose up``."""
    directory = project_dir(args.project_dir)
    port = args.port if args.port is not None else local_port()
    _refuse_if_running()
    require_local_extra()
    from dropship.local.deploy import DeployError
    from dropship.local.stack import LocalStack, LocalStackError

    clean_up_after_a_dead_stack()
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stack = LocalStack(directory, host=args.host, port=port, state_dir=state_dir())
    print(f"Starting the local stack on {args.host}:{port} (project {directory}) ...", flush=True)
    try:
        try:
            stack.start()
        except (LocalStackError, DeployError, OSError) as exc:
            raise CliError(f"the local stack did not start: {exc}") from exc
        running = Running(
            os.getpid(), args.host, stack.port, str(directory), "(foreground)", datetime.now(UTC).isoformat()
        )
        with _pid_file(running):
            _print_ready(stack.endpoint_url, stack.outputs)
            print("Press Ctrl-C to stop.", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                while not stop.wait(1.0):
                    pass
    finally:
        print("Stopping the local stack ...", flush=True)
        stack.stop()
        signal.signal(signal.SIGTERM, previous)
    print("Stopped.")
    return 0


def detach(args: argparse.Namespace) -> int:
    """Start ``python -m dropship.local`` in its own session and return once its stack is deployed."""
    directory = project_dir(args.project_dir)
    port = args.port if args.port is not None else local_port()
    already = read_running()
    if already is not None:
        print(f"The local stack is already running (pid {already.pid}) on {already.endpoint_url}.")
        _print_outputs(already.endpoint_url)
        return 0
    require_local_extra()
    clean_up_after_a_dead_stack()
    state_dir().mkdir(parents=True, exist_ok=True)
    log_path = log_file()
    command = server_command(args.host, port, directory)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=str(directory),
        )
    running = Running(process.pid, args.host, port, str(directory), str(log_path), datetime.now(UTC).isoformat())
    _write_pid_file(running)
    print(f"Starting the local stack on {running.endpoint_url} (pid {process.pid}, log {log_path}) ...", flush=True)

    deadline = time.monotonic() + args.timeout
    while True:
        code = process.poll()
        if code is not None:
            pid_file().unlink(missing_ok=True)
            print(_tail(log_path), file=sys.stderr)
            raise CliError(f"the local stack exited with code {code} before it was ready (log: {log_path})")
        # Ready means our process said so: a stale server answering on the same port is not our stack.
        outputs = stack_outputs(running.endpoint_url) if _said_ready(log_path) else None
        if outputs is not None:
            _print_ready(running.endpoint_url, outputs)
            print("Stop it with `dropship local down`.")
            return 0
        if time.monotonic() >= deadline:
            print(_tail(log_path), file=sys.stderr)
            _terminate(process.pid)
            pid_file().unlink(missing_ok=True)
            raise CliError(f"the local stack was not ready after {args.timeout:.0f} s; stopped it (log: {log_path})")
        time.sleep(POLL_S)


def server_command(host: str, port: int, directory: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "dropship.local",
        "--host",
        host,
        "--port",
        str(port),
        "--project-dir",
        str(directory),
        "--state-dir",
        str(state_dir()),
    ]


def _refuse_if_running() -> None:
    already = read_running()
    if already is not None:
        raise CliError(
            f"the local stack is already running (pid {already.pid}) on {already.endpoint_url}: "
            "stop it with `dropship local down`"
        )


# -- down and status ---------------------------------------------------------------------------------


def down() -> int:
    running = read_running()
    if running is None:
        clean_up_after_a_dead_stack()
        print("The local stack is not running: nothing to stop.")
        return 0
    print(f"Stopping the local stack (pid {running.pid}) ...", flush=True)
    _terminate(running.pid)
    pid_file().unlink(missing_ok=True)
    print("Stopped.")
    return 0


def status() -> int:
    running = read_running()
    if running is not None:
        print(f"The local stack is running (pid {running.pid}) on {running.endpoint_url}.")
        if not _print_outputs(running.endpoint_url):
            print("It is still starting: its stack is not deployed yet.")
        return 0
    dead = _report_dead_stack()
    # Started some other way (a test, another state dir)? Ask the endpoint the other commands would use.
    endpoint = os.environ.get(ENDPOINT_ENV) or local_endpoint_url()
    if not dead and stack_outputs(endpoint) is not None:
        print(f"A local stack (not started by `dropship local up`) answers on {endpoint}.")
        _print_outputs(endpoint)
        return 0
    if dead:
        raise CliError("the local stack is not running: `dropship local up` cleans up what it left and starts it")
    raise CliError("the local stack is not running: start it with `dropship local up`")


def _report_dead_stack() -> bool:
    """Print what a stack that died left (pid file, processes, working files); True if there was any."""
    recorded = read_recorded()
    found = leftovers(paths.process_records(paths.run_dir()))
    size = tree_size(paths.run_dir())
    if recorded is None and not found and not size:
        return False
    who = f" (pid {recorded.pid}, started {recorded.started_at})" if recorded is not None else ""
    print(f"The local stack died{who}; it left:")
    print(f"  {_process_count(found)}{_describe(found)}")
    print(f"  {format_size(size)} of working files in {paths.run_dir()}")
    return True


def clean_up_after_a_dead_stack() -> None:
    """Stop what a stack that died left and remove its working files, saying so in one line."""
    recorded = read_recorded()
    size = tree_size(paths.run_dir())
    found = stop_leftovers(paths.process_records(paths.run_dir()))
    shutil.rmtree(paths.run_dir(), ignore_errors=True)
    pid_file().unlink(missing_ok=True)
    if recorded is None and not found and not size:
        return
    who = f" (pid {recorded.pid})" if recorded is not None else ""
    print(
        f"Cleaned up after a local stack that died{who}: stopped {_process_count(found)}, "
        f"removed {format_size(size)} of working files.",
        flush=True,
    )


def _process_count(found: dict[Record, list[int]]) -> str:
    count = sum(len(pids) for pids in found.values())
    return f"{count} process{'es' if count != 1 else ''}"


def _describe(found: dict[Record, list[int]]) -> str:
    if not found:
        return ""
    names = sorted({f"{record.kind} {record.name}" for record in found})
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return f" ({shown})"


# -- helpers -----------------------------------------------------------------------------------------


def stack_outputs(endpoint_url: str, stack_name: str = DEFAULT_STACK_NAME) -> dict[str, str] | None:
    """The stack's outputs once it is CREATE_COMPLETE at the endpoint; None if it does not answer (yet)."""
    target = Target(endpoint_url=endpoint_url, region=LOCAL_REGION, stack_name=stack_name)
    try:
        stacks = Stack(target).client("cloudformation", probe=True).describe_stacks(StackName=stack_name)["Stacks"]
    except Exception:  # not listening yet, not deployed yet: both mean "not ready"
        return None
    if not stacks or stacks[0].get("StackStatus") not in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
        return None
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}


def read_recorded() -> Running | None:
    """The stack recorded in the pid file, alive or not."""
    try:
        return Running(**json.loads(pid_file().read_text()))
    except (OSError, ValueError, TypeError):
        return None


def read_running() -> Running | None:
    """The detached stack recorded in the pid file, if its process is still alive."""
    running = read_recorded()
    return running if running is not None and _alive(running.pid) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():  # guard against a recycled pid
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ")
        except OSError:
            return True
        return b"dropship" in text
    return True


def _terminate(pid: int) -> None:
    """SIGTERM the stack and wait for it; SIGKILL its whole session if it does not stop in time."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        if not _exists(pid):
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _exists(pid: int) -> bool:
    """True while the process exists (reaping it if it is our own child)."""
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _write_pid_file(running: Running) -> None:
    path = pid_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(running), indent=2))


@contextlib.contextmanager
def _pid_file(running: Running) -> Iterator[None]:
    _write_pid_file(running)
    try:
        yield
    finally:
        pid_file().unlink(missing_ok=True)


def _print_ready(endpoint_url: str, outputs: dict[str, Any]) -> None:
    print(f"The local stack is ready on {endpoint_url} (region {LOCAL_REGION}, any credentials).")
    _print_output_lines(outputs)
    print(f"Use it with `{_cli_for(endpoint_url)} ...`, or `aws --endpoint-url {endpoint_url} ...`.", flush=True)


def _cli_for(endpoint_url: str) -> str:
    """``dropship --local`` when that reaches this stack (the port is ``$DROPSHIP_LOCAL_PORT`` or 4566)."""
    with contextlib.suppress(CliError):  # a malformed $DROPSHIP_LOCAL_PORT: --local would not reach it
        if endpoint_url == local_endpoint_url():
            return "dropship --local"
    return f"{ENDPOINT_ENV}={endpoint_url} dropship"


def _print_outputs(endpoint_url: str) -> bool:
    outputs = stack_outputs(endpoint_url)
    if outputs is None:
        return False
    _print_output_lines(outputs)
    return True


def _print_output_lines(outputs: dict[str, Any]) -> None:
    for key in OUTPUT_NAMES:
        if key in outputs:
            print(f"  {key:<24}{outputs[key]}")


def _said_ready(log_path: Path) -> bool:
    try:
        return paths.READY_PREFIX in log_path.read_text(errors="replace")
    except OSError:
        return False


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {path})"
    return "\n".join([f"--- last lines of {path} ---", *text[-lines:]])

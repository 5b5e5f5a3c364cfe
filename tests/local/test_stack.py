"""Starting and stopping the local stack, in process and as ``python -m dropship.local``."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from dropship.local import LocalStack, free_port
from dropship.local.__main__ import READY_PREFIX
from tests.local.conftest import wait_until

SRC = Path(__file__).resolve().parents[2] / "src"


def _read_line(process: subprocess.Popen[str], timeout_s: float) -> str:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout_s)
    return process.stdout.readline() if ready else ""


def _run_module(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.Popen(
        [sys.executable, "-m", "dropship.local", *args, "--log-level", "WARNING"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_a_second_stack_in_the_same_process_is_refused(stack: LocalStack, sample_project: Path) -> None:
    with pytest.raises(RuntimeError, match="already runs"):
        LocalStack(sample_project, port=free_port()).start()


def test_the_module_entry_serves_until_interrupted_and_leaves_no_process(sample_project: Path, tmp_path: Path) -> None:
    # Given `python -m dropship.local` started on a free port
    port = free_port()
    process = _run_module("--port", str(port), "--project-dir", str(sample_project), "--run-dir", str(tmp_path))
    try:
        # When it prints its ready line
        line = _read_line(process, 60)
        assert line.startswith(READY_PREFIX), line + (
            process.stderr.read() if process.poll() is not None and process.stderr else ""
        )
        url, outputs_json = line[len(READY_PREFIX) :].split(maxsplit=1)
        outputs = json.loads(outputs_json)

        # Then the stack is reachable and runs functions
        assert url == f"http://127.0.0.1:{port}"
        client = boto3.client(
            "lambda", endpoint_url=url, region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t"
        )
        reply = json.loads(client.invoke(FunctionName=outputs["WorkFunctionName"], Payload=b"{}")["Payload"].read())
        worker_pid = reply["pid"]

        # When it is interrupted
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    # Then the Lambda worker it started is gone too
    def worker_gone() -> bool:
        try:
            os.kill(worker_pid, 0)
        except ProcessLookupError:
            return True
        return False

    assert wait_until(worker_gone, 5)


def test_a_port_in_use_is_a_one_line_error(stack: LocalStack, sample_project: Path) -> None:
    # When another stack is started on the port the session stack serves
    started = time.monotonic()
    process = _run_module("--port", str(stack.port), "--project-dir", str(sample_project))
    _, stderr = process.communicate(timeout=60)
    # Then it exits 1 promptly, saying why
    assert process.returncode == 1
    assert "cannot serve on 127.0.0.1:" in stderr
    assert time.monotonic() - started < 30

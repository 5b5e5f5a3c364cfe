"""End to end: the local stack started the way a user starts it (`dropship local up`), then driven
only through AWS APIs (boto3) and the `dropship` command line, each in its own process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dropship.local.ports import free_port
from tests.integration.harness import Harness

DROPSHIP = str(Path(sys.executable).with_name("dropship"))


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


@dataclass
class LocalStackProcess:
    harness: Harness
    endpoint_url: str
    env: dict[str, str]
    home: Path

    def log_tail(self, lines: int = 60) -> str:
        """The stack's own log, for assertion messages."""
        log = self.home / "stack.log"
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else "(no log)"

    def cli(self, *args: str, timeout: float = 240) -> CliResult:
        done = subprocess.run(
            [DROPSHIP, *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        return CliResult(done.returncode, done.stdout, done.stderr)


@pytest.fixture(scope="package")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStackProcess]:
    home = tmp_path_factory.mktemp("dropship-home")
    port = free_port()
    env = {**os.environ, "DROPSHIP_HOME": str(home)}
    env.pop("DROPSHIP_ENDPOINT_URL", None)
    up = subprocess.run(
        [DROPSHIP, "local", "up", "--port", str(port)],  # returns once ready, as the contract says
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert up.returncode == 0, f"local up failed: {up.stdout}\n{up.stderr}"
    endpoint_url = f"http://127.0.0.1:{port}"
    try:
        status = subprocess.run([DROPSHIP, "local", "status"], env=env, capture_output=True, text=True, check=False)
        assert status.returncode == 0 and endpoint_url in status.stdout
        from dropship.cli.local import stack_outputs

        outputs = stack_outputs(endpoint_url)
        assert outputs is not None
        cli_env = {**env, "DROPSHIP_ENDPOINT_URL": endpoint_url}
        yield LocalStackProcess(Harness(endpoint_url, outputs), endpoint_url, cli_env, home)
    finally:
        down = subprocess.run([DROPSHIP, "local", "down"], env=env, capture_output=True, text=True, timeout=120)
        assert down.returncode == 0, down.stdout + down.stderr

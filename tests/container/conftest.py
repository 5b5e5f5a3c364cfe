"""Fixtures that run the real `container/serve` process on temporary model directories.

Every process is started on a free loopback port, awaited by polling the port and `/ping` (never a
fixed sleep) and killed at teardown whatever the test did.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from dropship.local.ports import free_port  # remembers what it handed out: servers started together differ

REPO = Path(__file__).resolve().parents[2]
SERVE = REPO / "container" / "serve"
SAMPLES = Path(__file__).resolve().parent / "samples"

sys.path.insert(0, str(REPO / "container"))  # the HTTP-free core is unit-tested directly too


class ServeProcess:
    """A running `serve` process; its stdout and stderr go to a file read by `log_lines`."""

    def __init__(
        self, model_dir: Path, env: dict[str, str], log_path: Path, workers: int = 1, python: str = sys.executable
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.started = time.monotonic()
        full_env = {
            **os.environ,
            "SM_MODEL_DIR": str(model_dir),
            "SAGEMAKER_BIND_TO_PORT": str(self.port),
            "SAGEMAKER_BIND_TO_HOST": "127.0.0.1",
            "SAGEMAKER_MODEL_SERVER_WORKERS": str(workers),
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        self._log = open(log_path, "wb")  # noqa: SIM115  (closed in stop)
        self.process = subprocess.Popen(
            [python, str(SERVE)],
            env=full_env,
            cwd=str(log_path.parent),  # not the repository: serve must find its package by itself
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so teardown can kill the workers too
        )

    def wait_accepting(self, timeout: float = 20) -> float:
        """Seconds from start until the port accepts a connection."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return time.monotonic() - self.started
            except OSError:
                time.sleep(0.005)
        raise AssertionError(f"serve did not accept connections in {timeout} s:\n{self.log_text()}")

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                if requests.get(self.url + "/ping", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.02)
        raise AssertionError(f"serve did not become healthy in {timeout} s:\n{self.log_text()}")

    def wait_exit(self, timeout: float = 60) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"serve did not exit in {timeout} s:\n{self.log_text()}") from None

    def _check_alive(self) -> None:
        if self.process.poll() is not None:
            raise AssertionError(f"serve exited with {self.process.returncode}:\n{self.log_text()}")

    def log_text(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def log_lines(self) -> list[dict]:
        """stdout as parsed JSON lines; fails the test on any line that is not structured."""
        lines = []
        for line in self.log_text().splitlines():
            if line.strip():
                try:
                    lines.append(json.loads(line))
                except json.JSONDecodeError:
                    raise AssertionError(f"unstructured log line: {line!r}") from None
        return lines

    def terminate(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)  # the master and its workers
                self.process.wait()
        self._log.close()


@pytest.fixture(scope="session")
def sklearn_model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LogisticRegression on iris (4 features, 3 classes), saved with joblib; trained once per session."""
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    path = tmp_path_factory.mktemp("trained") / "model.joblib"
    joblib.dump(LogisticRegression(max_iter=1000).fit(x, y), path)
    return path


@pytest.fixture(scope="session")
def make_model_dir(tmp_path_factory: pytest.TempPathFactory, sklearn_model_file: Path) -> Callable[..., Path]:
    """A model directory: the sklearn model, plus `code/` copied from a sample and extra files."""

    def make(sample: str | None = None, files: dict[str, str] | None = None, model: bool = True) -> Path:
        model_dir = tmp_path_factory.mktemp("model")
        if model:
            shutil.copy(sklearn_model_file, model_dir / "model.joblib")
        if sample:
            shutil.copytree(SAMPLES / sample, model_dir / "code")
        for name, text in (files or {}).items():
            (model_dir / name).parent.mkdir(parents=True, exist_ok=True)
            (model_dir / name).write_text(text)
        return model_dir

    return make


@pytest.fixture(scope="session")
def start_serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., ServeProcess]]:
    """Start `serve` on a model directory (not waiting); every process is stopped at the end."""
    processes: list[ServeProcess] = []

    def start(
        model_dir: Path, env: dict[str, str] | None = None, workers: int = 1, python: str = sys.executable
    ) -> ServeProcess:
        """`python`: another interpreter (an environment a model's requirements may be installed into)."""
        log_path = tmp_path_factory.mktemp("serve") / "serve.log"
        process = ServeProcess(model_dir, env or {}, log_path, workers, python)
        processes.append(process)
        return process

    yield start
    for process in processes:  # SIGTERM all first: they drain in parallel
        process.terminate()
    for process in processes:
        process.stop()


@pytest.fixture(scope="session")
def sklearn_server(make_model_dir: Callable[..., Path], start_serve: Callable[..., ServeProcess]) -> ServeProcess:
    """The default path: a scikit-learn model and no inference.py, 2 workers."""
    server = start_serve(make_model_dir(), workers=2)
    server.wait_healthy()
    return server


@pytest.fixture(scope="session")
def custom_server(make_model_dir: Callable[..., Path], start_serve: Callable[..., ServeProcess]) -> ServeProcess:
    """A custom inference.py with every hook, 2 workers of 2 inference threads, 3 s timeout."""
    model_dir = make_model_dir("custom", files={"scale.txt": "2"}, model=False)
    env = {"DROPSHIP_INFERENCE_THREADS": "2", "SAGEMAKER_MODEL_SERVER_TIMEOUT": "3"}
    server = start_serve(model_dir, env, workers=2)
    server.wait_healthy()
    return server

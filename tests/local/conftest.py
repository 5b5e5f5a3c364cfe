"""Fixtures for the local stack's own tests: one sample stack for this package, on a free port."""

from __future__ import annotations

import os
import select
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import boto3
import pytest

from dropship.local import LocalStack, free_port
from tests.local.sample_project import write_project

T = TypeVar("T")


def wait_until(probe: Callable[[], T | None], timeout_s: float = 30.0, interval_s: float = 0.1) -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s (last value: {value!r})")
        time.sleep(interval_s)


def await_exit(pids: Iterable[int], timeout_s: float = 20.0) -> None:
    """Wait until every process in ``pids`` has ended, woken by the kernel (a pidfd), not by polling."""
    deadline = time.monotonic() + timeout_s
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            assert ready, f"process {pid} still runs after {timeout_s} s"
        finally:
            os.close(fd)


def group_of(leader: int) -> list[int]:
    """The live processes in the process group ``leader`` leads."""
    from dropship.local.processes import group_members, process_identity

    identity = process_identity(leader)
    return group_members(leader, identity) if identity else []


@pytest.fixture(scope="package")
def sample_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_project(tmp_path_factory.mktemp("project"))


# Package scope, not session: moto's state and the seams are process-wide, so the stack must be gone
# before tests in other directories run (they may use moto's own mocks or start their own stack).
@pytest.fixture(scope="package")
def stack(sample_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    local = LocalStack(sample_project, port=free_port(), run_dir=tmp_path_factory.mktemp("run"))
    local.start()
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="package")
def aws(stack: LocalStack) -> Callable[[str], Any]:
    """``aws("s3")``: a boto3 client for the local stack."""

    def make(service: str) -> Any:
        return boto3.client(
            service,  # type: ignore[call-overload]
            endpoint_url=stack.endpoint_url,
            region_name=stack.region,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    return make

"""The integration harness: the real template deployed into the local stack engine (moto plus dropship's
seams), the real state machine executed, the real handlers and the real container answering.

The stack is started once for this package (one stack per process at a time) on a free port; every test
uses its own model names.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dropship.local.ports import free_port
from tests.integration.harness import TEST_PARAMETERS, Harness


@pytest.fixture(scope="package")
def stack(project_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    from dropship.local.stack import LocalStack

    local = LocalStack(project_dir, port=free_port(), parameter_overrides=TEST_PARAMETERS)
    local.start()
    try:
        yield Harness(local.endpoint_url, local.outputs)
    finally:
        local.stop()

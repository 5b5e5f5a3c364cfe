"""The demo's story, held to the real container: `make demo` is not run by the test suite, so this checks
what its version 3 scene relies on. demo/inference_v3.py passes its manifest's smoke sample with version 1's
response shape, and answers larger flowers with a 5xx (what the watch's 5xx-share alarm counts)."""

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import requests

from tests.container.conftest import ServeProcess

DEMO = Path(__file__).resolve().parents[2] / "demo"


def test_demo_v3_passes_its_smoke_test_and_fails_larger_flowers_with_a_5xx(
    make_model_dir: Callable[..., Path], start_serve: Callable[..., ServeProcess]
) -> None:
    model_dir = make_model_dir()
    (model_dir / "code").mkdir()
    shutil.copy(DEMO / "inference_v3.py", model_dir / "code" / "inference.py")
    server = start_serve(model_dir)
    server.wait_healthy()
    [sample] = json.loads((DEMO / "release-v3-watched.json").read_text())["smoke_test"]

    json_body = {"Content-Type": "application/json"}
    smoke = requests.post(f"{server.url}/invocations", data=sample["body"], headers=json_body)
    assert smoke.status_code == sample["expect"]["status"]
    assert smoke.json() == sample["expect"]["json_equals"]

    larger = json.dumps({"instances": [[6.3, 3.3, 6.0, 2.5]]})
    failed = requests.post(f"{server.url}/invocations", data=larger, headers=json_body)
    assert failed.status_code >= 500, failed.text

"""A custom inference.py over real HTTP: hooks, context, custom attributes, errors, limits, timeouts."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import requests

if TYPE_CHECKING:
    from tests.container.conftest import ServeProcess


SIX_MIB = 6 * 1024 * 1024


def invoke(server: ServeProcess, payload: dict, timeout: float = 30, **headers: str) -> requests.Response:
    return requests.post(
        server.url + "/invocations",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", **headers},
        timeout=timeout,
    )


def test_hooks_run_with_the_context_and_the_warmed_model(custom_server: ServeProcess) -> None:
    response = invoke(custom_server, {"values": [1, 2.5]})
    assert response.status_code == 200
    body = response.json()
    assert body["doubled"] == [2.0, 5.0]
    assert body["warmed"] is True  # model_warmup_fn ran before the first request
    assert body["model_dir_seen"] is True
    assert "x-amzn-sagemaker-custom-attributes" not in response.headers


def test_custom_attributes_reach_user_code_and_can_be_set(custom_server: ServeProcess) -> None:
    response = invoke(custom_server, {"values": [1]}, **{"X-Amzn-SageMaker-Custom-Attributes": "trace=abc"})
    assert response.status_code == 200
    assert response.json()["custom_attributes"] == "trace=abc"
    assert response.headers["X-Amzn-SageMaker-Custom-Attributes"] == "echo=trace=abc"


def test_output_fn_negotiates_with_q_values(custom_server: ServeProcess) -> None:
    response = invoke(custom_server, {"values": [1, 2]}, Accept="text/csv, text/plain;q=0.5, application/json;q=0.1")
    assert response.status_code == 200  # text/csv refused by output_fn, text/plain next by q-value
    assert response.headers["content-type"] == "text/plain"
    assert response.text == "doubled=2.0,4.0"


def test_406_when_output_fn_refuses_every_accept(custom_server: ServeProcess) -> None:
    response = invoke(custom_server, {"values": [1]}, Accept="text/csv")
    assert response.status_code == 406
    assert response.json()["error"]["code"] == "NotAcceptable"


def test_415_raised_by_input_fn(custom_server: ServeProcess) -> None:
    response = requests.post(
        custom_server.url + "/invocations", data=b"1,2", headers={"Content-Type": "text/csv"}, timeout=10
    )
    assert response.status_code == 415
    assert "only reads application/json" in response.json()["error"]["message"]


def test_value_error_in_input_fn_is_400(custom_server: ServeProcess) -> None:
    response = requests.post(
        custom_server.url + "/invocations", data=b"{not json", headers={"Content-Type": "application/json"}, timeout=10
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "BadRequest"


def test_500_logs_the_traceback_and_never_sends_it(custom_server: ServeProcess) -> None:
    response = invoke(custom_server, {"fail": True})
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["code"] == "ModelError"
    assert "secret-internal-detail" not in response.text
    assert "Traceback" not in response.text
    error_id = error["message"].rsplit(" ", 1)[-1]
    logged = [line for line in custom_server.log_lines() if line.get("error_id") == error_id]
    assert len(logged) == 1
    assert "secret-internal-detail" in logged[0]["exception"]
    assert "Traceback" in logged[0]["exception"]


def test_6_mib_response_is_sent_and_larger_is_500(custom_server: ServeProcess) -> None:
    response = invoke(custom_server, {"big": SIX_MIB})
    assert response.status_code == 200
    assert len(response.content) == SIX_MIB
    assert response.headers["content-type"] == "application/octet-stream"
    too_big = invoke(custom_server, {"big": SIX_MIB + 1})
    assert too_big.status_code == 500
    assert "limit" in too_big.json()["error"]["message"]


def test_ping_is_never_blocked_by_running_predictions(custom_server: ServeProcess) -> None:
    # Every inference thread busy with a slow prediction (2 workers x 2 threads, four 2 s predictions) ...
    finished: list[float] = []
    statuses: list[int] = []

    def predict() -> None:
        statuses.append(invoke(custom_server, {"sleep": 2.0, "values": [1]}).status_code)
        finished.append(time.monotonic())

    slow = [threading.Thread(target=predict) for _ in range(4)]
    for thread in slow:
        thread.start()
    time.sleep(0.3)  # let the predictions start; the assertion below does not depend on this timing
    # ... /ping still answers, every time, before any of them is done (its latency: benchmarks/serving.py)
    pinged = []
    for _ in range(5):
        assert requests.get(custom_server.url + "/ping", timeout=10).status_code == 200
        pinged.append(time.monotonic())
    for thread in slow:
        thread.join()
    assert statuses == [200] * 4
    assert max(pinged) < min(finished)


def test_timeout_is_504_and_the_server_stays_healthy(custom_server: ServeProcess) -> None:
    response = invoke(custom_server, {"sleep": 3.5, "values": [1]})  # SAGEMAKER_MODEL_SERVER_TIMEOUT=3
    assert response.status_code == 504
    assert "SAGEMAKER_MODEL_SERVER_TIMEOUT" in response.json()["error"]["message"]
    assert requests.get(custom_server.url + "/ping", timeout=5).status_code == 200


def test_transform_fn(make_model_dir: Callable[..., Path], start_serve: Callable[..., ServeProcess]) -> None:
    server = start_serve(make_model_dir("transform", model=False))
    server.wait_healthy()
    response = requests.post(
        server.url + "/invocations",
        data=b"abc",
        headers={"Content-Type": "Text/Plain; charset=utf-8", "Accept": "*/*;q=0.1, text/plain"},
        timeout=10,
    )
    assert response.status_code == 200
    assert response.content == b"cba"
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["x-amzn-sagemaker-custom-attributes"] == "content_type=text/plain"


def test_program_name_from_sagemaker_program(
    make_model_dir: Callable[..., Path], start_serve: Callable[..., ServeProcess]
) -> None:
    model_dir = make_model_dir(
        files={"code/handlers.py": "def predict_fn(data, model):\n    return [42] * len(data)\n"}
    )
    server = start_serve(model_dir, {"SAGEMAKER_PROGRAM": "handlers.py"})
    server.wait_healthy()
    response = requests.post(server.url + "/invocations", json=[[1, 2, 3, 4]], timeout=10)
    assert response.json() == [42]

"""Start-up, readiness, load failures, settings and SIGTERM, on real `serve` processes."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import requests

from dropship_serve.server import HTTP_HEARTBEAT_TIMEOUT_S, gunicorn_options
from dropship_serve.settings import Settings

if TYPE_CHECKING:
    from tests.container.conftest import ServeProcess


StartServe = Callable[..., "ServeProcess"]
MakeModelDir = Callable[..., Path]


def _events(server: ServeProcess, event: str) -> list[dict]:
    return [line for line in server.log_lines() if line.get("event") == event]


def test_accepts_at_once_and_pings_503_until_loaded(
    make_model_dir: MakeModelDir, start_serve: StartServe, tmp_path: Path
) -> None:
    gate = tmp_path / "let-model-fn-finish"
    server = start_serve(make_model_dir("custom", files={"scale.txt": "1"}), {"TEST_LOAD_GATE": str(gate)})
    server.wait_accepting()  # while model_fn is still held back (how soon: benchmarks/serving.py)
    deadline = time.monotonic() + 20
    while True:  # workers boot: connection accepted, then /ping answers 503 while model_fn waits
        response = requests.get(server.url + "/ping", timeout=5)
        if response.status_code == 503 or time.monotonic() > deadline:
            break
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "ModelNotReady"
    gate.touch()
    server.wait_healthy()
    assert requests.get(server.url + "/ping", timeout=5).status_code == 200


@pytest.mark.parametrize(
    ("sample", "env", "message"),
    [
        ("custom", {"TEST_FAIL_LOAD": "1"}, "weights are corrupt"),
        ("broken_import", {}, "dropship_test_module_that_does_not_exist"),
        (None, {"SAGEMAKER_PROGRAM": "missing.py"}, "SAGEMAKER_PROGRAM=missing.py not found"),
    ],
    ids=["model_fn-raises", "import-error", "missing-program"],
)
def test_load_failure_exits_non_zero_with_a_clear_log_line(
    make_model_dir: MakeModelDir, start_serve: StartServe, sample: str | None, env: dict, message: str
) -> None:
    server = start_serve(make_model_dir(sample, files={"scale.txt": "1"}), env, workers=2)
    assert server.wait_exit(timeout=60) != 0
    failures = _events(server, "model_load_failed")
    assert failures, server.log_text()
    assert failures[0]["level"] == "critical"
    assert message in failures[0]["message"]
    assert "Traceback" in failures[0]["exception"]
    last = server.log_lines()[-1]  # what a supervisor showing the tail of the output sees
    assert last["level"] == "critical" and message in last["message"]


def test_no_model_file_and_no_model_fn_fails_clearly(make_model_dir: MakeModelDir, start_serve: StartServe) -> None:
    server = start_serve(make_model_dir(model=False, files={"notes.txt": "no model here"}))
    assert server.wait_exit(timeout=60) != 0
    failure = _events(server, "model_load_failed")[-1]
    assert "none of the formats" in failure["message"] and "notes.txt" in failure["message"]
    assert server.process.returncode == 3


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SAGEMAKER_MODEL_SERVER_WORKERS": "two"}, "SAGEMAKER_MODEL_SERVER_WORKERS"),
        ({"SM_MODEL_DIR": "/nonexistent/model"}, "/nonexistent/model"),
    ],
)
def test_bad_settings_exit_at_once(
    make_model_dir: MakeModelDir, start_serve: StartServe, env: dict, message: str
) -> None:
    server = start_serve(make_model_dir(), env)
    assert server.wait_exit(timeout=20) == 2
    [line] = server.log_lines()
    assert line["level"] == "critical" and message in line["message"]


def test_requirements_already_satisfied_are_not_installed(
    make_model_dir: MakeModelDir, start_serve: StartServe
) -> None:
    model_dir = make_model_dir(files={"code/requirements.txt": "# the image has these\nnumpy>=1.0\nscikit-learn\n"})
    server = start_serve(model_dir)
    server.wait_healthy()
    assert _events(server, "requirements_satisfied")
    assert not _events(server, "requirements_install")


def test_requirements_can_be_skipped(make_model_dir: MakeModelDir, start_serve: StartServe) -> None:
    model_dir = make_model_dir(files={"code/requirements.txt": "dropship-test-package-that-does-not-exist==1.0\n"})
    server = start_serve(model_dir, {"DROPSHIP_INSTALL_REQUIREMENTS": "0"})
    server.wait_healthy()
    [skipped] = _events(server, "requirements_skipped")
    assert skipped["level"] == "warning"
    assert skipped["unsatisfied"] == ["dropship-test-package-that-does-not-exist==1.0"]


def test_sigterm_drains_in_flight_requests_and_exits(
    make_model_dir: MakeModelDir, start_serve: StartServe, tmp_path: Path
) -> None:
    server = start_serve(make_model_dir("custom", files={"scale.txt": "1"}))
    server.wait_healthy()
    started = tmp_path / "prediction-started"
    result: dict[str, requests.Response] = {}
    payload = {"values": [1], "sleep": 2, "started_file": str(started)}

    def call() -> None:
        result["response"] = requests.post(server.url + "/invocations", data=json.dumps(payload), timeout=30)

    caller = threading.Thread(target=call)
    caller.start()
    deadline = time.monotonic() + 20
    while not started.exists():  # the prediction is running
        assert time.monotonic() < deadline, server.log_text()
        time.sleep(0.01)
    server.process.send_signal(signal.SIGTERM)
    caller.join(30)
    assert result["response"].status_code == 200  # the in-flight request finished
    assert result["response"].json()["doubled"] == [1.0]
    assert server.wait_exit(timeout=30) == 0
    with pytest.raises(requests.ConnectionError):
        requests.get(server.url + "/ping", timeout=2)


PID_PREDICTOR = "import os\n\n\ndef predict_fn(data, model):\n    return [os.getpid()] * len(data)\n"


def _predicting_pids(server: ServeProcess, session: requests.Session, count: int) -> set[int]:
    pids = set()
    for _ in range(count):
        response = session.post(server.url + "/invocations", json=[[1, 2, 3, 4]], timeout=10)
        assert response.status_code == 200, response.text
        pids.update(response.json())
    return pids


def test_requests_on_one_keep_alive_connection_reach_every_inference_process(
    make_model_dir: MakeModelDir, start_serve: StartServe
) -> None:
    # Balanced per request, not per connection: a client that keeps one connection open (as SageMaker's
    # front end does) is not pinned to one process while the other idles.
    server = start_serve(make_model_dir(files={"code/inference.py": PID_PREDICTOR}), workers=2)
    server.wait_healthy()
    loaded = {line["pid"] for line in _events(server, "model_loaded")}
    with requests.Session() as session:
        assert _predicting_pids(server, session, 8) == loaded
        assert len(loaded) == 2


def test_a_killed_inference_process_is_replaced(make_model_dir: MakeModelDir, start_serve: StartServe) -> None:
    server = start_serve(make_model_dir(files={"code/inference.py": PID_PREDICTOR}), workers=2)
    server.wait_healthy()
    [victim, survivor] = sorted(line["pid"] for line in _events(server, "model_loaded"))
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while len(_events(server, "model_loaded")) < 3:  # the replacement loaded the model
        assert time.monotonic() < deadline, server.log_text()
        assert server.process.poll() is None, server.log_text()
        time.sleep(0.05)
    [exited] = _events(server, "inference_process_exited")
    assert exited["level"] == "error" and exited["status"] == -signal.SIGKILL
    replacement = _events(server, "model_loaded")[-1]["pid"]
    assert requests.get(server.url + "/ping", timeout=5).status_code == 200
    with requests.Session() as session:
        assert _predicting_pids(server, session, 8) == {survivor, replacement}


def test_ping_is_503_while_every_inference_thread_is_stuck_and_200_again_after(
    make_model_dir: MakeModelDir, start_serve: StartServe, tmp_path: Path
) -> None:
    server = start_serve(
        make_model_dir("custom", files={"scale.txt": "1"}), {"SAGEMAKER_MODEL_SERVER_TIMEOUT": "1"}, workers=1
    )
    server.wait_healthy()
    started = tmp_path / "started"
    payload = {"values": [1], "sleep": 4, "started_file": str(started)}
    response = requests.post(server.url + "/invocations", data=json.dumps(payload), timeout=30)
    assert response.status_code == 504
    assert started.exists()
    deadline = time.monotonic() + 10
    while (ping := requests.get(server.url + "/ping", timeout=5)).status_code == 200:  # stuck past the timeout
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert ping.status_code == 503 and "stuck" in ping.json()["error"]["message"]
    server.wait_healthy(timeout=30)  # the prediction returned: the thread serves again
    response = requests.post(server.url + "/invocations", data=json.dumps({"values": [2]}), timeout=30)
    assert response.json()["doubled"] == [2.0]
    # And the 1 s invocation timeout never became the HTTP process's heartbeat timeout: uvicorn beats about
    # once a second, so gunicorn would have killed the healthy HTTP process (and dropped connections)
    heartbeats_missed = [line for line in server.log_lines() if "WORKER TIMEOUT" in line["message"]]
    assert heartbeats_missed == []
    options = gunicorn_options(Settings.from_env({"SAGEMAKER_MODEL_SERVER_TIMEOUT": "1"}))
    assert options["timeout"] == HTTP_HEARTBEAT_TIMEOUT_S


def test_a_request_that_waited_past_its_timeout_is_not_run(
    make_model_dir: MakeModelDir, start_serve: StartServe, tmp_path: Path
) -> None:
    server = start_serve(
        make_model_dir("custom", files={"scale.txt": "1"}), {"SAGEMAKER_MODEL_SERVER_TIMEOUT": "1"}, workers=1
    )
    server.wait_healthy()
    first_started, second_started = tmp_path / "first", tmp_path / "second"
    statuses: list[int] = []

    def slow() -> None:
        payload = {"values": [1], "sleep": 2, "started_file": str(first_started)}
        statuses.append(requests.post(server.url + "/invocations", data=json.dumps(payload), timeout=30).status_code)

    caller = threading.Thread(target=slow)
    caller.start()
    deadline = time.monotonic() + 20
    while not first_started.exists():  # the only inference thread is busy
        assert time.monotonic() < deadline
        time.sleep(0.01)
    payload = {"values": [1], "started_file": str(second_started)}
    assert requests.post(server.url + "/invocations", data=json.dumps(payload), timeout=30).status_code == 504
    caller.join(30)
    assert statuses == [504]
    # Once free, the thread answers the next request; the one that timed out in the queue never ran.
    assert requests.post(server.url + "/invocations", data=json.dumps({"values": [3]}), timeout=30).status_code == 200
    assert not second_started.exists()

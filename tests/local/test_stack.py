"""Starting and stopping the local stack, in process and as ``python -m dropship.local``."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from dropship.local import LocalStack, free_port, paths
from dropship.local.__main__ import READY_PREFIX
from dropship.local.processes import leftovers, read_records
from tests.local.conftest import await_exit, group_of, wait_until
from tests.local.sample_project import model_tarball

SRC = Path(__file__).resolve().parents[2] / "src"
REAL_CONTAINER = Path(__file__).resolve().parents[2] / "container"


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
    process = _run_module("--port", str(stack.port), "--project-dir", str(sample_project))
    _, stderr = process.communicate(timeout=60)
    # Then it exits 1, saying why
    assert process.returncode == 1
    assert "cannot serve on 127.0.0.1:" in stderr


def _started(args: list[str]) -> tuple[subprocess.Popen[str], str, dict]:
    """``python -m dropship.local ARGS`` once it printed its ready line: (process, endpoint URL, outputs)."""
    process = _run_module(*args)
    line = _read_line(process, 90)
    if not line.startswith(READY_PREFIX):
        process.kill()
        raise AssertionError(line + (process.stderr.read() if process.stderr else ""))
    url, outputs_json = line[len(READY_PREFIX) :].split(maxsplit=1)
    return process, url, json.loads(outputs_json)


def _client(url: str, service: str):
    return boto3.client(
        service, endpoint_url=url, region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t"
    )


def _create_endpoint(url: str, outputs: dict, name: str, environment: dict, files: dict | None = None) -> None:
    _client(url, "s3").put_object(
        Bucket=outputs["BucketName"],
        Key=f"{name}.tar.gz",
        Body=model_tarball(files or {"model.json": b'{"coef": [1]}'}),
    )
    sm = _client(url, "sagemaker")
    sm.create_model(
        ModelName=name,
        ExecutionRoleArn="arn:aws:iam::123456789012:role/sagemaker",
        PrimaryContainer={
            "Image": "local/serve",
            "ModelDataUrl": f"s3://{outputs['BucketName']}/{name}.tar.gz",
            "Environment": environment,
        },
    )
    sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {"VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}
        ],
    )
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    wait_until(lambda: sm.describe_endpoint(EndpointName=name)["EndpointStatus"] == "InService", 60)


ECHO_INFERENCE = b"""
import json


def model_fn(model_dir):
    return "echo"


def transform_fn(model, body, content_type, accept):
    return json.dumps({"echo": json.loads(body)}), "application/json"
"""


def test_a_stack_killed_with_sigkill_leaves_no_process(sample_project: Path, tmp_path: Path) -> None:
    # Given a project serving endpoints with the real inference container (gunicorn's master, the HTTP process
    # it forks, and that process's inference process)
    project = tmp_path / "project"
    shutil.copytree(sample_project, project, ignore=shutil.ignore_patterns("container"))
    (project / "container").symlink_to(REAL_CONTAINER, target_is_directory=True)
    # And a stack with such an endpoint and a warm Lambda worker
    state = tmp_path / "state"
    process, url, outputs = _started(
        ["--port", str(free_port()), "--project-dir", str(project), "--state-dir", str(state)]
    )
    try:
        _create_endpoint(url, outputs, "tree", {}, {"code/inference.py": ECHO_INFERENCE})
        reply = _client(url, "lambda").invoke(FunctionName=outputs["WorkFunctionName"], Payload=b"{}")
        worker = json.loads(reply["Payload"].read())["pid"]
        (endpoint,) = [r.pid for r in read_records(state / "run" / "processes") if r.kind == "endpoint"]
        tree = wait_until(lambda: len(group_of(endpoint)) == 3 and group_of(endpoint), 10)

        # When the stack is killed with SIGKILL (a crash, an OOM kill: none of its own clean-up runs)
        process.kill()
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    # Then gunicorn's master, the HTTP process, the inference process and the Lambda worker all end
    await_exit([*tree, worker])
    assert leftovers(state / "run" / "processes") == {}


def test_logs_survive_the_stack_and_the_next_start_clears_them(sample_project: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    args = ["--port", str(free_port()), "--project-dir", str(sample_project), "--state-dir", str(state)]
    # Given a stack started with a state dir that ran a function and an endpoint
    process, url, outputs = _started(args)
    try:
        function = outputs["WorkFunctionName"]
        _client(url, "lambda").invoke(FunctionName=function, Payload=json.dumps({"mode": "ok"}).encode())
        _create_endpoint(url, outputs, "logged", {})
        # When it is stopped
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    # Then the function's and the endpoint's logs are where `dropship logs` reads them; the working files are gone
    assert 'event: {"mode": "ok"}' in paths.lambda_log(function, paths.logs_dir(state)).read_text()
    assert "serving on" in paths.endpoint_log("logged", paths.logs_dir(state)).read_text()
    assert not paths.run_dir(state).exists()

    # When the next stack starts, Then the last logs are cleared
    process, _, _ = _started(args)
    try:
        assert not paths.endpoint_log("logged", paths.logs_dir(state)).exists()
        assert not paths.lambda_log(function, paths.logs_dir(state)).exists()
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)


def test_settings_come_from_the_environment_and_bad_ones_are_named() -> None:
    from dropship.local.settings import LocalSettings, SettingsError

    settings = LocalSettings.from_env(
        {"DROPSHIP_LOCAL_LAMBDA_CONCURRENCY": "4", "DROPSHIP_LOCAL_ENDPOINT_STARTUP_DELAY": "2.5"}
    )
    assert (settings.lambda_concurrency, settings.endpoint_startup_delay_s) == (4, 2.5)
    assert LocalSettings.from_env({}) == LocalSettings()
    with pytest.raises(SettingsError, match="DROPSHIP_LOCAL_LAMBDA_CONCURRENCY='lots' is not a whole number"):
        LocalSettings.from_env({"DROPSHIP_LOCAL_LAMBDA_CONCURRENCY": "lots"})
    with pytest.raises(SettingsError, match="DROPSHIP_LOCAL_ENDPOINT_STARTUP_TIMEOUT='-1' must be zero or more"):
        LocalSettings.from_env({"DROPSHIP_LOCAL_ENDPOINT_STARTUP_TIMEOUT": "-1"})


def test_alarm_evaluation_and_capture_flushing_are_settings() -> None:
    from dropship.local.alarms import AlarmEvaluator
    from dropship.local.settings import LocalSettings

    settings = LocalSettings.from_env(
        {"DROPSHIP_LOCAL_ALARM_EVALUATION_SECONDS": "0.5", "DROPSHIP_LOCAL_CAPTURE_FLUSH_SECONDS": "0"}
    )
    assert (settings.alarm_evaluation_s, settings.capture_flush_s) == (0.5, 0.0)
    assert (LocalSettings().alarm_evaluation_s, LocalSettings().capture_flush_s) == (2.0, 2.0)
    # 0 turns the evaluation off: alarms then change only by SetAlarmState
    evaluator = AlarmEvaluator(0).start()
    assert evaluator._ticker.thread is None
    evaluator.stop()


def test_a_bad_setting_is_a_one_line_error(sample_project: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(SRC), "DROPSHIP_LOCAL_LAMBDA_CONCURRENCY": "0"}
    done = subprocess.run(
        [sys.executable, "-m", "dropship.local", "--port", str(free_port()), "--project-dir", str(sample_project)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == "dropship local: DROPSHIP_LOCAL_LAMBDA_CONCURRENCY='0' must be at least 1"

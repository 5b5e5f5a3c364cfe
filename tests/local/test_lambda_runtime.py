"""Lambda invocations run the real handler in warm worker processes."""

from __future__ import annotations

import json
import re
import signal
import threading
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from dropship.local import LocalStack
from tests.local.conftest import wait_until


def _invoke(aws, name: str, event: dict) -> tuple[dict, dict]:
    response = aws("lambda").invoke(FunctionName=name, Payload=json.dumps(event).encode())
    return response, json.loads(response["Payload"].read())


def test_the_real_handler_runs_with_its_environment_layer_and_the_stack(stack: LocalStack, aws) -> None:
    # When the function is invoked through the Lambda API
    response, payload = _invoke(aws, stack.outputs["WorkFunctionName"], {"detail": {"object": {"key": "k"}}})

    # Then the handler ran with its env vars, a Lambda-like context, its layer on the path,
    # and AWS calls that reach the local stack
    assert "FunctionError" not in response
    assert payload["greeting"] == "hello"
    assert payload["function_name"] == stack.outputs["WorkFunctionName"]
    assert payload["memory"] == "256"
    assert 0 < payload["remaining_ms"] <= 20_000
    assert payload["layer"] == "from-layer"
    assert payload["parameter"] == "hello"
    assert payload["region"] == "us-east-1"


def test_a_warm_worker_is_reused_and_prints_go_to_the_log(stack: LocalStack, aws) -> None:
    name = stack.outputs["WorkFunctionName"]
    # Given one invocation done
    _, first = _invoke(aws, name, {"mode": "ok"})
    # When the function is invoked again
    _, second = _invoke(aws, name, {"mode": "ok", "n": 2})
    # Then the same process served it, and its print output went to the function log
    assert first["pid"] == second["pid"]
    log = stack.lambda_runtime.log_path(name).read_text()
    assert 'event: {"mode": "ok", "n": 2}' in log


def test_an_exception_comes_back_as_lambda_reports_it(stack: LocalStack, aws) -> None:
    # When the handler raises FatalError
    response, payload = _invoke(aws, stack.outputs["WorkFunctionName"], {"mode": "fatal"})
    # Then it is an unhandled function error named after the exception, with a stack trace
    assert response["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "FatalError"
    assert payload["errorMessage"] == "cannot process "
    assert payload["stackTrace"] and all("app.py" in frame for frame in payload["stackTrace"])


def test_a_handler_that_cannot_be_imported_is_an_init_error(stack: LocalStack, aws) -> None:
    # Given a function whose handler names a missing module
    name = stack.outputs["QuickFunctionName"]
    aws("lambda").update_function_configuration(FunctionName=name, Handler="missing.handler")
    try:
        # When it is invoked, Then the error is the runtime's import error
        response, payload = _invoke(aws, name, {})
        assert response["FunctionError"] == "Unhandled"
        assert payload["errorType"] == "Runtime.ImportModuleError"
        assert "Unable to import module 'missing'" in payload["errorMessage"]
    finally:
        aws("lambda").update_function_configuration(FunctionName=name, Handler="app.handler")


def test_a_timeout_is_sandbox_timedout_and_the_worker_is_replaced(stack: LocalStack, aws) -> None:
    name = stack.outputs["QuickFunctionName"]  # Timeout: 1
    # Given a warm worker
    _, warm = _invoke(aws, name, {"mode": "ok"})
    # When an invocation runs past the function timeout
    response, payload = _invoke(aws, name, {"mode": "sleep", "seconds": 10})
    # Then it fails as Lambda does and the next invocation gets a fresh process
    assert response["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in payload["errorMessage"]
    _, after = _invoke(aws, name, {"mode": "ok"})
    assert after["pid"] != warm["pid"]


def test_a_worker_that_dies_is_runtime_exit_error(stack: LocalStack, aws) -> None:
    response, payload = _invoke(aws, stack.outputs["WorkFunctionName"], {"mode": "exit"})
    assert response["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "Runtime.ExitError"
    assert "exit status 3" in payload["errorMessage"]


def test_a_configuration_change_retires_warm_workers(stack: LocalStack, aws) -> None:
    name = stack.outputs["QuickFunctionName"]
    # Given a warm worker
    _invoke(aws, name, {"mode": "ok"})
    # When the function's environment changes
    env = aws("lambda").get_function_configuration(FunctionName=name)["Environment"]["Variables"]
    aws("lambda").update_function_configuration(
        FunctionName=name, Environment={"Variables": {**env, "GREETING": "changed"}}
    )
    # Then the next invocation sees it
    _, payload = _invoke(aws, name, {"mode": "ok"})
    assert payload["greeting"] == "changed"


def test_workers_do_not_inherit_caller_credentials(stack: LocalStack, sample_project: Path) -> None:
    runtime = stack.lambda_runtime
    fn = runtime.functions[stack.outputs["WorkFunctionName"]]
    import os

    os.environ["AWS_PROFILE"] = "someone-real"
    try:
        from moto.awslambda.utils import get_backend

        env = runtime.worker_environment(
            runtime._config(get_backend("123456789012", "us-east-1").get_function(fn.name))
        )
    finally:
        del os.environ["AWS_PROFILE"]
    assert "AWS_PROFILE" not in env
    assert env["AWS_ENDPOINT_URL"] == stack.endpoint_url
    assert env["PYTHONPATH"].split(os.pathsep) == [str(fn.code_dir), str(sample_project / "shared" / "python")]


ECHO_HANDLER = """\
import time


def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return {"echo": event}
"""


def _echo_runtime(tmp_path: Path, limits=None, idle_timeout_s: float = 300.0):
    """A runtime (no server needed) with one function ``echo``; returns it, its supervisor and a moto-like fn."""
    from types import SimpleNamespace

    from dropship.local.deploy import DeployedFunction
    from dropship.local.lambda_runtime import LambdaRuntime
    from dropship.local.processes import Supervisor

    (tmp_path / "code").mkdir(exist_ok=True)
    (tmp_path / "code" / "app.py").write_text(ECHO_HANDLER)
    supervisor = Supervisor(tmp_path / "processes").start()
    runtime = LambdaRuntime(
        endpoint_url="http://127.0.0.1:9",
        region="us-east-1",
        log_dir=tmp_path / "logs",
        supervisor=supervisor,
        limits=limits,
        idle_timeout_s=idle_timeout_s,
    )
    runtime.register({"echo": DeployedFunction("echo", "Echo", tmp_path / "code", "app.handler")})
    fn = SimpleNamespace(
        function_name="echo",
        handler="app.handler",
        environment_vars={},
        memory_size=128,
        timeout=5,
        function_arn="arn:aws:lambda:us-east-1:123456789012:function:echo",
        reserved_concurrency=None,
    )
    return runtime, supervisor, fn


def test_idle_workers_are_reclaimed(tmp_path: Path) -> None:
    # Given a runtime whose workers are reclaimed after 0.3 s idle
    runtime, supervisor, fn = _echo_runtime(tmp_path, idle_timeout_s=0.3)
    try:
        # When it is invoked once
        headers: dict[str, str] = {}
        assert json.loads(runtime.invoke_function(fn, b'{"a": 1}', headers)) == {"echo": {"a": 1}}
        assert headers == {}
        assert runtime.worker_count("echo") == 1
        # Then its warm worker is stopped once idle long enough, and no record of it is left
        wait_until(lambda: runtime.worker_count("echo") == 0, 10)
        wait_until(lambda: supervisor.children() == [], 10)
    finally:
        runtime.stop()
        supervisor.stop()


def test_a_worker_killed_mid_invocation_is_lambdas_runtime_exit_error(stack: LocalStack, aws) -> None:
    # When the runtime is killed while it runs an invocation (as the OOM killer does)
    name = stack.outputs["WorkFunctionName"]
    response, payload = _invoke(aws, name, {"mode": "kill"})
    # Then the invocation fails as Lambda reports it, a name Step Functions can retry on
    assert response["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "Runtime.ExitError"
    assert re.fullmatch(
        r"RequestId: [0-9a-f-]{36} Error: Runtime exited with error: signal: killed", payload["errorMessage"]
    )
    assert "Runtime exited with error: signal: killed" in stack.lambda_runtime.log_path(name).read_text()
    # And the next invocation gets a fresh worker
    _, after = _invoke(aws, name, {"mode": "ok"})
    assert after["greeting"] == "hello"


@pytest.mark.parametrize(
    ("code", "words"),
    [(-signal.SIGKILL, "signal: killed"), (-signal.SIGSEGV, "signal: segmentation fault"), (1, "exit status 1")],
)
def test_exits_are_worded_as_lambda_words_them(code: int, words: str) -> None:
    from dropship.local.lambda_runtime import exit_message

    assert exit_message(code) == f"Runtime exited with error: {words}"


def test_an_invocation_over_the_function_limit_is_throttled(stack: LocalStack, aws) -> None:
    from dropship.local.lambda_runtime import Limits

    runtime = stack.lambda_runtime
    name = stack.outputs["WorkFunctionName"]
    original = runtime.limits
    runtime.limits = Limits(account=32, function=1, throttle_wait_s=0)
    try:
        # Given one invocation running, the most the function may run at once
        first = threading.Thread(target=_invoke, args=(aws, name, {"mode": "sleep", "seconds": 3}))
        first.start()
        wait_until(lambda: runtime.running(name) == 1, 10)
        # When another one comes, Then Lambda's throttling error answers it
        with pytest.raises(ClientError) as caught:
            _invoke(aws, name, {"mode": "ok"})
        error = caught.value.response
        assert error["Error"]["Code"] == "TooManyRequestsException"
        assert error["ResponseMetadata"]["HTTPStatusCode"] == 429
        assert error["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
        first.join()
    finally:
        runtime.limits = original


def test_an_invocation_waits_briefly_for_a_slot(tmp_path: Path) -> None:
    from dropship.local.lambda_runtime import Limits

    # Given a function that may run once at a time, and invocations that wait up to 10 s for a slot
    runtime, supervisor, fn = _echo_runtime(tmp_path, Limits(account=4, function=1, throttle_wait_s=10))
    try:
        replies: list[bytes] = []
        callers = [
            threading.Thread(target=lambda: replies.append(runtime.invoke_function(fn, b'{"sleep": 0.3}', {})))
            for _ in range(3)
        ]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join()
        # Then all three ran, one after the other, on one worker
        assert len(replies) == 3
        assert runtime.worker_count("echo") == 1
    finally:
        runtime.stop()
        supervisor.stop()


def test_reserved_concurrency_bounds_a_function(stack: LocalStack, aws) -> None:
    # Given a function whose reserved concurrency is 0 (it may not run at all)
    name = stack.outputs["QuickFunctionName"]
    aws("lambda").put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    from dropship.local.lambda_runtime import Limits

    original = stack.lambda_runtime.limits
    stack.lambda_runtime.limits = Limits(account=original.account, function=original.function, throttle_wait_s=0)
    try:
        # Then it is throttled
        with pytest.raises(ClientError) as caught:
            _invoke(aws, name, {"mode": "ok"})
        assert caught.value.response["Error"]["Code"] == "TooManyRequestsException"
    finally:
        stack.lambda_runtime.limits = original
        aws("lambda").delete_function_concurrency(FunctionName=name)
    _invoke(aws, name, {"mode": "ok"})


def test_warm_workers_never_outnumber_the_account_limit(stack: LocalStack, aws) -> None:
    from dropship.local.lambda_runtime import Limits

    runtime = stack.lambda_runtime
    original = runtime.limits
    runtime.limits = Limits(account=2, function=2, throttle_wait_s=5)
    try:
        # When three functions are invoked one after the other
        for key in ("WorkFunctionName", "QuickFunctionName", "RecordEventFunctionName"):
            _invoke(aws, stack.outputs[key], {"mode": "ok", "detail": {"executionArn": "x", "status": "none"}})
            # Then no more than two workers are warm at any time
            assert runtime.worker_count() <= 2
    finally:
        runtime.limits = original


def test_waiting_invocations_are_served_in_order_of_arrival(tmp_path: Path) -> None:
    from dropship.local.lambda_runtime import Limits

    # Given one slot in the account, taken by a running invocation
    runtime, supervisor, fn = _echo_runtime(tmp_path, Limits(account=1, function=1, throttle_wait_s=30))
    served: list[int] = []
    try:
        first = threading.Thread(target=runtime.invoke_function, args=(fn, b'{"sleep": 1}', {}))
        first.start()
        wait_until(lambda: runtime.running("echo") == 1, 10)

        # When three more arrive one after the other
        def invoke(n: int) -> None:
            runtime.invoke_function(fn, json.dumps({"n": n}).encode(), {})
            served.append(n)

        callers = []
        for n in range(3):
            callers.append(threading.Thread(target=invoke, args=(n,)))
            callers[-1].start()
            wait_until(lambda n=n: runtime.waiting() == n + 1, 10)
        for caller in [first, *callers]:
            caller.join()
    finally:
        runtime.stop()
        supervisor.stop()
    # Then they ran in the order they came
    assert served == [0, 1, 2]

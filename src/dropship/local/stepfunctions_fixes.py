"""Step Functions fixes: where moto 5.2.5's API layer differs from AWS.

- ``SendTaskFailure`` drops ``cause`` in moto's response handler (its interpreter would keep it), so a task
  failed through a task token loses its message. -> the handler passes ``cause`` on, as AWS does.
- ``StopExecution`` while a task waits (a ``.waitForTaskToken`` callback, a Lambda invocation) wakes the task
  with nothing on its evaluation stack; the interpreter then fails it with a ``States.Runtime`` error and the
  execution ends FAILED through the state's Catch. -> a task interrupted by a stop ends quietly, and the
  execution ends ABORTED, as in AWS.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any
from unittest import mock


def install(patches: ExitStack) -> None:
    from moto.core.responses import EmptyResult
    from moto.stepfunctions.responses import StepFunctionResponse

    def send_task_failure(response: Any) -> Any:
        response.stepfunction_backend.send_task_failure(
            response._get_param("taskToken"), error=response._get_param("error"), cause=response._get_param("cause")
        )
        return EmptyResult()

    patches.enter_context(mock.patch.object(StepFunctionResponse, "send_task_failure", send_task_failure))

    from moto.stepfunctions.parser.asl.component.state.exec.execute_state import ExecutionState

    original_evaluate = ExecutionState._evaluate_with_timeout

    def evaluate_with_timeout(state: Any, env: Any) -> None:
        try:
            original_evaluate(state, env)
        except Exception:
            if env.is_running():
                raise

    patches.enter_context(mock.patch.object(ExecutionState, "_evaluate_with_timeout", evaluate_with_timeout))

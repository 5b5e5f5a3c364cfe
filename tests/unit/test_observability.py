"""The task wrapper: handlers import without the X-Ray SDK; the first invocation creates the Tracer."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

# Run in a fresh interpreter: what a handler module's import pulls in is only visible there.
SCRIPT = textwrap.dedent(
    """
    import json, sys
    from dataclasses import dataclass

    from dropship.observability import task
    from dropship.errors import TransientAwsError
    from botocore.exceptions import ClientError

    imported_at_start = "aws_xray_sdk" in sys.modules

    @dataclass
    class Context:  # what Lambda passes; Powertools reads these
        function_name: str = "dropship-LockFunction"
        memory_limit_in_mb: int = 512
        invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:dropship-LockFunction"
        aws_request_id: str = "0f1e2d3c"

    @task
    def handler(event, context):
        if event.get("throttle"):
            raise ClientError({"Error": {"Code": "ThrottlingException"}}, "GetItem")
        return {"ok": event["execution_arn"]}

    result = handler({"execution_arn": "arn:exec"}, Context())
    try:
        handler({"throttle": True}, Context())
        retryable = False
    except TransientAwsError:
        retryable = True

    from aws_xray_sdk.core import patcher
    print(json.dumps({
        "imported_at_start": imported_at_start,
        "result": result,
        "retryable": retryable,
        "patched": sorted(patcher._PATCHED_MODULES),
        "name": handler.__name__,
    }))
    """
)


def test_the_xray_sdk_is_loaded_on_the_first_invocation_and_patches_botocore_only() -> None:
    env = {
        "AWS_LAMBDA_FUNCTION_NAME": "dropship-LockFunction",
        "LAMBDA_TASK_ROOT": "/var/task",
        "AWS_XRAY_CONTEXT_MISSING": "IGNORE_ERROR",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_METRICS_NAMESPACE": "Dropship",
        "POWERTOOLS_SERVICE_NAME": "dropship",
    }
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    # Given a handler module imported: no X-Ray SDK yet
    assert outcome["imported_at_start"] is False
    # When invoked, Then it returns the handler's result, turns throttling into a retryable error,
    # and the Tracer it created patched botocore (every AWS call dropship makes) and nothing else
    assert outcome["result"] == {"ok": "arn:exec"}
    assert outcome["retryable"] is True
    assert outcome["patched"] == ["botocore"]
    assert outcome["name"] == "handler"

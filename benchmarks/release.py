"""Benchmark: how a release waits for its endpoint, polling (the old way) against SageMaker's events.

Not a test. Run from the repository root (it takes about 2 x (delays + 20 s) x releases):

    .venv/bin/python benchmarks/release.py [--delays 5,60,300] [--releases 2] [--poll-seconds 30]

Both variants run through the local stack (the real template, handlers and container), with the
endpoint's start-up delayed by DROPSHIP_LOCAL_ENDPOINT_STARTUP_DELAY (as a large model would take to
load). The event-driven variant is the shipped state machine. The polling variant is the same definition
with Wait For InService replaced by the classic loop (Wait poll-seconds -> DescribeEndpoint -> Choice),
deployed beside it with the same functions and role. Printed per variant and delay (medians):

- upload -> alias moved: from PutObject returning to Update Alias succeeding;
- InService -> smoke test: from the endpoint becoming InService to Smoke Test starting;
- state transitions (every state entered, and every retry of a task) and Lambda invocations per release
  (tasks the state machine runs, and functions EventBridge invokes for the release's endpoint).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DELAY_ENV = "DROPSHIP_LOCAL_ENDPOINT_STARTUP_DELAY"
PARAMETERS = {
    "EndpointTimeoutSeconds": "1800",
    "LockPollSeconds": "1",
    "EndpointCheckSeconds": "900",
    "DefaultImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/dropship-serve:0.1.0",
}


@dataclass
class Measured:
    upload_to_alias_s: float
    inservice_to_smoke_s: float
    transitions: int
    lambda_invocations: int


def polling_definition(definition: dict[str, Any], poll_seconds: int) -> dict[str, Any]:
    """The shipped definition with its event-driven wait replaced by the classic polling loop."""
    polling = copy.deepcopy(definition)
    states = polling["States"]
    retry = states["Create Endpoint"]["Retry"]
    states["Wait For InService"] = {"Type": "Wait", "Seconds": poll_seconds, "Next": "Check Endpoint Status"}
    states["Check Endpoint Status"] = {
        "Type": "Task",
        "Resource": "arn:aws:states:::aws-sdk:sagemaker:describeEndpoint",
        "Parameters": {"EndpointName.$": "$.release.resource_name"},
        "ResultSelector": {"status.$": "$.EndpointStatus"},
        "ResultPath": "$.endpoint",
        "TimeoutSeconds": 60,
        "Retry": retry,
        "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Clean Up"}],
        "Next": "Endpoint InService?",
    }
    states["Endpoint InService?"] = {
        "Type": "Choice",
        "Choices": [{"Variable": "$.endpoint.status", "StringEquals": "InService", "Next": "Smoke Test"}],
        "Default": "Wait For InService",
    }
    return polling


def measure(harness: Any, execution_arn: str, uploaded_at: float, endpoint_name: str, log_dir: Path) -> Measured:
    history = harness.history_events(execution_arn)

    def entered(name: str) -> float:
        return next(
            e["timestamp"].timestamp() for e in history if e.get("stateEnteredEventDetails", {}).get("name") == name
        )

    alias_moved = next(
        e["timestamp"].timestamp()
        for e in history
        if e.get("stateExitedEventDetails", {}).get("name") == "Update Alias"
    )
    described = harness.sagemaker.describe_endpoint(EndpointName=endpoint_name)
    in_service = described["LastModifiedTime"].timestamp()  # the last change was to InService
    entries = sum(1 for e in history if e["type"].endswith("StateEntered"))
    scheduled = [e for e in history if e["type"] == "TaskScheduled"]
    retries = len(scheduled) - sum(1 for e in history if e["type"] == "TaskStateEntered")
    lambda_tasks = sum(1 for e in scheduled if e["taskScheduledEventDetails"]["resourceType"] == "lambda")
    by_events = _event_invocations(log_dir, endpoint_name)
    return Measured(
        upload_to_alias_s=alias_moved - uploaded_at,
        inservice_to_smoke_s=entered("Smoke Test") - in_service,
        transitions=entries + max(retries, 0),
        lambda_invocations=lambda_tasks + by_events,
    )


def _event_invocations(log_dir: Path, endpoint_name: str) -> int:
    """Invocations of the endpoint-events function that EventBridge made for this endpoint."""
    count = 0
    for log in log_dir.glob("*EndpointEvents*.log"):
        count += sum(1 for line in log.read_text(errors="replace").splitlines()
                     if endpoint_name in line and "endpoint state change" in line)  # fmt: skip
    return count


def run(args: argparse.Namespace) -> None:
    from dropship.local.ports import free_port
    from dropship.local.stack import LocalStack
    from tests.artifacts import iris_artifact
    from tests.integration.harness import Harness
    from tests.integration.test_release_pipeline import _release_rule_name, _s3_event

    results: dict[tuple[str, int], list[Measured]] = {}
    for delay in args.delays:
        os.environ[DELAY_ENV] = str(delay)
        run_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"dropship-release-bench-{os.getpid()}-{delay}"
        stack = LocalStack(REPO, port=free_port(), parameter_overrides=PARAMETERS, run_dir=run_dir)
        stack.start()
        try:
            harness = Harness(stack.endpoint_url, stack.outputs)
            shipped = harness.sfn.describe_state_machine(stateMachineArn=harness.state_machine)
            polling_arn = harness.sfn.create_state_machine(
                name="dropship-Release-polling",
                definition=json.dumps(polling_definition(json.loads(shipped["definition"]), args.poll_seconds)),
                roleArn=shipped["roleArn"],
            )["stateMachineArn"]
            rule = _release_rule_name(harness)
            for variant in ("polling", "events"):
                for n in range(args.releases):
                    model = f"bench-{variant}-{delay}"
                    version = str(n + 1)
                    if variant == "polling":
                        harness.events.disable_rule(Name=rule)
                    uploaded_at = time.time()
                    version_id = harness.upload(model, version, iris_artifact())
                    key = f"models/{model}/{version}/model.tar.gz"
                    if variant == "polling":
                        harness.events.enable_rule(Name=rule)
                        event = _s3_event(harness.bucket, key, version_id, time_now())
                        arn = harness.sfn.start_execution(
                            stateMachineArn=polling_arn, name=f"{model}-{version}", input=json.dumps(event)
                        )["executionArn"]
                    else:
                        arn = harness.execution_for(key, version_id)
                    outcome = harness.wait(arn, timeout=delay + 600)
                    if outcome.status != "SUCCEEDED":
                        raise SystemExit(f"{variant} release failed: {outcome.error}: {outcome.cause}")
                    endpoint = outcome.output["release"]["resource_name"]
                    measured = measure(harness, arn, uploaded_at, endpoint, run_dir / "lambda")
                    results.setdefault((variant, delay), []).append(measured)
                    print(f"  {variant:8} delay {delay:>4} s  release {version}: {measured}", flush=True)
        finally:
            stack.stop()

    print()
    print(f"Median of {args.releases} release(s) each; polling every {args.poll_seconds} s.")
    header = (
        f"{'wait':8} {'start-up':>9} {'upload->alias':>14} {'InService->smoke':>17} {'transitions':>12} {'lambdas':>8}"
    )
    print(header)
    for (variant, delay), runs in sorted(results.items(), key=lambda item: (item[0][1], item[0][0])):
        print(
            f"{variant:8} {delay:>7} s {statistics.median(r.upload_to_alias_s for r in runs):>12.1f} s"
            f" {statistics.median(r.inservice_to_smoke_s for r in runs):>15.2f} s"
            f" {statistics.median(r.transitions for r in runs):>12.0f}"
            f" {statistics.median(r.lambda_invocations for r in runs):>8.0f}"
        )


def time_now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--delays", default="5,60,300", help="endpoint start-up delays, in seconds")
    parser.add_argument("--releases", type=int, default=2, help="releases per variant and delay")
    parser.add_argument("--poll-seconds", type=int, default=30, help="the polling variant's interval")
    args = parser.parse_args()
    args.delays = [int(d) for d in args.delays.split(",")]
    run(args)


if __name__ == "__main__":
    main()

"""EventBridge seams: Step Functions and Lambda targets, and the events AWS services put that moto does not.

moto 5.2.5 gaps filled here:

- ``Rule.send_to_targets`` raises ``NotImplementedError`` for a state machine target and does nothing for
  a Lambda function target. -> a state machine target starts an execution with the event as input; a
  function target (``arn:aws:lambda:...:function:...``) is invoked asynchronously (``Event``) through the
  local Lambda runtime, so the real handler runs, as EventBridge invokes functions. Both honour the
  target's ``Input`` or ``InputPath`` (``InputTransformer`` is not emulated: nothing here uses it).
  Disabled rules deliver nothing.
- moto's Step Functions puts no ``Step Functions Execution Status Change`` events. -> every status change
  of a Standard workflow execution (``RUNNING`` at start, then ``SUCCEEDED``, ``FAILED``, ``TIMED_OUT``
  when the definition's ``TimeoutSeconds`` passes (moto enforces it), ``ABORTED`` on ``StopExecution``)
  puts one on the default bus, with the detail AWS documents (``executionArn``, ``stateMachineArn``,
  ``name``, ``status``, ``startDate``, ``stopDate`` in epoch milliseconds, ``input``, ``output``,
  ``inputDetails``, ``outputDetails``, ``error``, ``cause``). Express workflows put none, as in AWS.
- moto's executing Step Functions backend names an execution started without a name ``None`` (a second
  one then collides). -> a UUID, as AWS does.
- moto delivers events to SQS queues without their ``account`` (its default input template leaves it
  out). -> targets without an ``InputTransformer`` get the whole event, as AWS delivers it.
- moto's S3 -> EventBridge event is sent to the rules of *every* bus and its ``detail.object`` has
  ``eTag`` (AWS: ``etag``), ``version-id: null`` on unversioned buckets (AWS: absent) and a constant
  ``sequencer``; ``time`` is a number (AWS: an ISO-8601 string). -> events go to the default bus only,
  with AWS's field names, an increasing sequencer, and ``time`` rendered as AWS does on delivery.

moto's pattern matcher already supports ``prefix``, ``suffix``, ``wildcard`` (``*`` also matches ``/``),
``anything-but``, ``numeric``, ``exists`` and ``$or`` (checked against its source), so none is added.
"""

from __future__ import annotations

import copy
import itertools
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime
from typing import Any
from unittest import mock

log = logging.getLogger(__name__)

_sequencer = itertools.count(int(time.time() * 1000) << 16)
_sequencer_lock = threading.Lock()


def _next_sequencer() -> str:
    with _sequencer_lock:
        return f"{next(_sequencer):016X}"


# What AWS puts in detail.reason for each S3 event (moto puts "ObjectCreated").
_REASONS = {
    "s3:ObjectCreated:Put": "PutObject",
    "s3:ObjectCreated:Post": "POST Object",
    "s3:ObjectCreated:Copy": "CopyObject",
    "s3:ObjectCreated:CompleteMultipartUpload": "CompleteMultipartUpload",
    "s3:ObjectRemoved:Delete": "DeleteObject",
    "s3:ObjectRemoved:DeleteMarkerCreated": "DeleteObject",
}


def _iso_time(value: Any) -> Any:
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return value


def as_delivered(event: dict[str, Any]) -> dict[str, Any]:
    """The event as AWS delivers it to a target: ISO ``time``, no moto-internal fields."""
    delivered = {k: v for k, v in event.items() if k != "ingestion-time"}
    if "time" in delivered:
        delivered["time"] = _iso_time(delivered["time"])
    return delivered


def target_input(target: dict[str, Any], raw_event: dict[str, Any]) -> Any:
    """What a target receives: the event as delivered, or the target's ``Input`` (constant JSON) or ``InputPath``."""
    event = as_delivered(raw_event)
    if target.get("Input"):
        return json.loads(target["Input"])
    if target.get("InputPath"):
        from jsonpath_ng.ext import parse

        matches = parse(target["InputPath"]).find(event)
        return matches[0].value if matches else None
    return event


def _arn_kind(arn: str) -> str | None:
    """``"stateMachine"`` or ``"function"`` for the targets delivered here, else None (moto delivers it)."""
    parts = arn.split(":")
    if len(parts) >= 7 and parts[2] == "states" and parts[5] == "stateMachine":
        return "stateMachine"
    if len(parts) >= 7 and parts[2] == "lambda" and parts[5] == "function":
        return "function"
    return None


def start_execution_for(target: dict[str, Any], event: dict[str, Any]) -> str:
    """Start the target state machine with the event; returns the execution ARN."""
    from moto.stepfunctions.responses import get_backend

    arn = target["Arn"]
    _, _, _, region, account, *_ = arn.split(":")
    payload = target_input(target, event)
    execution = get_backend(account, region).start_execution(
        arn, name=str(uuid.uuid4()), execution_input=json.dumps(payload)
    )
    log.info("event %s (%s) started %s", event.get("id"), event.get("detail-type"), execution.execution_arn)
    return str(execution.execution_arn)


def invoke_function_for(target: dict[str, Any], event: dict[str, Any]) -> None:
    """Invoke the target function asynchronously with the event, through the local Lambda runtime."""
    from moto.awslambda.utils import get_backend

    arn = target["Arn"]
    parts = arn.split(":")
    region, account, name = parts[3], parts[4], parts[6]
    qualifier = parts[7] if len(parts) > 7 else None
    get_backend(account, region).invoke(
        name, qualifier, json.dumps(target_input(target, event)), {"X-Amz-Invocation-Type": "Event"}, {}
    )
    log.info("event %s (%s) invoked %s", event.get("id"), event.get("detail-type"), arn)


_DELIVER = {"stateMachine": start_execution_for, "function": invoke_function_for}


def install(patches: ExitStack) -> None:
    """Patch moto's EventBridge rule delivery, S3's EventBridge notifications and Step Functions executions."""
    from moto.events.models import Rule
    from moto.s3 import notifications

    original_send = Rule.send_to_targets

    def send_to_targets(self: Any, original_event: Any, transform_input: bool = True) -> None:
        if getattr(self, "state", "ENABLED") != "ENABLED" or getattr(self, "scheduled_expression", None):
            return  # a scheduled rule is not matched against events
        if not self.event_pattern.matches_event(original_event):
            return
        other_targets = []
        for target in self.targets:
            kind = _arn_kind(target.get("Arn", ""))
            if kind is None:
                other_targets.append(target)
                continue
            try:
                _DELIVER[kind](target, original_event)
            except Exception:  # delivery is asynchronous in AWS: the sender never sees target failures
                log.exception("rule %s: could not deliver to %s", self.name, target.get("Arn"))
        # moto's default input template drops `account` (and keeps `ingestion-time`): a target without an
        # InputTransformer gets the event as AWS delivers it; moto renders `time` for the queue or log group.
        plain = [t for t in other_targets if not t.get("InputTransformer")]
        transformed = [t for t in other_targets if t.get("InputTransformer")]
        event = {k: v for k, v in original_event.items() if k != "ingestion-time"}
        deliveries: list[tuple[list[Any], Any, bool]] = [
            (plain, event, False),
            (transformed, original_event, transform_input),
        ]
        for targets, delivered, transform in deliveries:
            if targets:
                rest = copy.copy(self)
                rest.targets = targets
                original_send(rest, delivered, transform)

    patches.enter_context(mock.patch.object(Rule, "send_to_targets", send_to_targets))

    def send_event_bridge_message(account_id: str, bucket: Any, event_name: str, key: Any) -> None:
        try:
            from moto.events.models import events_backends
            from moto.events.utils import _BASE_EVENT_MESSAGE

            obj: dict[str, Any] = {
                "key": key.name,
                "size": key.size,
                "etag": key.etag.replace('"', ""),
                "sequencer": _next_sequencer(),
            }
            if key.version_id and bucket.is_versioned:
                obj["version-id"] = key.version_id
            event = copy.deepcopy(_BASE_EVENT_MESSAGE)
            event.update(
                {
                    "id": str(uuid.uuid4()),
                    "detail-type": notifications._detail_type(event_name),
                    "source": "aws.s3",
                    "account": account_id,
                    "time": time.time(),
                    "region": bucket.region_name,
                    "resources": [bucket.arn],
                    "detail": {
                        "version": "0",
                        "bucket": {"name": bucket.name},
                        "object": obj,
                        "request-id": uuid.uuid4().hex[:16].upper(),
                        "requester": account_id,
                        "source-ip-address": "127.0.0.1",
                        "reason": _REASONS.get(event_name, event_name.split(":")[-1]),
                    },
                }
            )
            if event["detail-type"] == "Object Deleted":
                event["detail"]["deletion-type"] = "Permanently Deleted"
                event["detail"]["object"].pop("size", None)
            bus = events_backends[account_id][bucket.region_name].event_buses.get("default")
            if bus is None:
                return
            for rule in list(bus.rules.values()):
                rule.send_to_targets(event, transform_input=False)
        except Exception:  # S3 never fails the upload because of its notifications
            log.exception("S3 EventBridge notification for s3://%s/%s failed", bucket.name, key.name)

    patches.enter_context(mock.patch.object(notifications, "_send_event_bridge_message", send_event_bridge_message))

    _install_execution_events(patches)


# --------------------------------------------------------------------------------------------------
# Step Functions Execution Status Change


def _epoch_ms(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp() * 1000)


def execution_status_detail(execution: Any, status: str) -> dict[str, Any]:
    """``detail`` of a ``Step Functions Execution Status Change`` event: DescribeExecution's fields."""
    machine = execution.state_machine
    succeeded = status == "SUCCEEDED"
    return {
        "executionArn": execution.exec_arn,
        "stateMachineArn": getattr(machine, "source_arn", None) or machine.arn,
        "name": execution.name,
        "status": status,
        "startDate": _epoch_ms(execution.start_date),
        "stopDate": None if status == "RUNNING" else _epoch_ms(execution.stop_date),
        "input": json.dumps(execution.input_data, separators=(",", ":")),
        "inputDetails": {"included": True},
        "output": json.dumps(execution.output, separators=(",", ":")) if succeeded else None,
        "outputDetails": {"included": True} if succeeded else None,
        "error": execution.error,
        "cause": execution.cause,
    }


def put_service_event(
    account_id: str, region: str, source: str, detail_type: str, resource: str, detail: Callable[[], object]
) -> None:
    """Put an AWS service's event on the account's default bus, as the service does: best effort, so the
    operation it reports (a state change, an execution's end) never fails because of its event."""
    from moto.events.models import events_backends

    try:
        entry = {"Source": source, "DetailType": detail_type, "Detail": json.dumps(detail()), "Resources": [resource]}
        events_backends[account_id][region].put_events([entry])
    except Exception:
        log.exception("could not put the %s event of %s", detail_type, resource)


def put_execution_status_change(execution: Any, status: str) -> None:
    """Put the event on the execution's default bus, as Step Functions does for Standard workflows."""
    # moto keeps the workflow type in `type` (its `sm_type` always says STANDARD)
    if str(getattr(execution.state_machine, "type", "STANDARD")) != "STANDARD":
        return
    put_service_event(
        execution.account_id,
        execution.region_name,
        "aws.states",
        "Step Functions Execution Status Change",
        execution.exec_arn,
        lambda: execution_status_detail(execution, status),
    )


def _install_execution_events(patches: ExitStack) -> None:
    from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication, Execution
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    original_start = Execution.start
    original_terminated = BaseExecutionWorkerCommunication.terminated
    original_start_execution = StepFunctionsParserBackend.start_execution

    def start_execution(self: Any, state_machine_arn: str, name: Any = None, *args: Any, **kwargs: Any) -> Any:
        # StartExecution without a name gets a UUID, as in AWS (moto's executing backend keeps None, so a
        # second unnamed execution would collide with the first).
        return original_start_execution(self, state_machine_arn, name or str(uuid.uuid4()), *args, **kwargs)

    def start(self: Any) -> None:
        put_execution_status_change(self, "RUNNING")  # before the worker runs: RUNNING always comes first
        original_start(self)

    def terminated(self: Any) -> None:
        original_terminated(self)
        status = self.execution.exec_status
        put_execution_status_change(self.execution, str(getattr(status, "value", status)))

    patches.enter_context(mock.patch.object(StepFunctionsParserBackend, "start_execution", start_execution))
    patches.enter_context(mock.patch.object(Execution, "start", start))
    patches.enter_context(mock.patch.object(BaseExecutionWorkerCommunication, "terminated", terminated))

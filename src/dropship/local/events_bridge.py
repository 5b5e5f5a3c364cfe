"""EventBridge seams: Step Functions targets, and S3 "Object Created" events shaped as AWS sends them.

moto 5.2.5 gaps filled here:

- ``Rule.send_to_targets`` raises ``NotImplementedError`` for a state machine target. -> a target whose
  ARN is ``arn:aws:states:...:stateMachine:...`` starts an execution with the event as input,
  honouring the target's ``Input`` or ``InputPath`` (``InputTransformer`` is not emulated: nothing here
  uses it). Disabled rules deliver nothing.
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


def _is_state_machine(arn: str) -> bool:
    parts = arn.split(":")
    return len(parts) >= 7 and parts[2] == "states" and parts[5] == "stateMachine"


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


def install(patches: ExitStack) -> None:
    """Patch moto's EventBridge rule delivery and S3's EventBridge notifications."""
    from moto.events.models import Rule
    from moto.s3 import notifications

    original_send = Rule.send_to_targets

    def send_to_targets(self: Any, original_event: Any, transform_input: bool = True) -> None:
        if getattr(self, "state", "ENABLED") != "ENABLED":
            return
        if not self.event_pattern.matches_event(original_event):
            return
        machine_targets = [t for t in self.targets if _is_state_machine(t.get("Arn", ""))]
        other_targets = [t for t in self.targets if not _is_state_machine(t.get("Arn", ""))]
        for target in machine_targets:
            try:
                start_execution_for(target, original_event)
            except Exception:  # delivery is asynchronous in AWS: the sender never sees target failures
                log.exception("rule %s: could not start %s", self.name, target.get("Arn"))
        if other_targets:
            rest = copy.copy(self)
            rest.targets = other_targets
            original_send(rest, original_event, transform_input)

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

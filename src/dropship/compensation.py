"""Undoing a release: deleting what one execution created (or dooming what SageMaker is still creating),
moving an alias back, retiring old releases, and saying why a release failed without leaking its state."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from dropship.alias import AliasRecord
from dropship.endpoints import Endpoints
from dropship.errors import InternalError, code_for
from dropship.history import ReleaseRecord, stamp
from dropship.notify import ErrorDetail, ReleaseEventDetail
from dropship.parts import Parts
from dropship.release import Release, StateError, iso, utc_now
from dropship.waits import EndpointWait, EndpointWaits

MESSAGE_LIMIT = 4000


def safe_cause(cause: str) -> str:
    """A cause fit for people and events: no execution state, manifest or stack trace ever leaks through.

    Lambda errors carry ``{"errorMessage", "errorType", "stackTrace"}``: only the message is kept. Step
    Functions' own errors (``States.Runtime`` ...) may quote the state, a JSON object: it is cut off there
    (a list in brackets, as in CloudWatch's "datapoints [0.4 (...)]", stays).
    """
    try:
        parsed = json.loads(cause)
    except (TypeError, ValueError):
        parsed = None
    if isinstance(parsed, dict):
        return str(parsed.get("errorMessage") or "")[:MESSAGE_LIMIT]
    if parsed is not None:
        return ""
    state_at = cause.find("{")
    text = cause[:state_at].rstrip(" :'\"") if state_at >= 0 else cause
    return text[:MESSAGE_LIMIT]


def failure_of(error: StateError | None) -> ErrorDetail:
    """The contract code and a human message from an error Step Functions caught."""
    if error is None:
        return ErrorDetail(code="InternalError", message="the release failed without an error (this is a bug)")
    code = code_for(error.error)
    message = safe_cause(error.cause)
    if code == "InternalError" and not error.error.endswith("Error"):
        message = f"{error.error}: {message}" if message else error.error
    return ErrorDetail(code=code, message=message or error.error)


@dataclass(frozen=True)
class ReleaseRef:
    """What compensation needs to know about a release: enough to find everything it created."""

    model: str
    alias: str
    execution_arn: str
    endpoint_name: str
    upload_order: str | None = None

    @classmethod
    def of(cls, release: Release) -> ReleaseRef:
        return cls(release.model, release.alias, release.execution_arn, release.endpoint_name, release.upload_order)


def compensate_resources(endpoints: Endpoints, waits: EndpointWaits, name: str, execution_arn: str) -> list[str]:
    """Delete the endpoint (its autoscaling first), config and model named ``name`` now, or doom them until
    SageMaker has finished creating the endpoint (it refuses to delete one in progress). Returns what could
    not be done."""
    deletion = endpoints.delete(name)
    if deletion.busy is not None:
        waits.record(EndpointWait(endpoint_name=name, kind="doomed", execution_arn=execution_arn))
        return []
    waits.forget(name, execution_arn)
    return deletion.failed


def compensate(parts: Parts, ref: ReleaseRef, started_at: datetime) -> list[str]:
    """Undo exactly what one execution created and give back what it held; returns what is left behind.

    Every step is tried even when another fails; an endpoint an alias serves is never deleted. If a step
    raised, the first error is raised at the end (the task is retried; every step is idempotent).
    """
    problems: list[str] = []
    errors: list[Exception] = []

    def attempt(step: Callable[[], object]) -> None:
        try:
            step()
        except Exception as exc:
            errors.append(exc)

    def resources() -> None:
        current = parts.aliases.get(ref.model, ref.alias)
        if current is not None and current.execution_arn == ref.execution_arn:
            problems.append(f"alias {ref.alias!r} still serves {ref.endpoint_name}, so it was kept")
            return
        left = compensate_resources(parts.endpoints, parts.waits, ref.endpoint_name, ref.execution_arn)
        problems.extend(left)
        if not left:  # deleted, or doomed: deleted as soon as SageMaker has finished creating it
            parts.table.put_release(ref.model, started_at, ref.execution_arn, endpoint_state="deleted")

    attempt(lambda: parts.watches.end(ref.model, ref.alias, ref.execution_arn, ref.endpoint_name))
    attempt(resources)
    attempt(lambda: parts.table.release_lock(ref.model, ref.execution_arn))
    if ref.upload_order:
        attempt(lambda: parts.table.dequeue(ref.model, str(ref.upload_order), ref.execution_arn))
    if errors:
        raise errors[0]
    return problems


def roll_back(parts: Parts, ref: ReleaseRef, started_at: datetime, previous: AliasRecord | None, reason: str) -> str:
    """Move the alias from this release back to the one live before it (a tripped watch); returns what was
    done. Nothing moves unless the alias still serves this release."""
    current = parts.aliases.get(ref.model, ref.alias)
    if current is None or current.execution_arn != ref.execution_arn:
        return "the alias had already moved on"
    now = stamp(utc_now())
    if previous is None:
        parts.aliases.delete(ref.model, ref.alias)
        target = "none (no release was live before it; the alias was removed)"
    else:
        view = parts.endpoints.describe(previous.endpoint_name)
        if view is None or view.status != "InService":
            return f"the alias stayed: version {previous.version}'s endpoint is {view.status if view else 'gone'}"
        parts.aliases.put(ref.alias, previous.model_copy(update={"released_at": iso(utc_now())}))
        before = next((r for r in parts.table.records(ref.model) if r.execution_arn == previous.execution_arn), None)
        if before is not None:
            parts.table.put_release(ref.model, before.started, before.execution_arn, live_at=now,
                                    rolled_back_from=current.version)  # fmt: skip
        target = f"version {previous.version}"
    parts.table.put_release(
        ref.model, started_at, ref.execution_arn, rolled_back_at=now, rollback_reason=reason,
        rolled_back_to=previous.version if previous else None,
    )  # fmt: skip
    restored = previous or current
    parts.notifier.put(
        "Release Rolled Back",
        ReleaseEventDetail(
            model=ref.model,
            version=restored.version,
            execution_arn=restored.execution_arn,
            endpoint_name=previous.endpoint_name if previous else None,
            alias=ref.alias,
            rolled_back_from=current.version,
            reason=reason,
        ),
    )
    return f"the alias went back to {target}"


def retire(parts: Parts, release: Release) -> list[str]:
    """Delete the endpoints of this alias's releases beyond ``retain``; never one any alias points at."""
    in_use = {record.endpoint_name for record in parts.aliases.all_for(release.model).values()}
    live = [
        record
        for record in parts.table.records(release.model)
        if record.endpoint_state == "active" and record.alias == release.alias and record.endpoint_name
    ]
    live.sort(key=ReleaseRecord.live_order, reverse=True)
    kept, retired, problems = 0, [], []
    for record in live:
        name = str(record.endpoint_name)
        if name in in_use:
            continue
        if kept < release.retain:
            kept += 1
            continue
        left = compensate_resources(parts.endpoints, parts.waits, name, record.execution_arn)
        if left:
            problems += left
            continue
        parts.table.put_release(release.model, record.started, record.execution_arn, endpoint_state="retired")
        retired.append(name)
    if problems:
        raise InternalError(f"could not retire every old release: {'; '.join(problems)}")
    return retired

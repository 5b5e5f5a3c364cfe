"""What each task of the ``Release`` state machine does, with its AWS clients passed in.

The handlers in ``functions/`` only parse their input, load their settings, build clients and call
one of these.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from dropship.alias import DEFAULT_ALIAS, AliasRecord, AliasStore
from dropship.endpoints import Endpoints, Fleet, capture_uri
from dropship.errors import (
    ERROR_CODES,
    AlarmTriggeredError,
    AliasConflictError,
    DropshipError,
    InternalError,
    SmokeTestFailedError,
    code_for,
)
from dropship.history import ReleaseRecord, ReleaseTable, stamp
from dropship.names import guess_model_version, parse_drop_key, resource_name
from dropship.notify import ErrorDetail, Notifier, ReleaseEventDetail
from dropship.parts import Parts
from dropship.release import (
    AliasUpdate,
    ExecutionState,
    LockResult,
    Release,
    SmokeReport,
    StateError,
    WatchOutcome,
    iso,
    utc_now,
)
from dropship.smoke import run as run_smoke_test
from dropship.waits import SETTLED, EndpointStatus, EndpointWait, EndpointWaits, endpoint_outcome
from dropship.watch import Watches, alarm_message

LOCK_LEASE_MARGIN_S = 1800
MESSAGE_LIMIT = 4000


# -- the per-model lock ----------------------------------------------------------------------------


def ensure_not_superseded(table: ReleaseTable, release: Release) -> None:
    newest = table.newest_live_upload(release.model, release.alias)
    if newest and str(newest.get("upload_order", "")) > release.upload_order:
        raise AliasConflictError(
            f"{release.model} version {newest['version']}, uploaded after this one, is already live on alias "
            f"{release.alias!r}; this upload of version {release.version} (uploaded at "
            f"{iso(release.uploaded_at)}) would move the alias back. Upload it again to release it."
        )


def acquire_lock(table: ReleaseTable, release: Release, now: datetime | None = None) -> LockResult:
    """Take the model's lock when it is free and no earlier upload is waiting for it; else report who is
    ahead. Gives up with AliasConflict after the lock timeout."""
    ensure_not_superseded(table, release)
    lease = release.endpoint_timeout_s + LOCK_LEASE_MARGIN_S
    table.enqueue(release.model, release.upload_order, release.execution_arn, release.lock_timeout_s + lease)
    first = table.first_waiter(release.model)
    holder = None if first in (None, release.execution_arn) else f"waiting behind {first}, uploaded earlier"
    if holder is None:
        holder = table.acquire_lock(release.model, release.execution_arn, lease)
    if holder is None:
        table.dequeue(release.model, release.upload_order, release.execution_arn)
        table.enter_stage(release.model, release.started_at, release.execution_arn, "Locked")
        return LockResult(acquired=True)
    waited = ((now or utc_now()) - release.started_at).total_seconds()
    if waited > release.lock_timeout_s:
        table.dequeue(release.model, release.upload_order, release.execution_arn)
        raise AliasConflictError(
            f"another release of {release.model} ({holder}) kept the model's lock for over "
            f"{release.lock_timeout_s} s (stack parameter LockTimeoutSeconds); upload again once it has finished"
        )
    return LockResult(acquired=False, holder=holder)


# -- the endpoint ----------------------------------------------------------------------------------


def create_endpoint(
    endpoints: Endpoints,
    waits: EndpointWaits,
    aliases: AliasStore,
    release: Release,
    execution_role_arn: str,
    still_running: Callable[[], bool],
) -> Release:
    """Create the release's model, endpoint config and endpoint, sized and capturing like the live fleet
    (see ``plan_fleet``). A create that lands after the execution was stopped undoes itself, so a stopped
    release leaves nothing behind however the two interleave. Returns the release as deployed."""
    live = aliases.get(release.model, release.alias)
    release, capture = plan_fleet(release, endpoints.fleet(live.endpoint_name) if live else None)
    endpoints.create_all(release, execution_role_arn, capture)
    if not still_running():
        compensate_resources(endpoints, waits, release.resource_name, release.execution_arn)
        raise InternalError(f"the execution stopped while {release.resource_name} was created; it is removed")
    return release


def plan_fleet(release: Release, live: Fleet | None) -> tuple[Release, dict[str, Any] | None]:
    """The new fleet never starts smaller than the live one (unless the manifest sets the count), stays
    within its autoscaling bounds, and captures data as the manifest says, else as the live release does."""
    deployment = release.deployment
    count = deployment.initial_instance_count
    if deployment.serverless is None and count is not None:
        if live is not None and not deployment.instance_count_from_manifest:
            count = max(count, live.instance_count)
        if deployment.autoscaling is not None:
            count = min(max(count, deployment.autoscaling.min_instances), deployment.autoscaling.max_instances)
    planned = release.model_copy(update={"deployment": deployment.model_copy(update={"initial_instance_count": count})})
    return planned, capture_config(release, live)


def capture_config(release: Release, live: Fleet | None) -> dict[str, Any] | None:
    wanted = release.deployment.data_capture
    if wanted is None:
        return live.capture if live is not None else None
    if wanted.sampling_percent == 0:
        return None
    return {
        "EnableCapture": True,
        "InitialSamplingPercentage": wanted.sampling_percent,
        "DestinationS3Uri": capture_uri(release.bucket, release.model),
        "CaptureOptions": [{"CaptureMode": mode.title()} for mode in wanted.capture],
        "CaptureContentTypeHeader": {"CsvContentTypes": ["text/csv"], "JsonContentTypes": ["application/json"]},
    }


def wait_for_endpoint(endpoints: Endpoints, waits: EndpointWaits, release: Release, task_token: str) -> None:
    """Register the task token; resume at once if the endpoint has already settled or waited too long."""
    wait = EndpointWait(
        endpoint_name=release.endpoint_name,
        kind="wait",
        execution_arn=release.execution_arn,
        task_token=task_token,
        timeout_s=release.endpoint_timeout_s,
    )
    waits.record(wait)
    view = endpoints.describe(release.endpoint_name)
    if view is None:
        waits.fail(wait, InternalError(f"endpoint {release.endpoint_name} does not exist (deleted meanwhile?)"))
        return
    resolve(waits, wait, view.status, view.failure_reason, view.created)


def resolve(
    waits: EndpointWaits,
    wait: EndpointWait,
    status: EndpointStatus,
    failure_reason: str | None,
    created: datetime | None,
) -> None:
    failure = endpoint_outcome(wait.endpoint_name, status, failure_reason, created, wait.timeout_s or 0)
    if failure is not None:
        waits.fail(wait, failure)
    elif status == "InService":
        waits.succeed(wait, status)


def on_endpoint_status(
    endpoints: Endpoints, waits: EndpointWaits, name: str, status: EndpointStatus, failure_reason: str | None
) -> str:
    """A state change of an endpoint (from SageMaker's event): resume its waiting release, or delete it if
    it is doomed and SageMaker has finished with it. Duplicate events find nothing left to do."""
    wait = waits.get(name)
    if wait is None:
        return "nothing waits for it"
    if wait.kind == "doomed":
        if status not in SETTLED:
            return f"doomed, still {status}"
        compensate_resources(endpoints, waits, name, wait.execution_arn)
        return "doomed: deleted"
    view = endpoints.describe(name)
    resolve(waits, wait, status, failure_reason, view.created if view else None)
    return f"resumed on {status}" if status in ("InService", "Failed") else f"still waiting ({status})"


def sweep(endpoints: Endpoints, waits: EndpointWaits) -> list[str]:
    """The fallback for lost events: look at every waiting or doomed endpoint once."""
    done = []
    for wait in waits.pending():
        view = endpoints.describe(wait.endpoint_name)
        if view is None:
            waits.forget(wait.endpoint_name, wait.execution_arn)
            continue
        outcome = on_endpoint_status(endpoints, waits, wait.endpoint_name, view.status, view.failure_reason)
        done.append(f"{wait.endpoint_name}: {outcome}")
    return done


# -- smoke test and alias --------------------------------------------------------------------------


def smoke_test(runtime: Any, table: ReleaseTable, release: Release) -> SmokeReport:
    """Send every sample and record the results; a failed expectation fails the release (SmokeTestFailed)."""
    report = run_smoke_test(runtime, release.endpoint_name, release.smoke_test, default=release.default_smoke)
    table.put_release(release.model, release.started_at, release.execution_arn, smoke=list(report.results))
    if not report.passed:
        raise SmokeTestFailedError(report.summary)
    return report


def update_alias(table: ReleaseTable, aliases: AliasStore, endpoints: Endpoints, release: Release) -> AliasUpdate:
    """Register the new variant's autoscaling, then move the alias to this release. Writing the alias is
    the last thing done: nothing can fail after it. Returns it and the record it replaced."""
    if not table.advance_alias_watermark(release.model, release.alias, release.upload_order, release.version):
        ensure_not_superseded(table, release)  # raises with the details
        raise AliasConflictError(f"a later upload of {release.model} is already live on alias {release.alias!r}")
    endpoints.register_autoscaling(release)
    previous = aliases.get(release.model, release.alias)
    record = AliasRecord(
        model=release.model,
        version=release.version,
        endpoint_name=release.endpoint_name,
        sha256=release.sha256,
        released_at=iso(utc_now()),
        execution_arn=release.execution_arn,
    )
    table.put_release(
        release.model,
        release.started_at,
        release.execution_arn,
        released_at=record.released_at,
        live_at=stamp(utc_now()),  # finer than released_at: orders rollbacks within one second
        endpoint_state="active",
    )
    table.enter_stage(release.model, release.started_at, release.execution_arn, "Live")
    aliases.put(release.alias, record)
    return AliasUpdate(record=record, previous=previous)


# -- the watch ---------------------------------------------------------------------------------------


def watch_release(table: ReleaseTable, watches: Watches, release: Release, task_token: str) -> str:
    """Register (or renew, every ``check_s``) the watch of the live release; end it when the bake is over,
    or fail it with AlarmTriggered when a watched alarm is in ALARM."""
    if release.watch.bake_s == 0:
        watches.succeed(task_token, WatchOutcome())
        return "not watched"
    record = watches.start(release, task_token)
    figures = watches.figures(record, release.watch)
    table.put_release(release.model, release.started_at, release.execution_arn, watch=figures)
    tripped = watches.tripped(record)
    if tripped is not None:
        watches.fail(task_token, AlarmTriggeredError(alarm_message(record, *tripped, figures)))
        return f"tripped: {tripped[0]}"
    if time.time() >= record.until:
        watches.succeed(task_token, WatchOutcome(watched_s=release.watch.bake_s, figures=figures))
        return "baked"
    if record.started >= time.time() - release.watch.check_s:  # the first look
        table.enter_stage(release.model, release.started_at, release.execution_arn, "Watching")
    return f"watching until {figures.until}: {figures.describe()}"


def on_alarm_state(watches: Watches, alarm_name: str, state: str, reason: str) -> list[str]:
    """An alarm changed state (CloudWatch's event): a watch it concerns ends with AlarmTriggered."""
    if state != "ALARM":
        return []
    failed = []
    for record in watches.watching(alarm_name):
        watches.fail(record.task_token, AlarmTriggeredError(alarm_message(record, alarm_name, reason, None)))
        failed.append(record.execution_arn)
    return failed


def end_watch_by_hand(watches: Watches, model: str, alias: str, rolled_back_to: str) -> bool:
    """``dropship rollback`` during a watch: the watch ends, and the release finishes without it."""
    record = watches.get(model, alias)
    if record is None:
        return False
    return watches.succeed(record.task_token, WatchOutcome(ended_by_hand=f"rolled back to version {rolled_back_to}"))


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


# -- failure: clean up and say why -----------------------------------------------------------------

_JSON_START = re.compile(r"[{\[]")


def safe_cause(cause: str) -> str:
    """A cause fit for people and events: no execution state, manifest or stack trace ever leaks through.

    Lambda errors carry ``{"errorMessage", "errorType", "stackTrace"}``: only the message is kept. Step
    Functions' own errors (``States.Runtime`` ...) may quote the state as JSON: it is cut off there.
    """
    try:
        parsed = json.loads(cause)
    except (TypeError, ValueError):
        parsed = None
    if isinstance(parsed, dict):
        return str(parsed.get("errorMessage") or "")[:MESSAGE_LIMIT]
    if parsed is not None:
        return ""
    match = _JSON_START.search(cause)
    text = cause[: match.start()].rstrip(" :'\"") if match else cause
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


def clean_up(parts: Parts, state: ExecutionState, execution_arn: str, started_at: datetime) -> ErrorDetail:
    """After any failure: if the alias had moved (the watch tripped), move it back; delete what this
    execution created; free the lock; record the failure and put ``Release Failed``. Returns the failure
    the execution ends with."""
    failure = failure_of(state.error)
    release = state.release
    if release is not None:
        ref = ReleaseRef.of(release)
        notes = []
        if state.alias is not None:
            notes.append(roll_back(parts, ref, started_at, state.alias.previous, failure.message))
        notes += compensate(parts, ref, started_at)
        if notes:
            failure = failure.model_copy(update={"message": f"{failure.message} (clean-up: {'; '.join(notes)})"})
    return finish_failed(parts.table, parts.notifier, state, execution_arn, started_at, failure)


# -- notifications and history ---------------------------------------------------------------------


def _identity(state: ExecutionState) -> tuple[str, str]:
    if state.release is not None:
        return state.release.model, state.release.version
    model, version = guess_model_version(str((state.detail.get("object") or {}).get("key", "")))
    return model or "(unknown)", version or "(unknown)"


def _record_fields(release: Release | None) -> dict[str, Any]:
    if release is None:
        return {}
    return {
        "version": release.version,
        "sha256": release.sha256,
        "endpoint_name": release.endpoint_name,
        "alias": release.alias,
        "uploaded_at": stamp(release.uploaded_at),
        "upload_order": release.upload_order,
        "manifest_version": release.manifest_version,
        "key": release.key,
    }


def _detail(model: str, version: str, execution_arn: str, release: Release | None) -> ReleaseEventDetail:
    return ReleaseEventDetail(
        model=model,
        version=version,
        execution_arn=execution_arn,
        endpoint_name=release.endpoint_name if release else None,
        alias=release.alias if release else None,
    )


def _duration(started_at: datetime) -> float:
    return round((utc_now() - started_at).total_seconds(), 3)


def announce_started(table: ReleaseTable, notifier: Notifier, release: Release) -> ReleaseEventDetail:
    """Record the release as RUNNING and put ``Release Started``; an event that cannot be put is a warning
    of the release (announcing never fails it)."""
    table.put_release(
        release.model, release.started_at, release.execution_arn, outcome="RUNNING", **_record_fields(release)
    )
    table.enter_stage(release.model, release.started_at, release.execution_arn, "Started")
    detail = _detail(release.model, release.version, release.execution_arn, release)
    try:
        notifier.put("Release Started", detail)
    except Exception as exc:
        table.add_warnings(
            release.model, release.started_at, release.execution_arn, [f"Release Started was not put: {_reason(exc)}"]
        )
    return detail


def finish_release(parts: Parts, state: ExecutionState, execution_arn: str, started_at: datetime) -> ReleaseEventDetail:
    """After the watch: end it, retire releases beyond ``retain``, free the lock, record the success and put
    ``Release Succeeded``. Retirement and lock failures do not fail a live release: they are its warnings."""
    release = state.release
    if release is None:
        raise InternalError("Finish Release needs the release")
    warnings = list(state.smoke.warnings) if state.smoke else []
    watch = state.watch or WatchOutcome()
    if watch.ended_by_hand:
        warnings.append(f"its watch was ended by hand: {watch.ended_by_hand}")
    steps: list[tuple[str, Callable[[], object]]] = [
        ("ending its watch failed", lambda: parts.watches.end(
            release.model, release.alias, execution_arn, release.endpoint_name)),
        ("retiring old releases failed, their endpoints still run", lambda: retire(parts, release)),
        ("freeing the model's lock failed (its lease expires on its own)",
         lambda: parts.table.release_lock(release.model, execution_arn)),
    ]  # fmt: skip
    for what, step in steps:
        try:
            step()
        except Exception as exc:
            warnings.append(f"{what}: {_reason(exc)}")
    return announce_succeeded(parts.table, parts.notifier, state, execution_arn, started_at, warnings)


def _reason(exc: Exception) -> str:
    return str(exc) if isinstance(exc, DropshipError) else f"{type(exc).__name__}: {exc}"


def announce_succeeded(
    table: ReleaseTable,
    notifier: Notifier,
    state: ExecutionState,
    execution_arn: str,
    started_at: datetime,
    warnings: list[str],
) -> ReleaseEventDetail:
    model, version = _identity(state)
    duration = _duration(started_at)
    watched = state.watch.figures if state.watch else None
    table.put_release(
        model,
        started_at,
        execution_arn,
        outcome="SUCCEEDED",
        finished_at=iso(utc_now()),
        duration_s=duration,
        warnings=warnings,
        **({"watch": watched} if watched else {}),
        **_record_fields(state.release),
    )
    table.enter_stage(model, started_at, execution_arn, "Succeeded")
    detail = _detail(model, version, execution_arn, state.release).model_copy(
        update={"duration_s": duration, "warnings": warnings or None}
    )
    notifier.put("Release Succeeded", detail)
    return detail


def finish_failed(
    table: ReleaseTable,
    notifier: Notifier,
    state: ExecutionState,
    execution_arn: str,
    started_at: datetime,
    failure: ErrorDetail,
) -> ErrorDetail:
    """Record the failure (once) and put ``Release Failed``; returns the failure."""
    model, version = _identity(state)
    failure = failure.model_copy(update={"message": failure.message[:MESSAGE_LIMIT]})
    duration = _duration(started_at)
    table.put_release(
        model,
        started_at,
        execution_arn,
        outcome="FAILED",
        finished_at=iso(utc_now()),
        duration_s=duration,
        error_code=failure.code,
        error_message=failure.message,
        **_record_fields(state.release),
    )
    table.enter_stage(model, started_at, execution_arn, f"Failed: {failure.code}")
    detail = _detail(model, version, execution_arn, state.release)
    notifier.put("Release Failed", detail.model_copy(update={"duration_s": duration, "error": failure}))
    return failure


# -- the reaper: executions that ended outside the state machine's own paths ----------------------


class ExecutionEnd(BaseModel):
    """``detail`` of a ``Step Functions Execution Status Change`` event."""

    model_config = ConfigDict(defer_build=True, extra="ignore", populate_by_name=True)

    execution_arn: str = Field(alias="executionArn")
    status: Literal["RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED", "PENDING_REDRIVE"]
    start_date: int = Field(alias="startDate", description="Epoch milliseconds.")
    input: str | None = None
    output: str | None = None
    error: str | None = None
    cause: str | None = None

    @property
    def started_at(self) -> datetime:
        return datetime.fromtimestamp(self.start_date / 1000, UTC)


def reap(parts: Parts, end: ExecutionEnd, describe_input: Callable[[], str | None]) -> str:
    """Make sure an ended execution is accounted for: nothing it created is left unless an alias serves it,
    the lock is free, its history record is final and an event was put. Idempotent: the state machine's own
    paths have usually done all of it already, and then nothing is announced twice."""
    if end.status in ("RUNNING", "PENDING_REDRIVE"):
        return "still running"
    table = parts.table
    key = _drop_key(end.input if end.input is not None else describe_input())
    model, version = guess_model_version(key)
    record = table.release(model, end.started_at, end.execution_arn) if model else None
    if end.status == "SUCCEEDED":
        if record is None or record.finished:
            return "succeeded: accounted for"
        ref = _ref_of(key, end.execution_arn, record)
        if ref is not None:
            parts.watches.end(ref.model, ref.alias, ref.execution_arn, ref.endpoint_name)
        table.release_lock(model, end.execution_arn)
        finish_error = ExecutionState.model_validate_json(end.output or "{}").finish_error
        warnings = [f"the release went live but could not finish: {failure_of(finish_error).message}"]
        warnings.append("old releases were not retired; the next release retires them")
        duration = _duration(end.started_at)
        if not table.finish_release(
            model, end.started_at, end.execution_arn, "SUCCEEDED", finished_at=iso(utc_now()), duration_s=duration,
            warnings=record.warnings + warnings,
        ):  # fmt: skip
            return "succeeded: finished meanwhile"
        parts.notifier.put("Release Succeeded", ReleaseEventDetail(
            model=model, version=record.version, execution_arn=end.execution_arn, endpoint_name=record.endpoint_name,
            alias=record.alias, duration_s=duration, warnings=record.warnings + warnings,
        ))  # fmt: skip
        return "succeeded: history finished by the reaper"
    ref = _ref_of(key, end.execution_arn, record)
    problems = compensate(parts, ref, end.started_at) if ref else []
    if record is not None and record.finished:
        return "failed: accounted for"
    failure = _abnormal_failure(end, record)
    if problems:
        failure = failure.model_copy(update={"message": f"{failure.message} (clean-up: {'; '.join(problems)})"})
    model = model or "(unknown)"
    if not table.finish_release(
        model,
        end.started_at,
        end.execution_arn,
        "FAILED",
        version=version or (record.version if record else "(unknown)"),
        finished_at=iso(utc_now()),
        duration_s=_duration(end.started_at),
        error_code=failure.code,
        error_message=failure.message[:MESSAGE_LIMIT],
    ):
        return "failed: finished meanwhile"
    table.enter_stage(model, end.started_at, end.execution_arn, f"Failed: {failure.code}")
    parts.notifier.put(
        "Release Failed",
        ReleaseEventDetail(
            model=model,
            version=version or "(unknown)",
            execution_arn=end.execution_arn,
            endpoint_name=ref.endpoint_name if ref else None,
            alias=ref.alias if ref else None,
            duration_s=_duration(end.started_at),
            error=failure,
        ),
    )
    return f"{end.status.lower()}: reaped as {failure.code}"


def _drop_key(execution_input: str | None) -> str:
    try:
        event = json.loads(execution_input or "{}")
        return str(event["detail"]["object"]["key"])
    except (ValueError, KeyError, TypeError):
        return ""


def _ref_of(key: str, execution_arn: str, record: ReleaseRecord | None) -> ReleaseRef | None:
    if record is not None and record.endpoint_name:
        return ReleaseRef(
            record.model, record.alias or DEFAULT_ALIAS, execution_arn, record.endpoint_name, record.upload_order
        )
    try:  # resource names are derived from the execution, so they can be found without a record
        drop = parse_drop_key(key)
    except DropshipError:
        return None
    return ReleaseRef(drop.model, DEFAULT_ALIAS, execution_arn, resource_name(drop.model, drop.version, execution_arn))


def _abnormal_failure(end: ExecutionEnd, record: ReleaseRecord | None) -> ErrorDetail:
    where = f" at {record.stage}" if record is not None and record.stage else ""
    if end.status in ("ABORTED", "TIMED_OUT"):
        how = "was stopped" if end.status == "ABORTED" else "timed out"
        return ErrorDetail(
            code="Aborted",
            message=f"the release's execution {how}{where}; what it had created was removed and the model's lock freed",
        )
    code = end.error if end.error in ERROR_CODES else "InternalError"
    cause = safe_cause(end.cause or "")
    return ErrorDetail(
        code=code, message=f"the release failed{where} ({end.error or 'no error'}): {cause}".rstrip(": ")
    )

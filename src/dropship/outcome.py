"""How a release ends: recorded in the history and announced on EventBridge, by the state machine's own
paths (Validate Artifact, Finish Release, Clean Up) or, for executions that ended any other way, by the
reaper."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from dropship.alias import DEFAULT_ALIAS
from dropship.compensation import (
    MESSAGE_LIMIT,
    ReleaseRef,
    compensate,
    failure_of,
    retire,
    roll_back,
    safe_cause,
)
from dropship.errors import ERROR_CODES, DropshipError, InternalError
from dropship.history import ReleaseRecord, ReleaseTable, stamp
from dropship.names import guess_model_version, parse_drop_key, resource_name
from dropship.notify import ErrorDetail, Notifier, ReleaseEventDetail
from dropship.parts import Parts
from dropship.release import ExecutionState, Release, WatchOutcome, iso, utc_now

log = logging.getLogger(__name__)


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
            record_watch(parts, release)
            notes.append(roll_back(parts, ref, started_at, state.alias.previous, failure.message))
        notes += compensate(parts, ref, started_at)
        if notes:
            failure = failure.model_copy(update={"message": f"{failure.message} (clean-up: {'; '.join(notes)})"})
    return finish_failed(parts.table, parts.notifier, state, execution_arn, started_at, failure)


def record_watch(parts: Parts, release: Release) -> None:
    """What the watch saw until it tripped, for the history (best effort: the rollback matters more)."""
    try:
        record = parts.watches.get(release.model, release.alias)
        if record is not None and record.execution_arn == release.execution_arn:
            figures = parts.watches.figures(record)
            parts.table.put_release(release.model, release.started_at, release.execution_arn, watch=figures)
    except Exception:  # the figures are a courtesy: the rollback and the clean-up must go on
        log.warning("could not record what the watch of %s saw", release.endpoint_name, exc_info=True)


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
    chores: list[tuple[str, Callable[[], object]]] = [
        ("ending its watch failed", lambda: parts.watches.end(
            release.model, release.alias, execution_arn, release.endpoint_name)),
        ("retiring old releases failed, their endpoints still run", lambda: retire(parts, release)),
        ("freeing the model's lock failed (its lease expires on its own)",
         lambda: parts.table.release_lock(release.model, execution_arn)),
    ]  # fmt: skip
    for what, step in chores:
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
        warnings = [
            *record.warnings,
            f"the release went live but could not finish: {failure_of(finish_error).message}",
            "old releases were not retired; the next release retires them",
        ]
        duration = _duration(end.started_at)
        if not table.finish_release(
            model, end.started_at, end.execution_arn, "SUCCEEDED", finished_at=iso(utc_now()), duration_s=duration,
            warnings=warnings,
        ):  # fmt: skip
            return "succeeded: finished meanwhile"
        parts.notifier.put("Release Succeeded", ReleaseEventDetail(
            model=model, version=record.version, execution_arn=end.execution_arn, endpoint_name=record.endpoint_name,
            alias=record.alias, duration_s=duration, warnings=warnings,
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
    version = version or (record.version if record else "(unknown)")
    duration = _duration(end.started_at)
    if not table.finish_release(
        model,
        end.started_at,
        end.execution_arn,
        "FAILED",
        version=version,
        finished_at=iso(utc_now()),
        duration_s=duration,
        error_code=failure.code,
        error_message=failure.message[:MESSAGE_LIMIT],
    ):
        return "failed: finished meanwhile"
    table.enter_stage(model, end.started_at, end.execution_arn, f"Failed: {failure.code}")
    parts.notifier.put(
        "Release Failed",
        ReleaseEventDetail(
            model=model,
            version=version,
            execution_arn=end.execution_arn,
            endpoint_name=ref.endpoint_name if ref else None,
            alias=ref.alias if ref else None,
            duration_s=duration,
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

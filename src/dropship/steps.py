"""What each task of the ``Release`` state machine does, with its AWS clients passed in.

The handlers in ``functions/`` only parse their input, load their settings, build clients and call
one of these.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from dropship.alias import AliasRecord, AliasStore
from dropship.endpoints import Endpoints
from dropship.errors import AliasConflictError, InternalError, code_for
from dropship.history import ReleaseTable, live_order, parse_stamp, stamp
from dropship.names import guess_model_version
from dropship.notify import ErrorDetail, Notifier, ReleaseEventDetail
from dropship.release import ExecutionState, LockResult, Release, SmokeReport, iso, utc_now
from dropship.smoke import run as run_smoke_test

LOCK_LEASE_MARGIN_S = 1800


# -- the per-model lock ----------------------------------------------------------------------------


def ensure_not_superseded(table: ReleaseTable, release: Release) -> None:
    newest = table.newest_live_upload(release.model, release.alias)
    if newest and newest["uploaded_at"] > stamp(release.uploaded_at):
        raise AliasConflictError(
            f"{release.model} version {newest['version']}, uploaded at {newest['uploaded_at']}, is already live "
            f"on alias {release.alias!r}; this upload of version {release.version} is older "
            f"({stamp(release.uploaded_at)}) and would move the alias back. Upload it again to release it."
        )


def acquire_lock(table: ReleaseTable, release: Release, now: datetime | None = None) -> LockResult:
    """Take the model's lock, or report who holds it; give up with AliasConflict after the lock timeout."""
    ensure_not_superseded(table, release)
    lease = release.endpoint_timeout_s + LOCK_LEASE_MARGIN_S
    holder = table.acquire_lock(release.model, release.execution_arn, lease)
    if holder is None:
        table.enter_stage(release.model, release.started_at, release.execution_arn, "Locked")
        return LockResult(acquired=True)
    waited = ((now or utc_now()) - release.started_at).total_seconds()
    if waited > release.lock_timeout_s:
        raise AliasConflictError(
            f"another release of {release.model} ({holder}) held the model's lock for over "
            f"{release.lock_timeout_s} s (stack parameter LockTimeoutSeconds); upload again once it has finished"
        )
    return LockResult(acquired=False, holder=holder)


def release_lock(table: ReleaseTable, release: Release) -> LockResult:
    table.release_lock(release.model, release.execution_arn)
    return LockResult(acquired=False)


# -- smoke test and alias --------------------------------------------------------------------------


def smoke_test(runtime: Any, release: Release) -> SmokeReport:
    """Send every sample; the report says whether they passed (the state machine fails the release if not)."""
    return run_smoke_test(runtime, release.endpoint_name, release.smoke_test)


def update_alias(table: ReleaseTable, aliases: AliasStore, release: Release, smoke: SmokeReport) -> AliasRecord:
    """Move the alias to this release. Writing the alias is the last thing done: nothing can fail after it."""
    if not table.advance_alias_watermark(release.model, release.alias, stamp(release.uploaded_at), release.version):
        ensure_not_superseded(table, release)  # raises with the details
        raise AliasConflictError(f"a newer upload of {release.model} is live on alias {release.alias!r}")
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
        smoke=[result.model_dump(mode="json") for result in smoke.results],
    )
    table.enter_stage(release.model, release.started_at, release.execution_arn, "Live")
    aliases.put(release.alias, record)
    return record


def retire(table: ReleaseTable, aliases: AliasStore, endpoints: Endpoints, release: Release) -> list[str]:
    """Delete the endpoints of this alias's releases beyond ``retain``; never one any alias points at."""
    in_use = {record.endpoint_name for record in aliases.all_for(release.model).values()}
    live = [
        item
        for item in table.releases(release.model)
        if item.get("endpoint_state") == "active" and item.get("alias") == release.alias
    ]
    live.sort(key=live_order, reverse=True)
    kept = 0
    retired = []
    for item in live:
        name = item["endpoint_name"]
        if name in in_use:
            continue
        if kept < release.retain:
            kept += 1
            continue
        _, failed = endpoints.delete(name)
        if failed:
            raise InternalError(f"could not retire {name}: {'; '.join(failed)}")
        table.put_release(
            release.model, parse_stamp(item["started_at"]), item["execution_arn"], endpoint_state="retired"
        )
        retired.append(name)
    return retired


# -- failure: clean up and say why -----------------------------------------------------------------


def failure_of(state: ExecutionState) -> ErrorDetail:
    """The contract code and a human message from the error Step Functions caught."""
    if state.error is None:
        return ErrorDetail(code="InternalError", message="the release failed without an error (this is a bug)")
    code = code_for(state.error.error)
    message = state.error.cause
    try:
        cause = json.loads(state.error.cause)
        if isinstance(cause, dict) and "errorMessage" in cause:
            message = str(cause["errorMessage"])
    except (TypeError, ValueError):
        pass
    if code == "InternalError" and not state.error.error.endswith("Error"):
        message = f"{state.error.error}: {message}" if message else state.error.error
    return ErrorDetail(code=code, message=message or state.error.error)


def clean_up(table: ReleaseTable, endpoints: Endpoints, aliases: AliasStore, state: ExecutionState) -> ErrorDetail:
    """Undo exactly what this execution created and give back the lock; returns the failure to end with.

    Every resource is tried even when one cannot be deleted, the lock is always released, and what is
    left behind is added to the failure's message. An endpoint an alias already serves is never deleted.
    """
    failure = failure_of(state)
    release = state.release
    if release is None:
        return failure
    problems: list[str] = []
    try:
        current = aliases.get(release.model, release.alias)
        if current is not None and current.execution_arn == release.execution_arn:
            problems.append(f"alias {release.alias!r} already serves {release.endpoint_name}, so it was kept")
        else:
            deleted, problems = endpoints.delete(release.resource_name)
            if deleted:
                table.put_release(release.model, release.started_at, release.execution_arn, endpoint_state="deleted")
    finally:
        table.release_lock(release.model, release.execution_arn)
    if problems:
        message = f"{failure.message} (clean-up: {'; '.join(problems)})"
        failure = failure.model_copy(update={"message": message})
    return failure


# -- notifications and history ---------------------------------------------------------------------


def announce(
    table: ReleaseTable,
    notifier: Notifier,
    outcome: str,
    state: ExecutionState,
    execution_arn: str,
    started_at: datetime,
) -> ReleaseEventDetail:
    """Record the outcome in the history table and put the matching event; returns the event's detail."""
    release = state.release
    if release is not None:
        model, version = release.model, release.version
    else:
        model, version = guess_model_version(str((state.detail.get("object") or {}).get("key", "")))
    detail = ReleaseEventDetail(
        model=model or "(unknown)",
        version=version or "(unknown)",
        execution_arn=execution_arn,
        endpoint_name=release.endpoint_name if release else None,
        alias=release.alias if release else None,
    )
    record: dict[str, Any] = {"version": detail.version}
    if release is not None:
        record.update(
            sha256=release.sha256,
            endpoint_name=release.endpoint_name,
            alias=release.alias,
            uploaded_at=stamp(release.uploaded_at),
            key=release.key,
        )
    if outcome == "Started":
        table.put_release(detail.model, started_at, execution_arn, outcome="RUNNING", **record)
        table.enter_stage(detail.model, started_at, execution_arn, "Started")
        notifier.put("Release Started", detail)
        return detail

    duration = round((utc_now() - started_at).total_seconds(), 3)
    record.update(finished_at=iso(utc_now()), duration_s=duration)
    if outcome == "Succeeded":
        table.put_release(detail.model, started_at, execution_arn, outcome="SUCCEEDED", **record)
        detail = detail.model_copy(update={"duration_s": duration})
        notifier.put("Release Succeeded", detail)
        return detail

    failure = state.failure or failure_of(state)
    if state.cleanup_error is not None:
        message = f"{failure.message} (clean-up failed, resources may be left: {state.cleanup_error.cause})"
        failure = failure.model_copy(update={"message": message})
    if state.smoke is not None:
        record["smoke"] = [result.model_dump(mode="json") for result in state.smoke.results]
    table.put_release(
        detail.model,
        started_at,
        execution_arn,
        outcome="FAILED",
        error_code=failure.code,
        error_message=failure.message,
        **record,
    )
    table.enter_stage(detail.model, started_at, execution_arn, f"Failed: {failure.code}")
    detail = detail.model_copy(update={"duration_s": duration, "error": failure})
    notifier.put("Release Failed", detail)
    return detail

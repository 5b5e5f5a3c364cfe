"""The deploy stages of a release, with their AWS clients passed in: the lock, the endpoint, the smoke
test and the alias. The handlers in ``functions/`` only parse their input, build clients and call these."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from dropship.alias import AliasRecord, AliasStore
from dropship.compensation import compensate_resources
from dropship.endpoints import Endpoints, Fleet, capture_uri
from dropship.errors import AliasConflictError, InternalError, SmokeTestFailedError
from dropship.history import ReleaseTable, stamp
from dropship.release import AliasUpdate, LockResult, Release, SmokeReport, iso, utc_now
from dropship.smoke import run as run_smoke_test
from dropship.waits import SETTLED, EndpointStatus, EndpointWait, EndpointWaits, endpoint_outcome

LOCK_LEASE_MARGIN_S = 1800


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

"""``dropship rollback``: point an alias back at a retained release whose endpoint still runs."""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from dropship.alias import AliasRecord
from dropship.aws import error_code
from dropship.cli.errors import CliError
from dropship.cli.report import unknown_model
from dropship.cli.stack import Stack
from dropship.history import ReleaseRecord, stamp
from dropship.names import check_model_name
from dropship.notify import ReleaseEventDetail
from dropship.release import iso, utc_now
from dropship.watch import end_watch_by_hand

ROLLBACK_LOCK_LEASE_S = 300


def run(args: argparse.Namespace, stack_factory: Callable[[], Stack]) -> int:
    model, alias = check_model_name(args.model), args.alias
    stack = stack_factory()
    table, aliases = stack.table(), stack.aliases()
    holder = f"dropship-cli-rollback:{uuid.uuid4()}"
    other = table.acquire_lock(model, holder, ROLLBACK_LOCK_LEASE_S)
    watched = None
    if other is not None:
        # A release being watched holds the lock, but moves the alias again only if its watch trips, and
        # then back to the same release this rollback goes to: roll back, then end its watch.
        watched = stack.watches().get(model, alias)
        if watched is None or watched.execution_arn != other:
            raise CliError(f"a release of {model} is in progress ({other}): roll back once it has finished")
    try:  # read the alias and the history under the lock, so no release can move the alias meanwhile
        releases = table.records(model)
        current = aliases.get(model, alias)
        if current is None:
            if not releases and not aliases.all_for(model):
                raise unknown_model(stack, model)
            raise CliError(f"{model} has no alias {alias!r}: nothing to roll back")
        target = choose_target(model, alias, current, releases, args.to)
        check_in_service(stack.client("sagemaker"), target)
        record = AliasRecord(
            model=model,
            version=target.version,
            endpoint_name=str(target.endpoint_name),
            sha256=target.sha256 or "",
            released_at=iso(utc_now()),
            execution_arn=target.execution_arn,
        )
        aliases.put(alias, record)
        # It is live again from now: retention keeps it, and the next rollback goes back to the current one.
        now = stamp(utc_now())
        table.put_release(model, target.started, record.execution_arn, live_at=now, rolled_back_from=current.version)
        # And the history says why the release that was live no longer is.
        left = next((item for item in releases if item.execution_arn == current.execution_arn), None)
        if left is not None:
            table.put_release(
                model, left.started, current.execution_arn, rolled_back_at=now, rolled_back_to=record.version,
                rollback_reason="by hand, with dropship rollback",
            )  # fmt: skip
    finally:
        if watched is None:
            table.release_lock(model, holder)
    if watched is not None:
        end_watch_by_hand(stack.watches(), model, alias, record.version)
        print(f"Ended the watch of version {current.version}; its release finishes without it.")
    stack.notifier().put(
        "Release Rolled Back",
        ReleaseEventDetail(
            model=model,
            version=record.version,
            execution_arn=record.execution_arn,
            endpoint_name=record.endpoint_name,
            alias=alias,
        ),
    )
    print(
        f"Rolled back {model} alias {alias}: version {current.version} ({current.endpoint_name}) -> "
        f"version {record.version} ({record.endpoint_name})"
    )
    return 0


def choose_target(
    model: str, alias: str, current: AliasRecord, releases: list[ReleaseRecord], version: str | None
) -> ReleaseRecord:
    """The release to point the alias at: ``version``, or the newest one released before the current."""
    retained = [
        record
        for record in releases
        if record.endpoint_state == "active" and record.alias == alias and record.endpoint_name
    ]
    candidates = [
        record
        for record in retained
        if record.execution_arn != current.execution_arn and record.endpoint_name != current.endpoint_name
    ]
    candidates.sort(key=ReleaseRecord.live_order, reverse=True)
    listing = _listing(retained, current)
    if version is not None:
        chosen = [record for record in candidates if record.version == version]
        if chosen:
            return chosen[0]
        if version == current.version:
            raise CliError(f"alias {alias} of {model} already points at version {version} ({current.endpoint_name})")
        if not any(record.version == version for record in releases):
            raise CliError(f"{model} has no release of version {version}; retained versions: {listing}")
        raise CliError(
            f"version {version} of {model} has no running endpoint (retired or failed); retained versions: {listing}"
        )
    current_record = next((record for record in releases if record.execution_arn == current.execution_arn), None)
    current_at = current_record.live_order() if current_record else (current.released_at, "")
    older = [record for record in candidates if record.live_order() < current_at]
    if not older:
        newer = ", ".join(_unique(record.version for record in candidates))
        hint = f" (newer retained versions: {newer}; pick one with --to)" if newer else ""
        raise CliError(
            f"nothing to roll back to: no release of {model} before version {current.version} still has a "
            f"running endpoint on alias {alias}{hint}"
        )
    return older[0]


def check_in_service(sagemaker: Any, target: ReleaseRecord) -> None:
    name = target.endpoint_name
    try:
        endpoint = sagemaker.describe_endpoint(EndpointName=name)
    except ClientError as exc:
        if error_code(exc) in ("ValidationException", "ResourceNotFound"):
            raise CliError(f"the endpoint of version {target.version} ({name}) no longer exists") from exc
        raise
    status = endpoint.get("EndpointStatus")
    if status != "InService":
        raise CliError(
            f"the endpoint of version {target.version} ({name}) is {status}, not InService: not moving the alias"
        )


def _listing(retained: list[ReleaseRecord], current: AliasRecord) -> str:
    names = []
    for record in sorted(retained, key=ReleaseRecord.live_order):
        label = record.version
        if record.execution_arn == current.execution_arn:
            label += " (current)"
        names.append(label)
    return ", ".join(_unique(names)) or "none"


def _unique(values: Any) -> list[str]:
    return list(dict.fromkeys(values))

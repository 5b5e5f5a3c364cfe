"""The release's bookkeeping against a real (emulated) table, bus and SageMaker: the lock granted in upload
order, the strict alias watermark, compensation that cannot be skipped, warnings instead of swallowed
failures, and the reaper that accounts for executions ending any other way."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dropship.alias import AliasRecord
from dropship.compensation import failure_of
from dropship.deploy import acquire_lock, on_endpoint_status, update_alias
from dropship.errors import AliasConflictError
from dropship.history import ReleaseTable
from dropship.outcome import ExecutionEnd, clean_up, finish_release, reap
from dropship.release import ExecutionState, Release
from tests.unit.conftest import Account
from tests.unit.test_endpoints_and_errors import ROLE, release

T0 = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


def numbered(n: int, **changes: Any) -> Release:
    """Release number ``n`` of model churn: uploaded in the same second, in the order of ``n``."""
    arn = f"arn:aws:states:us-east-1:123456789012:execution:dropship-Release:exec-{n}"
    return release(
        version=str(n),
        execution_arn=arn,
        upload_order=f"2026-11-26T12:00:00Z#{n:032X}#models/churn/{n}/model.tar.gz",
        resource_name=f"churn-{n}-0000000{n}",
        started_at=T0 + timedelta(milliseconds=n),
        **changes,
    )


# -- the lock and the watermark ---------------------------------------------------------------------


def test_the_lock_goes_to_the_earliest_upload_waiting_for_it(account: Account) -> None:
    table = account.table
    first, second, third = numbered(1), numbered(2), numbered(3)
    # Given release 2 holds the lock and 3 then 1 asked for it (1 was uploaded first but arrived late)
    assert acquire_lock(table, second).acquired
    assert not acquire_lock(table, third).acquired
    assert not acquire_lock(table, first).acquired
    # When 2 frees the lock, 3 asking first still waits behind 1
    assert table.release_lock("churn", second.execution_arn)
    third_try = acquire_lock(table, third)
    assert not third_try.acquired and third_try.holder is not None and "exec-1" in third_try.holder
    # Then 1 gets it, and after it 3
    assert acquire_lock(table, first).acquired
    table.release_lock("churn", first.execution_arn)
    assert acquire_lock(table, third).acquired


def test_the_alias_never_moves_back_nor_twice_for_one_upload(account: Account) -> None:
    table, aliases = account.table, account.aliases
    older, newer = numbered(1), numbered(2)
    update_alias(table, aliases, account.endpoints, newer)
    with pytest.raises(AliasConflictError, match="would move the alias back"):
        update_alias(table, aliases, account.endpoints, older)
    # The watermark is strict: the same upload cannot make it live again either
    with pytest.raises(AliasConflictError):
        update_alias(table, aliases, account.endpoints, newer)
    alias = aliases.get("churn", "live")
    assert alias is not None and alias.version == "2"


def test_an_older_upload_is_told_at_the_lock_that_a_later_one_is_live(account: Account) -> None:
    update_alias(account.table, account.aliases, account.endpoints, numbered(5))
    with pytest.raises(AliasConflictError, match="version 5, uploaded after this one, is already live"):
        acquire_lock(account.table, numbered(4))


# -- clean up ---------------------------------------------------------------------------------------


def deployed(account: Account, ours: Release) -> None:
    account.endpoints.create_all(ours, ROLE)


def failed_state(ours: Release | None, error: str = "EndpointFailedError", message: str = "the container exited"):
    cause = json.dumps({"errorType": error, "errorMessage": message, "stackTrace": ['File "app.py", line 1']})
    return ExecutionState.model_validate(
        {"release": ours.model_dump(mode="json") if ours else None, "error": {"Error": error, "Cause": cause}}
    )


def test_clean_up_removes_this_release_frees_the_lock_and_announces(account: Account) -> None:
    ours = numbered(1)
    account.table.put_release("churn", ours.started_at, ours.execution_arn, outcome="RUNNING", version="1")
    assert acquire_lock(account.table, ours).acquired
    deployed(account, ours)

    failure = clean_up(account.parts(), failed_state(ours), ours.execution_arn, ours.started_at)

    assert (failure.code, failure.message) == ("EndpointFailed", "the container exited")
    assert account.sagemaker.list_endpoints()["Endpoints"] == []
    assert account.sagemaker.list_models()["Models"] == []
    assert account.table.lock_holder("churn") is None
    record = account.table.release("churn", ours.started_at, ours.execution_arn)
    assert record is not None and (record.outcome, record.error_code) == ("FAILED", "EndpointFailed")
    assert record.endpoint_state == "deleted"
    (event,) = account.events_put()
    assert event["detail-type"] == "Release Failed"
    assert event["detail"]["error"] == {"code": "EndpointFailed", "message": "the container exited"}


def test_clean_up_never_deletes_what_the_alias_serves(account: Account) -> None:
    ours = numbered(1)
    deployed(account, ours)
    account.aliases.put("live", AliasRecord(
        model="churn", version="1", endpoint_name=ours.endpoint_name, sha256=ours.sha256,
        released_at="2026-11-26T12:00:00Z", execution_arn=ours.execution_arn,
    ))  # fmt: skip
    failure = clean_up(account.parts(), failed_state(ours), ours.execution_arn, ours.started_at)
    assert "still serves churn-1-00000001, so it was kept" in failure.message
    assert [e["EndpointName"] for e in account.sagemaker.list_endpoints()["Endpoints"]] == ["churn-1-00000001"]


def test_a_failure_before_the_release_exists_is_still_recorded_and_announced(account: Account) -> None:
    state = ExecutionState.model_validate(
        {"error": {"Error": "InvalidKeyError", "Cause": json.dumps({"errorMessage": "bad key"})},
         "detail": {"object": {"key": "models/churn/x y/model.tar.gz"}}}
    )  # fmt: skip
    arn = "arn:aws:states:us-east-1:123456789012:execution:dropship-Release:early"
    failure = clean_up(account.parts(), state, arn, T0)
    assert failure.code == "InvalidKey"
    assert account.events_put()[0]["detail"]["version"] == "x y"


@pytest.mark.parametrize(
    ("error", "cause", "expected"),
    [
        ("InvalidManifestError", json.dumps({"errorMessage": "bad", "stackTrace": ["secret"]}), "bad"),
        (
            "States.Runtime",
            "An error occurred while executing the state 'Update Alias'. The JSONPath '$.x' could not be found in "
            'the input \'{"release": {"deployment": {"environment": {"API_KEY": "hunter2"}}}}\'',
            "States.Runtime: An error occurred while executing the state 'Update Alias'. The JSONPath '$.x' "
            "could not be found in the input",
        ),
        ("States.Timeout", "", "States.Timeout"),
        (  # a watch's alarm: CloudWatch's figures in brackets are kept
            "AlarmTriggeredError",
            "alarm dropship-x-5xx-share went to ALARM: Threshold Crossed: 1 out of the last 1 datapoints "
            "[0.4 (26/11/26 01:00:00)] was greater than the threshold (0.05)",
            "alarm dropship-x-5xx-share went to ALARM: Threshold Crossed: 1 out of the last 1 datapoints "
            "[0.4 (26/11/26 01:00:00)] was greater than the threshold (0.05)",
        ),
    ],
)
def test_failure_causes_never_carry_the_state_or_traces(error: str, cause: str, expected: str) -> None:
    from dropship.release import StateError

    failure = failure_of(StateError(Error=error, Cause=cause))
    assert failure.message == expected
    assert "hunter2" not in failure.message and "secret" not in failure.message


# -- endpoints SageMaker is still creating ------------------------------------------------------------


def test_an_endpoint_still_creating_is_deleted_once_it_settles(account: Account, monkeypatch: Any) -> None:
    ours = numbered(1)
    deployed(account, ours)
    real_describe = account.endpoints.describe
    creating = {"now": True}

    def describe(name: str) -> Any:  # moto makes endpoints InService at once; SageMaker takes minutes
        view = real_describe(name)
        return view and type(view)("Creating", None, view.created) if creating["now"] else view

    endpoints = account.endpoints
    monkeypatch.setattr(endpoints, "describe", describe)
    failed = failed_state(ours, "EndpointTimeoutError", "too slow")
    failure = clean_up(account.parts(endpoints=endpoints), failed, ours.execution_arn, ours.started_at)
    assert failure.code == "EndpointTimeout"
    assert len(account.sagemaker.list_endpoints()["Endpoints"]) == 1  # refused by SageMaker while Creating
    # When SageMaker's state-change event says it settled
    creating["now"] = False
    assert on_endpoint_status(endpoints, account.waits, ours.endpoint_name) == "doomed: deleted"
    assert account.sagemaker.list_endpoints()["Endpoints"] == []
    # And a duplicate event finds nothing left to do
    assert on_endpoint_status(endpoints, account.waits, ours.endpoint_name) == "nothing waits for it"


# -- finishing a live release ---------------------------------------------------------------------------


def test_retirement_and_lock_failures_are_warnings_of_a_live_release(account: Account, monkeypatch: Any) -> None:
    ours = numbered(2)
    account.table.put_release("churn", ours.started_at, ours.execution_arn, outcome="RUNNING", version="2")

    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("SageMaker said no")

    endpoints = account.endpoints
    table = account.table
    monkeypatch.setattr(table, "records", broken)
    monkeypatch.setattr(table, "release_lock", broken)
    state = ExecutionState.model_validate({"release": ours.model_dump(mode="json")})
    detail = finish_release(account.parts(table=table, endpoints=endpoints), state, ours.execution_arn, ours.started_at)
    assert detail.warnings == [
        "retiring old releases failed, their endpoints still run: RuntimeError: SageMaker said no",
        "freeing the model's lock failed (its lease expires on its own): RuntimeError: SageMaker said no",
    ]
    record = ReleaseTable(account.dynamodb, "releases").release("churn", ours.started_at, ours.execution_arn)
    assert record is not None and record.outcome == "SUCCEEDED" and record.warnings == detail.warnings
    (event,) = account.events_put()
    assert event["detail-type"] == "Release Succeeded" and event["detail"]["warnings"] == detail.warnings


# -- the reaper ---------------------------------------------------------------------------------------------


def execution_end(ours: Release, status: str, **extra: Any) -> ExecutionEnd:
    s3_event = {"detail": {"object": {"key": ours.key}}}
    return ExecutionEnd.model_validate(
        {
            "executionArn": ours.execution_arn,
            "status": status,
            "startDate": int(ours.started_at.timestamp() * 1000),
            "input": json.dumps(s3_event),
            **extra,
        }
    )


def reaped(account: Account, end: ExecutionEnd) -> str:
    return reap(account.parts(), end, lambda: None)


def test_a_stopped_release_is_compensated_finished_and_announced_once(account: Account) -> None:
    # Given a release stopped (StopExecution) after it created its endpoint and while it held the lock
    # (its start time as the state machine saw it, to the microsecond; its event says milliseconds)
    ours = numbered(3, key="models/churn/3/model.tar.gz").model_copy(
        update={"started_at": T0 + timedelta(microseconds=123456)}
    )
    account.table.put_release(
        "churn", ours.started_at, ours.execution_arn, outcome="RUNNING", version="3",
        endpoint_name=ours.endpoint_name, alias="live", upload_order=ours.upload_order,
    )  # fmt: skip
    account.table.enter_stage("churn", ours.started_at, ours.execution_arn, "Locked")
    assert acquire_lock(account.table, ours).acquired
    deployed(account, ours)

    # When the reaper sees its ABORTED status change (twice: EventBridge may deliver twice)
    assert reaped(account, execution_end(ours, "ABORTED")) == "aborted: reaped as Aborted"
    assert reaped(account, execution_end(ours, "ABORTED")) == "failed: accounted for"

    # Then nothing is left, the lock is free, the history is final and one event was put
    assert account.sagemaker.list_endpoints()["Endpoints"] == [] and account.sagemaker.list_models()["Models"] == []
    assert account.table.lock_holder("churn") is None
    record = account.table.release("churn", ours.started_at, ours.execution_arn)
    assert record is not None and (record.outcome, record.error_code) == ("FAILED", "Aborted")
    assert record.error_message is not None and "was stopped at Locked" in record.error_message
    events = account.events_put()
    assert [e["detail-type"] for e in events] == ["Release Failed"]
    assert events[0]["detail"]["error"]["code"] == "Aborted"


def test_a_release_stopped_before_it_was_recorded_is_still_accounted_for(account: Account) -> None:
    ours = numbered(4, key="models/churn/4/model.tar.gz")
    assert reaped(account, execution_end(ours, "TIMED_OUT")) == "timed_out: reaped as Aborted"
    record = account.table.release("churn", ours.started_at, ours.execution_arn)
    assert record is not None and record.outcome == "FAILED" and record.version == "4"


def test_a_release_the_state_machine_finished_is_left_alone(account: Account) -> None:
    ours = numbered(5)
    account.table.put_release("churn", ours.started_at, ours.execution_arn, outcome="FAILED", version="5")
    assert reaped(account, execution_end(ours, "FAILED", error="SmokeTestFailed")) == "failed: accounted for"
    assert account.events_put() == []


def test_a_live_release_that_could_not_finish_is_finished_by_the_reaper(account: Account) -> None:
    ours = numbered(6)
    account.table.put_release("churn", ours.started_at, ours.execution_arn, outcome="RUNNING", version="6")
    assert acquire_lock(account.table, ours).acquired
    output = {"finish_error": {"Error": "Lambda.Unknown", "Cause": "The function ran out of memory"}}
    end = execution_end(ours, "SUCCEEDED", output=json.dumps(output))
    assert reaped(account, end) == "succeeded: history finished by the reaper"
    record = account.table.release("churn", ours.started_at, ours.execution_arn)
    assert record is not None and record.outcome == "SUCCEEDED"
    assert "could not finish: Lambda.Unknown: The function ran out of memory" in record.warnings[0]
    assert account.table.lock_holder("churn") is None
    assert [e["detail-type"] for e in account.events_put()] == ["Release Succeeded"]


def test_watch_figures_show_the_4xx_share_only_when_there_is_one() -> None:
    from dropship.release import WatchFigures

    quiet = WatchFigures(until="2026-11-26T00:00:00Z", invocations=40, errors_5xx=2, p99_latency_ms=12.0)
    assert quiet.describe() == "40 invocations, 5.0% 5xx, p99 12 ms"
    rejected = quiet.model_copy(update={"errors_4xx": 10})
    assert rejected.describe() == "40 invocations, 5.0% 5xx, 25.0% 4xx, p99 12 ms"
    assert rejected.error_rate == 0.05  # the guard's share: 5xx only

"""Clean Up: undo exactly this release, always give back the lock, never delete what an alias serves."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dropship.alias import AliasRecord
from dropship.release import ExecutionState
from dropship.steps import clean_up
from tests.unit.test_endpoints_and_errors import ARN, release


class FakeTable:
    def __init__(self) -> None:
        self.unlocked: list[str] = []
        self.updates: list[dict[str, Any]] = []

    def release_lock(self, model: str, execution_arn: str) -> bool:
        self.unlocked.append(execution_arn)
        return True

    def put_release(self, model: str, started_at: Any, execution_arn: str, **values: Any) -> None:
        self.updates.append(values)


class FakeEndpoints:
    def __init__(self, failed: list[str] | None = None, boom: bool = False) -> None:
        self.deleted: list[str] = []
        self.failed = failed or []
        self.boom = boom

    def delete(self, name: str) -> tuple[list[str], list[str]]:
        if self.boom:
            raise RuntimeError("SageMaker is unreachable")
        self.deleted.append(name)
        return ["endpoint", "endpoint-config"], self.failed


class FakeAliases:
    def __init__(self, record: AliasRecord | None = None) -> None:
        self.record = record

    def get(self, model: str, alias: str) -> AliasRecord | None:
        return self.record


def failed_state(error: str = "EndpointFailedError", message: str = "the container exited") -> ExecutionState:
    cause = json.dumps({"errorType": error, "errorMessage": message, "stackTrace": []})
    return ExecutionState.model_validate(
        {"release": release().model_dump(mode="json"), "error": {"Error": error, "Cause": cause}}
    )


def test_it_deletes_this_release_and_releases_the_lock() -> None:
    table, endpoints = FakeTable(), FakeEndpoints()
    failure = clean_up(table, endpoints, FakeAliases(), failed_state())  # type: ignore[arg-type]
    assert (failure.code, failure.message) == ("EndpointFailed", "the container exited")
    assert endpoints.deleted == ["churn-3-12345678"] and table.unlocked == [ARN]
    assert table.updates == [{"endpoint_state": "deleted"}]


def test_what_could_not_be_deleted_is_named_in_the_failure() -> None:
    endpoints = FakeEndpoints(failed=["model churn-3-12345678: AccessDeniedException denied"])
    table = FakeTable()
    failure = clean_up(table, endpoints, FakeAliases(), failed_state())  # type: ignore[arg-type]
    assert failure.message == ("the container exited (clean-up: model churn-3-12345678: AccessDeniedException denied)")
    assert table.unlocked == [ARN]


def test_the_lock_is_released_even_when_clean_up_crashes() -> None:
    table = FakeTable()
    with pytest.raises(RuntimeError):
        clean_up(table, FakeEndpoints(boom=True), FakeAliases(), failed_state())  # type: ignore[arg-type]
    assert table.unlocked == [ARN]


def test_an_endpoint_the_alias_already_serves_is_never_deleted() -> None:
    # Given the alias was moved to this release before the task after it failed
    ours = release()
    served = AliasRecord(model="churn", version="3", endpoint_name=ours.endpoint_name, sha256=ours.sha256,
                         released_at="2026-11-25T12:00:00Z", execution_arn=ARN)  # fmt: skip
    endpoints = FakeEndpoints()
    failure = clean_up(FakeTable(), endpoints, FakeAliases(served), failed_state())  # type: ignore[arg-type]
    assert endpoints.deleted == []
    assert "already serves churn-3-12345678, so it was kept" in failure.message


def test_a_failure_before_the_release_exists_cleans_nothing() -> None:
    state = ExecutionState.model_validate({"error": {"Error": "InvalidKeyError", "Cause": "bad key"}})
    endpoints = FakeEndpoints()
    assert clean_up(FakeTable(), endpoints, FakeAliases(), state).code == "InvalidKey"  # type: ignore[arg-type]
    assert endpoints.deleted == []

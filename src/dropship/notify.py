"""Release notifications on the stack's EventBridge bus (CONTRACT.md section 4)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from dropship.errors import InternalError

SOURCE = "dropship"
DetailType = Literal["Release Started", "Release Succeeded", "Release Failed", "Release Rolled Back"]


class ErrorDetail(BaseModel):
    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True)

    code: str
    message: str


class ReleaseEventDetail(BaseModel):
    """``detail`` of every dropship event: always model, version, execution_arn."""

    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True)

    model: str
    version: str
    execution_arn: str
    endpoint_name: str | None = None
    alias: str | None = None
    duration_s: float | None = None
    error: ErrorDetail | None = None
    warnings: list[str] | None = None
    rolled_back_from: str | None = None  # Release Rolled Back: the version the alias left
    reason: str | None = None  # Release Rolled Back: why (a tripped watch, or by hand)


class Notifier:
    def __init__(self, client: Any, event_bus_name: str) -> None:
        self.client = client
        self.bus = event_bus_name

    def put(self, detail_type: DetailType, detail: ReleaseEventDetail) -> None:
        response = self.client.put_events(
            Entries=[
                {
                    "Source": SOURCE,
                    "DetailType": detail_type,
                    "Detail": detail.model_dump_json(exclude_none=True),
                    "EventBusName": self.bus,
                    "Resources": [detail.execution_arn] if detail.execution_arn.startswith("arn:") else [],
                }
            ]
        )
        if response.get("FailedEntryCount"):
            entry = response["Entries"][0]
            raise InternalError(
                f"EventBridge refused the {detail_type} event: {entry.get('ErrorCode')} {entry.get('ErrorMessage')}"
            )

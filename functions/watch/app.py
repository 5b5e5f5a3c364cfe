"""Watch: the live release is watched for ``bake_s`` before older releases retire (see dropship.watch).

Two inputs, one function (they share the watches in the table):
- ``{"release": ..., "task_token": ...}`` from the state machine (``lambda:invoke.waitForTaskToken``),
  every ``check_s`` until the bake is over;
- a ``CloudWatch Alarm State Change`` event from the stack's rule: a watched alarm in ALARM fails the
  watch with AlarmTriggered, and Clean Up moves the alias back.

Code: the guards are created for the new endpoint, and an alarm's event must find the watches it concerns.
"""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from dropship import clients, settings, watch
from dropship.history import ReleaseTable
from dropship.observability import logger, task
from dropship.release import Release


class Env(settings.Settings):
    table_name: str


class WatchRequest(BaseModel):
    model_config = ConfigDict(defer_build=True)

    release: Release
    task_token: str


class AlarmChange(BaseModel):
    """``detail`` of CloudWatch's ``CloudWatch Alarm State Change`` event (the fields dropship reads)."""

    model_config = ConfigDict(defer_build=True, extra="ignore", populate_by_name=True)

    alarm_name: str = Field(alias="alarmName")
    state: dict[str, Any]


@task
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    env = settings.load(Env)
    watches = watch.Watches(clients.dynamodb(), env.table_name, clients.cloudwatch(), clients.stepfunctions())
    if event.get("detail-type") == "CloudWatch Alarm State Change":
        change = AlarmChange.model_validate(event["detail"])
        state, reason = str(change.state.get("value", "")), str(change.state.get("reason", ""))
        failed = watch.on_alarm_state(watches, change.alarm_name, state, reason)
        logger.info("alarm state change", extra={"alarm": change.alarm_name, "state": state, "failed": failed})
        return {"failed": failed}
    request = WatchRequest.model_validate(event)
    table = ReleaseTable(clients.dynamodb(), env.table_name)
    result = watch.watch_release(table, watches, request.release, request.task_token)
    return {"outcome": result}

"""The watch: after the alias moves, the release is watched for ``bake_s`` before older releases retire.

``Watch`` is a ``lambda:invoke.waitForTaskToken`` task. Registering it creates dropship's guard alarms on
the new endpoint's SageMaker metrics (the 5xx share of invocations, the p99 of ModelLatency), records the
task token against the model's alias and against every watched alarm (the guards and the manifest's own),
and looks at the alarms once. CloudWatch puts a ``CloudWatch Alarm State Change`` event when an alarm
goes to ALARM; the stack's rule sends it to the same function, which fails the task with
``AlarmTriggeredError`` naming the alarm and its figures: Clean Up then moves the alias back to the
release that was live before. The task times out every ``check_s`` and is retried, which looks at the
alarms again (should an event be lost), records the figures so far, and ends the watch once the bake is
over. ``dropship rollback`` during the watch ends it too (``end_by_hand``).

Items live in the stack's table: ``MODEL#<model>`` / ``WATCH#<alias>`` is the watch, and
``ALARM#<alarm name>`` / ``<execution>`` finds the watches an alarm concerns.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict

from dropship.aws import conditional_write, resume_once
from dropship.endpoints import VARIANT
from dropship.errors import AlarmTriggeredError
from dropship.history import ReleaseTable, execution_name
from dropship.release import Release, WatchFigures, WatchOutcome

WATCH_TTL_S = 7 * 24 * 3600
NAMESPACE = "AWS/SageMaker"


def guard_names(endpoint_name: str) -> dict[str, str]:
    return {
        "errors": f"dropship-{endpoint_name}-5xx-share",
        "latency": f"dropship-{endpoint_name}-p99-latency",
    }


class WatchRecord(BaseModel):
    model_config = ConfigDict(defer_build=True, frozen=True)

    model: str
    alias: str
    execution_arn: str
    endpoint_name: str
    task_token: str
    alarms: list[str]
    started: float
    until: float
    period_s: int = 60


class Watches:
    def __init__(self, dynamodb: Any, table_name: str, cloudwatch: Any, stepfunctions: Any) -> None:
        self.dynamodb = dynamodb
        self.table = table_name
        self.cloudwatch = cloudwatch
        self.sfn = stepfunctions

    # -- the guards ------------------------------------------------------------------------------------

    def put_guards(self, release: Release) -> list[str]:
        """dropship's own alarms on the new endpoint's metrics (idempotent); returns their names."""
        plan, names = release.watch, guard_names(release.endpoint_name)
        dimensions = _dimensions(release.endpoint_name)
        common: dict[str, Any] = {
            "EvaluationPeriods": 1,
            "DatapointsToAlarm": 1,
            "ComparisonOperator": "GreaterThanThreshold",
            "TreatMissingData": "notBreaching",
            "Tags": [{"Key": "dropship:execution", "Value": execution_name(release.execution_arn)}],
        }
        created = []
        if plan.max_error_rate is not None:
            self.cloudwatch.put_metric_alarm(
                AlarmName=names["errors"],
                AlarmDescription=f"dropship watch of {release.model} {release.version}: the share of 5xx answers",
                Metrics=[
                    _stat("errors", "Invocation5XXErrors", "Sum", dimensions, plan.period_s),
                    _stat("invocations", "Invocations", "Sum", dimensions, plan.period_s),
                    {"Id": "share", "Expression": "errors / invocations", "Label": "5xx share", "ReturnData": True},
                ],
                Threshold=plan.max_error_rate,
                **common,
            )
            created.append(names["errors"])
        if plan.max_p99_latency_ms is not None:
            self.cloudwatch.put_metric_alarm(
                AlarmName=names["latency"],
                AlarmDescription=f"dropship watch of {release.model} {release.version}: p99 model latency (us)",
                Namespace=NAMESPACE,
                MetricName="ModelLatency",
                Dimensions=dimensions,
                ExtendedStatistic="p99",
                Period=plan.period_s,
                Threshold=plan.max_p99_latency_ms * 1000.0,  # ModelLatency is in microseconds
                **common,
            )
            created.append(names["latency"])
        return created

    def delete_guards(self, endpoint_name: str) -> None:
        self.cloudwatch.delete_alarms(AlarmNames=list(guard_names(endpoint_name).values()))

    # -- the record of a watch ---------------------------------------------------------------------------

    def start(self, release: Release, task_token: str) -> WatchRecord:
        """Record (or, on a retry, renew) the watch of ``release`` with this task token."""
        previous = self.get(release.model, release.alias)
        started = previous.started if previous and previous.execution_arn == release.execution_arn else time.time()
        record = WatchRecord(
            model=release.model,
            alias=release.alias,
            execution_arn=release.execution_arn,
            endpoint_name=release.endpoint_name,
            task_token=task_token,
            alarms=[*self.put_guards(release), *release.watch.alarms],
            started=started,
            until=started + release.watch.bake_s,
            period_s=release.watch.period_s,
        )
        self.dynamodb.put_item(
            TableName=self.table,
            Item={
                "pk": {"S": f"MODEL#{record.model}"},
                "sk": {"S": f"WATCH#{record.alias}"},
                "watch": {"S": record.model_dump_json()},
                "execution_arn": {"S": record.execution_arn},
                "expires_at": {"N": str(int(record.until) + WATCH_TTL_S)},
            },
        )
        for alarm in record.alarms:
            self.dynamodb.put_item(
                TableName=self.table,
                Item={
                    "pk": {"S": f"ALARM#{alarm}"},
                    "sk": {"S": execution_name(record.execution_arn)},
                    "model": {"S": record.model},
                    "alias": {"S": record.alias},
                    "expires_at": {"N": str(int(record.until) + WATCH_TTL_S)},
                },
            )
        return record

    def get(self, model: str, alias: str) -> WatchRecord | None:
        item = self.dynamodb.get_item(
            TableName=self.table,
            Key={"pk": {"S": f"MODEL#{model}"}, "sk": {"S": f"WATCH#{alias}"}},
            ConsistentRead=True,
        ).get("Item")
        return WatchRecord.model_validate_json(item["watch"]["S"]) if item else None

    def watching(self, alarm_name: str) -> list[WatchRecord]:
        """The watches an alarm concerns now."""
        items = self.dynamodb.query(
            TableName=self.table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"ALARM#{alarm_name}"}},
            ConsistentRead=True,
        ).get("Items", [])
        found = []
        for item in items:
            record = self.get(item["model"]["S"], item["alias"]["S"])
            if record is not None and execution_name(record.execution_arn) == item["sk"]["S"]:
                found.append(record)
        return found

    def end(self, model: str, alias: str, execution_arn: str, endpoint_name: str) -> None:
        """Forget the watch of this execution and delete its guards (idempotent)."""
        record = self.get(model, alias)
        alarms = list(record.alarms) if record and record.execution_arn == execution_arn else []
        if record is not None and record.execution_arn == execution_arn:
            conditional_write(
                self.dynamodb.delete_item,
                TableName=self.table,
                Key={"pk": {"S": f"MODEL#{model}"}, "sk": {"S": f"WATCH#{alias}"}},
                ConditionExpression="execution_arn = :me",
                ExpressionAttributeValues={":me": {"S": execution_arn}},
            )
        for alarm in alarms:
            self.dynamodb.delete_item(
                TableName=self.table,
                Key={"pk": {"S": f"ALARM#{alarm}"}, "sk": {"S": execution_name(execution_arn)}},
            )
        self.delete_guards(endpoint_name)

    # -- looking at it -------------------------------------------------------------------------------------

    def tripped(self, record: WatchRecord) -> tuple[str, str] | None:
        """The first watched alarm in ALARM, with CloudWatch's reason (its figures), if any."""
        if not record.alarms:
            return None
        pages = self.cloudwatch.get_paginator("describe_alarms").paginate(
            AlarmNames=record.alarms, AlarmTypes=["MetricAlarm", "CompositeAlarm"]
        )
        for page in pages:
            for alarm in [*page.get("MetricAlarms", []), *page.get("CompositeAlarms", [])]:
                if alarm.get("StateValue") == "ALARM":
                    return str(alarm["AlarmName"]), str(alarm.get("StateReason", ""))
        return None

    def figures(self, record: WatchRecord) -> WatchFigures:
        """Invocations, 5xx and 4xx answers and the worst p99 latency of the new endpoint since the watch began."""
        dimensions = _dimensions(record.endpoint_name)
        start = datetime.fromtimestamp(record.started, UTC) - timedelta(seconds=record.period_s)
        result = self.cloudwatch.get_metric_data(
            MetricDataQueries=[
                _stat("invocations", "Invocations", "Sum", dimensions, record.period_s, data=True),
                _stat("errors", "Invocation5XXErrors", "Sum", dimensions, record.period_s, data=True),
                _stat("client_errors", "Invocation4XXErrors", "Sum", dimensions, record.period_s, data=True),
                _stat("latency", "ModelLatency", "p99", dimensions, record.period_s, data=True),
            ],
            StartTime=start,
            EndTime=datetime.now(UTC) + timedelta(seconds=record.period_s),
        )
        values = {series["Id"]: list(series.get("Values", [])) for series in result.get("MetricDataResults", [])}
        latency = values.get("latency") or []
        return WatchFigures(
            until=datetime.fromtimestamp(record.until, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            invocations=int(sum(values.get("invocations") or [])),
            errors_5xx=int(sum(values.get("errors") or [])),
            errors_4xx=int(sum(values.get("client_errors") or [])),
            p99_latency_ms=round(max(latency) / 1000.0, 1) if latency else None,
        )

    # -- ending it ------------------------------------------------------------------------------------------

    def succeed(self, task_token: str, outcome: WatchOutcome) -> bool:
        return resume_once(lambda: self.sfn.send_task_success(taskToken=task_token, output=outcome.model_dump_json()))

    def fail(self, task_token: str, error: AlarmTriggeredError) -> bool:
        return resume_once(
            lambda: self.sfn.send_task_failure(
                taskToken=task_token, error=type(error).__name__, cause=str(error)[:32000]
            )
        )


def alarm_message(record: WatchRecord, alarm: str, reason: str, figures: WatchFigures | None) -> str:
    seen = f"; the watch saw {figures.describe()}" if figures else ""
    # CloudWatch's reasons end with a full stop; ours goes at the end of the whole message
    return f"alarm {alarm} went to ALARM during the watch of {record.endpoint_name}: {reason.rstrip('.')}{seen}"


def _dimensions(endpoint_name: str) -> list[dict[str, str]]:
    """SageMaker's invocation metrics are per endpoint and variant."""
    return [{"Name": "EndpointName", "Value": endpoint_name}, {"Name": "VariantName", "Value": VARIANT}]


def _stat(
    query_id: str, metric: str, stat: str, dimensions: list[dict[str, str]], period_s: int, data: bool = False
) -> dict[str, Any]:
    return {
        "Id": query_id,
        "MetricStat": {
            "Metric": {"Namespace": NAMESPACE, "MetricName": metric, "Dimensions": dimensions},
            "Period": period_s,
            "Stat": stat,
        },
        "ReturnData": data,
    }


# -- the watch stage ---------------------------------------------------------------------------------


def watch_release(table: ReleaseTable, watches: Watches, release: Release, task_token: str) -> str:
    """Register (or renew, every ``check_s``) the watch of the live release; end it when the bake is over,
    or fail it with AlarmTriggered when a watched alarm is in ALARM."""
    if release.watch.bake_s == 0:
        watches.succeed(task_token, WatchOutcome())
        return "not watched"
    record = watches.start(release, task_token)
    figures = watches.figures(record)
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
        figures = watches.figures(record)
        watches.fail(record.task_token, AlarmTriggeredError(alarm_message(record, alarm_name, reason, figures)))
        failed.append(record.execution_arn)
    return failed


def end_watch_by_hand(watches: Watches, model: str, alias: str, rolled_back_to: str) -> bool:
    """``dropship rollback`` during a watch: the watch ends, and the release finishes without it."""
    record = watches.get(model, alias)
    if record is None:
        return False
    return watches.succeed(record.task_token, WatchOutcome(ended_by_hand=f"rolled back to version {rolled_back_to}"))

"""CloudWatch alarms in the local stack: evaluated as CloudWatch evaluates them, with its state change events.

moto 5.2.5 stores metric alarms but never evaluates them, and puts no events. Filled here:

- ``AlarmEvaluator`` evaluates every metric alarm every ``DROPSHIP_LOCAL_ALARM_EVALUATION_SECONDS`` (default 2;
  CloudWatch: about once a minute). Supported: one metric with ``Statistic`` or ``ExtendedStatistic`` (pNN), or
  metric math whose ``ReturnData`` expression combines metric stats with ``+ - * /`` (``dropship.local.metrics``);
  ``Period``, ``EvaluationPeriods``, ``DatapointsToAlarm``, the four threshold comparison operators,
  ``Threshold``, ``TreatMissingData``, ``EvaluateLowSampleCountPercentile``. Anomaly detection bands
  (``ThresholdMetricId``) and composite alarms are not evaluated (logged once). The rules are those of the
  CloudWatch User Guide ("Using Amazon CloudWatch alarms": evaluating an alarm, how missing data is treated,
  avoiding premature transitions): the most recent complete periods are looked at, a few more than
  ``EvaluationPeriods`` (the evaluation range); with enough real datapoints the newest ``EvaluationPeriods``
  of them decide; with fewer, missing ones are filled as ``TreatMissingData`` says (``decide``).
- A state change sets ``StateValue``, ``StateReason`` worded as CloudWatch words it ("Threshold Crossed: 1 out of
  the last 1 datapoints [0.4 (26/11/26 01:00:00)] was greater than the threshold (0.05) (minimum 1 datapoint
  for OK -> ALARM transition).") and ``StateReasonData``, and puts a ``CloudWatch Alarm State Change`` event
  (source ``aws.cloudwatch``) on the default bus, shaped as the User Guide's "Alarm events and EventBridge"
  examples (``tests/events/cloudwatch_alarm_state_change.json`` and
  ``tests/local/events/cloudwatch_alarm_state_change_metric_math.json``).
- ``PutMetricAlarm``: moto starts a new alarm ``OK``; CloudWatch starts it ``INSUFFICIENT_DATA`` ("Unchecked:
  Initial alarm creation"). moto also resets the state when an existing alarm is updated; CloudWatch leaves it
  unchanged (the PutMetricAlarm reference). Both fixed.
- ``SetAlarmState`` changes the state without an event -> it puts the same event. As in CloudWatch the forced
  state lasts until the next evaluation.

AWS does not document, so chosen here: the evaluation range for other ``EvaluationPeriods`` than 3
(``evaluation_range``), the wording when real and filled-in datapoints mix, and ``statistic`` in StateReasonData
for a percentile (``p99``). ``evaluatedDatapoints`` in StateReasonData is as recent AWS events carry it.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import uuid
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from unittest import mock

from moto.cloudwatch.models import Alarm, CloudWatchBackend, cloudwatch_backends

from dropship.local.events_bridge import put_service_event
from dropship.local.metrics import (
    ExpressionError,
    MetricIndex,
    Point,
    aware,
    evaluate_queries,
    is_supported_statistic,
    percentile,
)
from dropship.local.periodic import Periodic

log = logging.getLogger(__name__)

OK, ALARM, INSUFFICIENT_DATA = "OK", "ALARM", "INSUFFICIENT_DATA"
INITIAL_REASON = "Unchecked: Initial alarm creation"
COMPARISONS = {
    "GreaterThanOrEqualToThreshold": ("greater than or equal to", lambda value, threshold: value >= threshold),
    "GreaterThanThreshold": ("greater than", lambda value, threshold: value > threshold),
    "LessThanThreshold": ("less than", lambda value, threshold: value < threshold),
    "LessThanOrEqualToThreshold": ("less than or equal to", lambda value, threshold: value <= threshold),
}
# Changes of state (an evaluation, SetAlarmState, PutMetricAlarm replacing the alarm) happen one at a time,
# each with its event, so the events' previous and new states chain.
_state_lock = threading.RLock()


class UnsupportedAlarm(ValueError):
    """An alarm the local stack does not evaluate; the message says why."""


# --------------------------------------------------------------------------------------------------
# The rules


@dataclass(frozen=True)
class Decision:
    """``state`` None: the alarm keeps its state. ``evaluated``: indexes of the real datapoints that decided,
    newest first; ``filled``: how many missing datapoints ``TreatMissingData`` filled in."""

    state: str | None
    evaluated: tuple[int, ...] = ()
    filled: int = 0


def decide(flags: Sequence[bool | None], evaluation_periods: int, datapoints_to_alarm: int, treat: str) -> Decision:
    """The alarm state for the evaluation range's datapoints, oldest first: True breaching, False not, None missing.

    As the CloudWatch User Guide describes (and tabulates; tests/local/test_alarms.py checks every row): with at
    least ``evaluation_periods`` real datapoints, the newest that many decide and missing data does not matter;
    with fewer, ``breaching`` / ``notBreaching`` fill the missing ones; ``missing`` and ``ignore`` decide on the
    real ones: ALARM once ``datapoints_to_alarm`` breach, OK once one does not, and with only breaching ones
    (fewer than needed) ALARM when the oldest is at least ``datapoints_to_alarm`` periods old (avoiding a
    premature transition), else INSUFFICIENT_DATA (``missing``) or no change (``ignore``).
    """
    n, m = evaluation_periods, datapoints_to_alarm
    real = [i for i, flag in enumerate(flags) if flag is not None]
    if len(real) >= n:
        chosen = real[-n:]
        breaching = sum(bool(flags[i]) for i in chosen)
        return Decision(ALARM if breaching >= m else OK, tuple(reversed(chosen)))
    if treat in ("breaching", "notBreaching"):
        filled = n - len(real)
        breaching = sum(bool(flags[i]) for i in real) + (filled if treat == "breaching" else 0)
        return Decision(ALARM if breaching >= m else OK, tuple(reversed(real)), filled)
    if not real:
        return Decision(None if treat == "ignore" else INSUFFICIENT_DATA)
    breaching = sum(bool(flags[i]) for i in real)
    if breaching >= m:
        return Decision(ALARM, tuple(reversed(real)))
    if breaching < len(real):
        return Decision(OK, tuple(reversed(real)))
    if treat == "ignore":
        return Decision(None)
    oldest_age = len(flags) - real[0]  # 1: the newest period
    return Decision(ALARM if oldest_age >= m else INSUFFICIENT_DATA, tuple(reversed(real)))


def evaluation_range(evaluation_periods: int) -> int:
    """How many periods are looked at: more than ``EvaluationPeriods`` (the User Guide's example retrieves 5
    for 3; CloudWatch does not say more)."""
    return evaluation_periods + max(evaluation_periods // 3, 2)


# --------------------------------------------------------------------------------------------------
# What an alarm watches


@dataclass(frozen=True)
class AlarmSpec:
    """An alarm as GetMetricData queries: ``result_id`` is the query whose values are compared."""

    queries: list[dict[str, Any]]
    result_id: str
    period: int
    statistic: str | None  # the single metric's statistic, for StateReasonData (metric math has none)

    @classmethod
    def of(cls, alarm: Alarm) -> AlarmSpec:
        if alarm.rule is not None:
            raise UnsupportedAlarm("composite alarms are not evaluated locally")
        if alarm.comparison_operator not in COMPARISONS or alarm.threshold_metric_id:
            raise UnsupportedAlarm(
                f"the comparison {alarm.comparison_operator} is not evaluated locally (anomaly detection bands)"
            )
        if alarm.metric_data_queries:
            return cls._metric_math(alarm)
        stat = alarm.extended_statistic or alarm.statistic
        if not stat or not is_supported_statistic(str(stat)):
            raise UnsupportedAlarm(f"the statistic {stat} is not evaluated locally")
        metric_stat = _metric_stat(
            alarm.namespace, alarm.metric_name, alarm.dimensions, int(alarm.period), str(stat), alarm.unit
        )
        return cls([{"Id": "m", "MetricStat": metric_stat, "ReturnData": True}], "m", int(alarm.period), str(stat))

    @classmethod
    def _metric_math(cls, alarm: Alarm) -> AlarmSpec:
        queries: list[dict[str, Any]] = []
        periods = []
        for query in alarm.metric_data_queries:
            entry: dict[str, Any] = {"Id": query.id, "ReturnData": _truthy(query.return_data)}
            if query.expression:
                entry["Expression"] = query.expression
            elif query.metric_stat is not None:
                stat = query.metric_stat
                if not is_supported_statistic(str(stat.stat)):
                    raise UnsupportedAlarm(f"the statistic {stat.stat} of {query.id} is not evaluated locally")
                metric = stat.metric
                entry["MetricStat"] = _metric_stat(
                    metric.namespace, metric.metric_name, metric.dimensions, int(stat.period), str(stat.stat), stat.unit
                )
                periods.append(int(stat.period))
            queries.append(entry)
        returned = [q for q in queries if q["ReturnData"] is not False]
        if len(returned) != 1 or not periods:
            raise UnsupportedAlarm("a metric math alarm needs metrics and exactly one query with ReturnData")
        only_stat = returned[0].get("MetricStat", {}).get("Stat") if len(queries) == 1 else None
        return cls(queries, str(returned[0]["Id"]), max(periods), only_stat)


def _metric_stat(
    namespace: str, metric_name: str, dimensions: Any, period: int, stat: str, unit: str | None
) -> dict[str, Any]:
    """A GetMetricData ``MetricStat`` for one metric of a moto alarm (its dimensions have .name and .value)."""
    metric_stat: dict[str, Any] = {
        "Metric": {
            "Namespace": namespace,
            "MetricName": metric_name,
            "Dimensions": [{"Name": d.name, "Value": d.value} for d in dimensions],
        },
        "Period": period,
        "Stat": stat,
    }
    if unit:
        metric_stat["Unit"] = unit
    return metric_stat


def _truthy(value: Any) -> bool | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.lower() == "true"
    return bool(value)


# --------------------------------------------------------------------------------------------------
# CloudWatch's words


def java_double(value: float) -> str:
    """A number as CloudWatch prints it (Java's Double.toString): ``50.0``, ``0.0666851903306472``, ``1.0E7``."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0 or 1e-3 <= abs(value) < 1e7:
        text = repr(float(value))
        return text if "e" not in text else format(Decimal(text), "f")
    sign, digits, exponent = Decimal(repr(float(value))).normalize().as_tuple()
    mantissa = "".join(map(str, digits))
    power = len(digits) - 1 + int(exponent)
    return f"{'-' if sign else ''}{mantissa[0]}.{mantissa[1:] or '0'}E{power}"


def _reason_time(value: datetime) -> str:
    return value.strftime("%d/%m/%y %H:%M:%S")


def event_time(value: datetime) -> str:
    """``2019-10-02T17:04:40.989+0000``, as the event and StateReasonData spell times."""
    value = aware(value)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def _was(count: int) -> str:
    return "was" if count == 1 else "were"


@dataclass
class Evaluation:
    """The outcome of evaluating an alarm: its new state and CloudWatch's reason for it."""

    state: str
    reason: str
    reason_data: str


@dataclass
class _Looked:
    """What one evaluation saw: the evaluation range's periods and their values, oldest first."""

    alarm: Alarm
    spec: AlarmSpec
    now: datetime
    windows: list[datetime]
    points: list[Point | None]
    decision: Decision
    breaching: list[bool | None] = field(default_factory=list)


def explain(looked: _Looked, previous_state: str) -> Evaluation:
    """StateReason and StateReasonData for the decision, worded as CloudWatch words them."""
    alarm, decision = looked.alarm, looked.decision
    assert decision.state is not None
    n = int(alarm.evaluation_periods)
    m = int(alarm.datapoints_to_alarm or n)
    threshold = java_double(float(alarm.threshold))
    words = COMPARISONS[alarm.comparison_operator][0]
    evaluated = [looked.points[i] for i in decision.evaluated]
    real = [p for p in evaluated if p is not None]
    treated = "Breaching" if alarm.treat_missing_data == "breaching" else "NonBreaching"

    if decision.state == INSUFFICIENT_DATA:
        unknown = n - len(real)
        reason = f"Insufficient Data: {_plural(unknown, 'datapoint')} {_was(unknown)} unknown."
    elif not real:
        filled = decision.filled
        reason = (
            f"Threshold Crossed: no datapoints were received for {_plural(filled, 'period')} and "
            f"{_plural(filled, 'missing datapoint')} {_was(filled)} treated as [{treated}]."
        )
    else:
        alarming = decision.state == ALARM
        listed = [
            (i, p)
            for i, p in zip(decision.evaluated, evaluated, strict=True)
            if p is not None and looked.breaching[i] is alarming
        ]
        count = len(listed) + (decision.filled if (treated == "Breaching") is alarming else 0)
        values = ", ".join(f"{java_double(p.value)} ({_reason_time(looked.windows[i])})" for i, p in listed)
        relation = words if alarming else f"not {words}"
        treated_text = (
            f" and {_plural(decision.filled, 'missing datapoint')} {_was(decision.filled)} treated as [{treated}]"
            if decision.filled
            else ""
        )
        if previous_state == INSUFFICIENT_DATA:
            reason = (
                f"Threshold Crossed: {_plural(count, 'datapoint')} [{values}] {_was(count)} {relation} "
                f"the threshold ({threshold}){treated_text}."
            )
        else:
            minimum = m if alarming else n - m + 1
            reason = (
                f"Threshold Crossed: {count} out of the last {n} datapoints [{values}] {_was(count)} {relation} "
                f"the threshold ({threshold}){treated_text} (minimum {_plural(minimum, 'datapoint')} for "
                f"{previous_state} -> {decision.state} transition)."
            )
    return Evaluation(decision.state, reason, _reason_data(looked, real))


def _reason_data(looked: _Looked, real: list[Point]) -> str:
    data: dict[str, Any] = {"version": "1.0", "queryDate": event_time(looked.now)}
    if real:
        data["startDate"] = event_time(min(p.timestamp for p in real))
    if looked.spec.statistic:
        data["statistic"] = looked.spec.statistic
    data["period"] = looked.spec.period
    data["recentDatapoints"] = [p.value for p in sorted(real, key=lambda p: p.timestamp)]
    data["threshold"] = float(looked.alarm.threshold)
    evaluated = list(looked.decision.evaluated) or list(
        range(len(looked.windows) - 1, len(looked.windows) - 1 - int(looked.alarm.evaluation_periods), -1)
    )
    entries = []
    for i in evaluated:
        entry: dict[str, Any] = {"timestamp": event_time(looked.windows[i])}
        point = looked.points[i]
        if point is not None:
            if point.sample_count is not None:
                entry["sampleCount"] = point.sample_count
            entry["value"] = point.value
        entries.append(entry)
    data["evaluatedDatapoints"] = entries
    return json.dumps(data, separators=(",", ":"))


# --------------------------------------------------------------------------------------------------
# Evaluating


def period_end(now: datetime, period_s: int) -> datetime:
    """The end of the newest complete period: ``now`` rounded down to the period (at most to the minute), as
    CloudWatch's reasons show (queried at 17:04:40, a 5-minute alarm's newest datapoint is 16:59:00)."""
    step = min(period_s, 60)
    seconds = math.floor(now.timestamp())
    return datetime.fromtimestamp(seconds - seconds % step, UTC)


def look(alarm: Alarm, index: MetricIndex, now: datetime) -> _Looked:
    """Query the alarm's evaluation range and decide (raises UnsupportedAlarm or ExpressionError)."""
    spec = AlarmSpec.of(alarm)
    n = int(alarm.evaluation_periods)
    m = int(alarm.datapoints_to_alarm or n)
    periods = evaluation_range(n)
    period = timedelta(seconds=spec.period)
    end = period_end(now, spec.period)
    start = end - periods * period
    found = evaluate_queries(index, spec.queries, start, end).get(spec.result_id, {})
    windows = [start + k * period for k in range(periods)]
    points = [found.get(w) for w in windows]
    compare = COMPARISONS[alarm.comparison_operator][1]
    threshold = float(alarm.threshold)
    breaching: list[bool | None] = [None if p is None else bool(compare(p.value, threshold)) for p in points]
    decision = decide(breaching, n, m, alarm.treat_missing_data or "missing")
    if decision.state is not None and _too_few_samples(alarm, [points[i] for i in decision.evaluated]):
        decision = Decision(None)
    return _Looked(alarm, spec, now, windows, points, decision, breaching)


def _too_few_samples(alarm: Alarm, evaluated: list[Point | None]) -> bool:
    """``EvaluateLowSampleCountPercentile: ignore``: a percentile from fewer than 10/(1-p) samples (10/p below
    p50) changes nothing."""
    p = percentile(str(alarm.extended_statistic or ""))
    if p is None or alarm.evaluate_low_sample_count_percentile != "ignore":
        return False
    fraction = p / 100.0
    needed = 10.0 / (1.0 - fraction) if fraction >= 0.5 else 10.0 / max(fraction, 1e-9)
    return any(point is not None and (point.sample_count or 0.0) < needed for point in evaluated)


class AlarmEvaluator:
    """Evaluates every metric alarm of every account and region every ``interval_s`` seconds."""

    def __init__(self, interval_s: float) -> None:
        self._ticker = Periodic(interval_s, self.evaluate_all, "alarm-evaluator")
        self._reported: set[tuple[str, str]] = set()

    def start(self) -> AlarmEvaluator:
        self._ticker.start()
        return self

    def stop(self) -> None:
        self._ticker.stop()

    def evaluate_all(self, now: datetime | None = None) -> None:
        """One pass over every alarm; a failure is logged, never raised (the next pass tries again)."""
        now = now or datetime.now(UTC)
        for regions in list(cloudwatch_backends.values()):
            for backend in list(regions.values()):
                if backend.alarms:
                    self._evaluate_backend(backend, now)

    def _evaluate_backend(self, backend: CloudWatchBackend, now: datetime) -> None:
        try:
            index = MetricIndex(backend.get_all_metrics())
        except Exception:
            log.exception("could not read the metrics of %s/%s", backend.account_id, backend.region_name)
            return
        for alarm in list(backend.alarms.values()):
            try:
                looked = look(alarm, index, now)
            except (UnsupportedAlarm, ExpressionError) as exc:
                self._report_once(alarm.name, str(exc))
                continue
            except Exception:
                log.exception("could not evaluate alarm %s", alarm.name)
                continue
            if looked.decision.state is None:
                continue
            with _state_lock:
                if backend.alarms.get(alarm.name) is not alarm or alarm.state_value == looked.decision.state:
                    continue
                change(backend, alarm, explain(looked, str(alarm.state_value)))

    def _report_once(self, alarm_name: str, reason: str) -> None:
        if (alarm_name, reason) not in self._reported:
            self._reported.add((alarm_name, reason))
            log.warning("alarm %s is not evaluated: %s", alarm_name, reason)


# --------------------------------------------------------------------------------------------------
# Changing state, and the event


@dataclass(frozen=True)
class _State:
    value: str
    reason: str
    reason_data: str | None
    timestamp: datetime

    @classmethod
    def of(cls, alarm: Alarm) -> _State:
        return cls(
            str(alarm.state_value), str(alarm.state_reason), alarm.state_reason_data, alarm.state_updated_timestamp
        )

    def detail(self) -> dict[str, Any]:
        detail: dict[str, Any] = {"value": self.value, "reason": self.reason}
        if self.reason_data:
            detail["reasonData"] = self.reason_data
        detail["timestamp"] = event_time(self.timestamp)
        return detail


def change(backend: CloudWatchBackend, alarm: Alarm, evaluation: Evaluation) -> None:
    """Set the alarm's state (its history keeps the old one) and put the state change event."""
    with _state_lock:
        previous = _State.of(alarm)
        alarm.update_state(evaluation.reason, evaluation.reason_data, evaluation.state)
        _transitioned(alarm)
        put_state_change(backend, alarm, previous)


def _transitioned(alarm: Alarm, when: datetime | None = None) -> None:
    """DescribeAlarms' ``StateTransitionedTimestamp`` (moto has none): when ``StateValue`` last changed."""
    setattr(alarm, "state_transitioned_timestamp", when or alarm.state_updated_timestamp)  # noqa: B010


def state_change_detail(alarm: Alarm, previous: _State) -> dict[str, Any]:
    """``detail`` of a ``CloudWatch Alarm State Change`` event, as the CloudWatch User Guide shows it."""
    configuration: dict[str, Any] = {}
    if alarm.description:
        configuration["description"] = alarm.description
    configuration["metrics"] = _configuration_metrics(alarm)
    return {
        "alarmName": alarm.name,
        "state": _State.of(alarm).detail(),
        "previousState": previous.detail(),
        "configuration": configuration,
    }


def _event_metric(namespace: str, name: str, dimensions: list[Any], period: Any, stat: Any) -> dict[str, Any]:
    return {
        "metric": {
            "dimensions": {str(d.name): str(d.value) for d in dimensions},
            "name": name,
            "namespace": namespace,
        },
        "period": int(period),
        "stat": str(stat),
    }


def _configuration_metrics(alarm: Alarm) -> list[dict[str, Any]]:
    if not alarm.metric_data_queries:
        # A single-metric alarm's one query has a generated id (a UUID in AWS's example): stable per alarm here.
        return [
            {
                "id": str(uuid.uuid5(uuid.NAMESPACE_URL, alarm.alarm_arn)),
                "metricStat": _event_metric(
                    alarm.namespace,
                    alarm.metric_name,
                    alarm.dimensions,
                    alarm.period,
                    alarm.extended_statistic or alarm.statistic,
                ),
                "returnData": True,
            }
        ]
    metrics = []
    for query in alarm.metric_data_queries:
        entry: dict[str, Any] = {}
        if query.expression:
            entry["expression"] = query.expression
        entry["id"] = query.id
        if query.label:
            entry["label"] = query.label
        if query.metric_stat is not None:
            stat = query.metric_stat
            entry["metricStat"] = _event_metric(
                stat.metric.namespace, stat.metric.metric_name, stat.metric.dimensions, stat.period, stat.stat
            )
        returns = _truthy(query.return_data)
        entry["returnData"] = True if returns is None else returns
        metrics.append(entry)
    return metrics


def put_state_change(backend: CloudWatchBackend, alarm: Alarm, previous: _State) -> None:
    """Put the event on the alarm's account and region's default bus (a failure is logged, as CloudWatch's
    delivery never fails the state change)."""
    put_service_event(
        backend.account_id,
        backend.region_name,
        "aws.cloudwatch",
        "CloudWatch Alarm State Change",
        alarm.alarm_arn,
        lambda: state_change_detail(alarm, previous),
    )


# --------------------------------------------------------------------------------------------------
# moto's PutMetricAlarm and SetAlarmState


def install(patches: ExitStack) -> None:
    original_put = CloudWatchBackend.put_metric_alarm
    original_set = CloudWatchBackend.set_alarm_state

    def put_metric_alarm(self: CloudWatchBackend, *args: Any, **kwargs: Any) -> Alarm:
        name = kwargs["name"] if "name" in kwargs else args[0]
        with _state_lock:
            existing = self.alarms.get(name)
            alarm = original_put(self, *args, **kwargs)
            if existing is not None:  # an update leaves the state unchanged
                for attribute in ("state_value", "state_reason", "state_reason_data", "state_updated_timestamp"):
                    setattr(alarm, attribute, getattr(existing, attribute))
                alarm.history = existing.history
                _transitioned(alarm, getattr(existing, "state_transitioned_timestamp", None))
            else:  # a new alarm has no data yet, and no StateReasonData
                alarm.state_value, alarm.state_reason = INSUFFICIENT_DATA, INITIAL_REASON
                setattr(alarm, "state_reason_data", None)  # noqa: B010  (moto types it as str)
                _transitioned(alarm)
        return alarm

    def set_alarm_state(
        self: CloudWatchBackend, alarm_name: str, reason: str, reason_data: str, state_value: str
    ) -> None:
        with _state_lock:
            alarm = self.alarms.get(alarm_name)
            previous = _State.of(alarm) if alarm is not None else None
            original_set(self, alarm_name, reason, reason_data, state_value)  # validates, and sets the state
            if alarm is not None and previous is not None and previous.value != state_value:
                _transitioned(alarm)
                put_state_change(self, alarm, previous)

    patches.enter_context(mock.patch.object(CloudWatchBackend, "put_metric_alarm", put_metric_alarm))
    patches.enter_context(mock.patch.object(CloudWatchBackend, "set_alarm_state", set_alarm_state))

"""CloudWatch metrics in the local stack: SageMaker's invocation metrics, and GetMetricData as CloudWatch answers it.

moto 5.2.5 gaps filled here (each checked against its source):

- Nothing publishes SageMaker's endpoint invocation metrics. -> ``InvocationMetrics.record``: every
  InvokeEndpoint the local host forwards records, in namespace ``AWS/SageMaker`` with the dimensions
  ``EndpointName`` and ``VariantName``, what SageMaker documents per invocation ("Monitor Amazon SageMaker with
  Amazon CloudWatch", endpoint invocation metrics): ``Invocations`` 1; ``Invocation4XXErrors`` and
  ``Invocation5XXErrors`` 1 for a container 4xx / 5xx answer, else 0; ``InvocationsPerInstance``
  1/``numberOfInstances``; ``ModelLatency`` and ``OverheadLatency`` in microseconds (units ``None`` and
  ``Microseconds``). It runs in the moto server's process, without an HTTP round trip: one ``DistributionDatum``
  per metric and second, updated in place, keeps the values' distribution, so percentiles can be computed.
- ``GetMetricData`` (``CloudWatchBackend.get_metric_data``) -> ``get_metric_data``:
  - a percentile statistic (``p99``) fails with a TypeError (moto computes only the five basic statistics);
  - with dimensions given, the namespace is ignored and the dimension lists are compared after sorting with a
    broken ordering (``Dimension.__lt__``), so dimensions given in another order than published match nothing;
    here a metric is its namespace, name and exact set of dimensions, as in CloudWatch;
  - periods start at ``StartTime``; CloudWatch rounds ``StartTime`` down first (to the minute when it is less
    than 15 days ago, to 5 minutes up to 63 days, else to the hour) and returns period starts from there;
  - a metric math expression other than a bare id returns nothing; here ``+ - * /``, parentheses, numbers and
    the ids of other queries are evaluated timestamp by timestamp; a missing operand or a division by zero
    gives no value at that timestamp. Metrics Insights (``SELECT ...``) queries are left to moto.

The same ``MetricIndex`` and ``evaluate_queries`` serve the alarm evaluator (``dropship.local.alarms``).
"""

from __future__ import annotations

import ast
import math
import re
import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

from moto.cloudwatch.exceptions import InvalidParameterValue, ValidationError
from moto.cloudwatch.models import CloudWatchBackend, MetricAggregatedDatum, cloudwatch_backends

NAMESPACE = "AWS/SageMaker"
BASIC_STATISTICS = ("SampleCount", "Average", "Sum", "Minimum", "Maximum")
_PERCENTILE = re.compile(r"^p(\d{1,2}(?:\.\d+)?|100)$")

DimensionKey = frozenset[tuple[str, str]]


def aware(value: datetime) -> datetime:
    """moto keeps naive UTC datetimes; everything here is aware UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _naive(value: datetime) -> datetime:
    return aware(value).replace(tzinfo=None)


def percentile(stat: str) -> float | None:
    """``p99`` -> 99.0; None for any other statistic."""
    match = _PERCENTILE.match(stat)
    return float(match.group(1)) if match else None


def is_supported_statistic(stat: str) -> bool:
    return stat in BASIC_STATISTICS or percentile(stat) is not None


class DistributionDatum(MetricAggregatedDatum):
    """The values of one metric within one second as a distribution (value -> count), as CloudWatch keeps values
    published with ``Values`` and ``Counts``: sum, minimum, maximum and count serve moto's own statistics, the
    distribution serves percentiles."""

    def __init__(self, namespace: str, name: str, dimensions: list[dict[str, str]], timestamp: datetime, unit: str):
        super().__init__(
            namespace=namespace,
            name=name,
            min_stat=math.inf,
            max_stat=-math.inf,
            sample_count=0.0,
            sum_stat=0.0,
            dimensions=dimensions,
            timestamp=timestamp,
            unit=unit,
        )
        self.counts: dict[float, float] = {}

    def add(self, value: float) -> None:
        self.counts[value] = self.counts.get(value, 0.0) + 1.0
        self.min, self.max = min(self.min, value), max(self.max, value)
        self.sum += value
        self.sample_count += 1.0


# --------------------------------------------------------------------------------------------------
# Statistics


@dataclass(frozen=True)
class Point:
    """One period's value of a query; ``sample_count`` is None for a metric math result."""

    timestamp: datetime
    value: float
    sample_count: float | None = None


@dataclass
class _Samples:
    count: float = 0.0
    total: float = 0.0
    low: float = math.inf
    high: float = -math.inf
    # value -> count, or None once a datum without its values (a statistic set) is part of the period
    distribution: dict[float, float] | None = None

    def add(self, value: float, count: float = 1.0) -> None:
        self.count += count
        self.total += value * count
        self.low, self.high = min(self.low, value), max(self.high, value)
        if self.distribution is not None:
            self.distribution[value] = self.distribution.get(value, 0.0) + count


def _samples(datums: Iterable[Any]) -> _Samples:
    samples = _Samples(distribution={})
    for datum in datums:
        counts = getattr(datum, "counts", None)
        if counts is not None:
            for value, count in list(counts.items()):  # a copy: the recorder may be adding to it
                samples.add(value, count)
        elif isinstance(datum, MetricAggregatedDatum):
            samples.count += float(datum.sample_count)
            samples.total += float(datum.sum)
            samples.low, samples.high = min(samples.low, float(datum.min)), max(samples.high, float(datum.max))
            samples.distribution = None
        else:
            samples.add(float(datum.value))
    return samples


def statistic(datums: Iterable[Any], stat: str) -> tuple[float | None, float]:
    """``stat`` of the datums (None when it has no value, e.g. a percentile of statistic sets) and the
    number of samples."""
    samples = _samples(datums)
    if samples.count <= 0:
        return None, 0.0
    if stat == "SampleCount":
        return samples.count, samples.count
    if stat == "Sum":
        return samples.total, samples.count
    if stat == "Average":
        return samples.total / samples.count, samples.count
    if stat == "Minimum":
        return samples.low, samples.count
    if stat == "Maximum":
        return samples.high, samples.count
    rank_p = percentile(stat)
    if rank_p is None or samples.distribution is None:
        return None, samples.count
    # nearest rank: the smallest value with at least p% of the samples at or below it
    rank = max(1.0, math.ceil(rank_p / 100.0 * samples.count))
    seen = 0.0
    for value, count in sorted(samples.distribution.items()):
        seen += count
        if seen >= rank:
            return value, samples.count
    return samples.high, samples.count


# --------------------------------------------------------------------------------------------------
# Querying


def dimension_key(dimensions: Iterable[Mapping[str, Any]] | Iterable[Any]) -> DimensionKey:
    """A metric's dimensions as a set: given as API dicts or as moto ``Dimension`` objects."""
    pairs = []
    for dimension in dimensions:
        if isinstance(dimension, Mapping):
            pairs.append((str(dimension["Name"]), str(dimension.get("Value"))))
        else:
            pairs.append((str(dimension.name), str(dimension.value)))
    return frozenset(pairs)


class MetricIndex:
    """The datums of one CloudWatch backend, by metric (namespace, name and exact set of dimensions)."""

    def __init__(self, datums: Iterable[Any]) -> None:
        self._by_metric: dict[tuple[str, str, DimensionKey], list[Any]] = defaultdict(list)
        for datum in datums:
            # the key is kept on the datum: the evaluator indexes every datum every few seconds
            key = getattr(datum, "_metric_key", None)
            if key is None:
                key = (datum.namespace, datum.name, dimension_key(datum.dimensions))
                datum._metric_key = key
            self._by_metric[key].append(datum)

    def datums(self, namespace: str, name: str, dimensions: DimensionKey) -> list[Any]:
        return self._by_metric.get((namespace, name, dimensions), [])


def stat_points(
    index: MetricIndex, metric_stat: Mapping[str, Any], start: datetime, end: datetime
) -> dict[datetime, Point]:
    """A ``MetricStat`` query's value in each period from ``start`` (aligned) until ``end`` that has data."""
    metric = metric_stat["Metric"]
    period = timedelta(seconds=int(metric_stat["Period"]))
    stat, unit = str(metric_stat["Stat"]), metric_stat.get("Unit")
    by_period: dict[int, list[Any]] = defaultdict(list)
    low, high = _naive(start), _naive(end)  # moto's timestamps are naive UTC: compared as they are, cheaply
    for datum in index.datums(metric["Namespace"], metric["MetricName"], dimension_key(metric.get("Dimensions", []))):
        when = datum.timestamp if datum.timestamp.tzinfo is None else _naive(datum.timestamp)
        if low <= when < high and (not unit or datum.unit == unit):
            by_period[int((when - low) / period)].append(datum)
    points = {}
    for slot, datums in by_period.items():
        value, count = statistic(datums, stat)
        if value is not None:
            timestamp = start + slot * period
            points[timestamp] = Point(timestamp, value, count)
    return points


class ExpressionError(ValueError):
    """A metric math expression the local stack does not evaluate."""


_OPERATORS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
}

Series = dict[datetime, float]


def parse_expression(expression: str) -> ast.expr:
    """A metric math expression of ``+ - * /``, parentheses, numbers and query ids, or ExpressionError."""
    try:
        tree = ast.parse(expression.strip(), mode="eval").body
    except SyntaxError as exc:
        raise ExpressionError(f"cannot parse the metric math expression {expression!r}") from exc
    for node in ast.walk(tree):
        allowed = (ast.BinOp, ast.UnaryOp, ast.Name, ast.Load, ast.USub, ast.UAdd, *_OPERATORS)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
            continue
        if not isinstance(node, allowed):
            raise ExpressionError(
                f"the local stack evaluates metric math with + - * /, parentheses, numbers and query ids; "
                f"{expression!r} has more"
            )
    return tree


def referenced_ids(expression: str) -> set[str]:
    return {node.id for node in ast.walk(parse_expression(expression)) if isinstance(node, ast.Name)}


def _combine(op: Any, left: Series | float, right: Series | float) -> Series | float:
    def apply(a: float, b: float) -> float | None:
        try:
            value = float(op(a, b))
        except ZeroDivisionError:
            return None  # CloudWatch returns no value where a division by zero occurs
        return value if math.isfinite(value) else None

    if isinstance(left, dict) and isinstance(right, dict):
        pairs = {t: apply(left[t], right[t]) for t in left.keys() & right.keys()}
    elif isinstance(left, dict):
        pairs = {t: apply(v, float(right)) for t, v in left.items()}  # type: ignore[arg-type]
    elif isinstance(right, dict):
        pairs = {t: apply(float(left), v) for t, v in right.items()}
    else:
        single = apply(left, right)
        return math.nan if single is None else single
    return {t: v for t, v in pairs.items() if v is not None}


def evaluate_expression(expression: str, values: Mapping[str, Series]) -> Series | float:
    """``expression`` over the series of the queries it names (a missing id is an ExpressionError)."""

    def walk(node: ast.expr) -> Series | float:
        if isinstance(node, ast.Constant):
            return float(node.value)  # type: ignore[arg-type]  # a number: parse_expression checked it
        if isinstance(node, ast.Name):
            if node.id not in values:
                raise ExpressionError(f"the metric math expression {expression!r} names {node.id}, which no query has")
            return values[node.id]
        if isinstance(node, ast.UnaryOp):
            operand = walk(node.operand)
            sign = -1.0 if isinstance(node.op, ast.USub) else 1.0
            return {t: sign * v for t, v in operand.items()} if isinstance(operand, dict) else sign * operand
        assert isinstance(node, ast.BinOp)
        return _combine(_OPERATORS[type(node.op)], walk(node.left), walk(node.right))

    return walk(parse_expression(expression))


def evaluate_queries(
    index: MetricIndex, queries: Sequence[Mapping[str, Any]], start: datetime, end: datetime
) -> dict[str, dict[datetime, Point]]:
    """Every query's points: ``MetricStat`` queries from the data, expressions from the queries they name."""
    results: dict[str, dict[datetime, Point]] = {}
    expressions = {str(q["Id"]): str(q["Expression"]) for q in queries if q.get("Expression")}
    for query in queries:
        if query.get("MetricStat"):
            results[str(query["Id"])] = stat_points(index, query["MetricStat"], start, end)

    def resolve(query_id: str, path: tuple[str, ...]) -> dict[datetime, Point]:
        if query_id in results:
            return results[query_id]
        if query_id in path:
            raise ExpressionError(f"metric math expressions refer to each other in a circle: {' -> '.join(path)}")
        expression = expressions[query_id]
        inputs = {}
        for name in referenced_ids(expression):
            if name not in expressions and name not in results:
                raise ExpressionError(f"the metric math expression {expression!r} names {name}, which no query has")
            inputs[name] = {t: p.value for t, p in resolve(name, (*path, query_id)).items()}
        value = evaluate_expression(expression, inputs)
        series = value if isinstance(value, dict) else {}
        results[query_id] = {t: Point(t, v) for t, v in series.items()}
        return results[query_id]

    for query_id in expressions:
        resolve(query_id, ())
    return results


def rounded_start(start: datetime, now: datetime) -> datetime:
    """GetMetricData's StartTime as CloudWatch rounds it: down to the minute when less than 15 days ago,
    to 5 minutes up to 63 days ago, else to the hour."""
    start = start.replace(microsecond=0)
    age = now - start
    if age < timedelta(days=15):
        return start.replace(second=0)
    if age < timedelta(days=63):
        return start.replace(second=0, minute=start.minute - start.minute % 5)
    return start.replace(second=0, minute=0)


def get_metric_data(
    backend: Any, queries: list[dict[str, Any]], start_time: datetime, end_time: datetime, scan_by: str
) -> list[dict[str, Any]]:
    """``GetMetricData``'s results in moto's form (id, label, values, timestamps, status_code)."""
    start, end = aware(start_time), aware(end_time)
    if start > end:
        raise ValidationError("The parameter EndTime must be greater than StartTime.")
    if start == end:
        raise ValidationError("The parameter StartTime must not equal parameter EndTime.")
    for query in queries:
        stat = (query.get("MetricStat") or {}).get("Stat")
        if stat is not None and not is_supported_statistic(str(stat)):
            raise InvalidParameterValue(
                f"The local stack computes {', '.join(BASIC_STATISTICS)} and percentiles (pNN); "
                f"the statistic {stat} of query {query['Id']} is not emulated."
            )
    try:
        points = evaluate_queries(
            MetricIndex(backend.get_all_metrics()), queries, rounded_start(start, datetime.now(UTC)), end
        )
    except ExpressionError as exc:
        raise ValidationError(str(exc)) from exc
    results = []
    for query in queries:
        if query.get("ReturnData") is False:
            continue
        series = sorted(points.get(str(query["Id"]), {}).values(), key=lambda p: p.timestamp)
        if scan_by == "TimestampDescending":
            series.reverse()
        default_label = query["MetricStat"]["Metric"]["MetricName"] if query.get("MetricStat") else query["Id"]
        results.append(
            {
                "id": query["Id"],
                "label": query.get("Label") or default_label,
                "values": [p.value for p in series],
                "timestamps": [p.timestamp for p in series],
                "status_code": "Complete",
            }
        )
    return results


# --------------------------------------------------------------------------------------------------
# SageMaker's invocation metrics


class InvocationMetrics:
    """Records SageMaker's per-invocation metrics of the local endpoints in moto's CloudWatch."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (account, region, endpoint, variant, metric) -> the datum of the current second
        self._current: dict[tuple[str, str, str, str, str], Any] = {}

    def record(
        self,
        account_id: str,
        region: str,
        endpoint_name: str,
        variant_name: str,
        *,
        status: int,
        model_latency_us: float,
        overhead_latency_us: float,
        instance_count: int | None,
    ) -> None:
        """One forwarded invocation: ``status`` is the container's HTTP status (0: no answer in time, counted
        here as a 5xx); ``instance_count`` None for a serverless variant, which publishes no
        InvocationsPerInstance (SageMaker's serverless metrics list)."""
        values = {
            "Invocations": (1.0, "None"),
            "Invocation4XXErrors": (1.0 if 400 <= status < 500 else 0.0, "None"),
            "Invocation5XXErrors": (1.0 if status >= 500 or status == 0 else 0.0, "None"),
            "ModelLatency": (float(round(model_latency_us)), "Microseconds"),
            "OverheadLatency": (float(round(max(0.0, overhead_latency_us))), "Microseconds"),
        }
        if instance_count is not None:
            values["InvocationsPerInstance"] = (1.0 / max(1, instance_count), "None")
        second = datetime.now(UTC).replace(microsecond=0, tzinfo=None)  # moto's timestamps are naive UTC
        dimensions = [{"Name": "EndpointName", "Value": endpoint_name}, {"Name": "VariantName", "Value": variant_name}]
        with self._lock:
            backend = cloudwatch_backends[account_id][region]
            for name, (value, unit) in values.items():
                key = (account_id, region, endpoint_name, variant_name, name)
                datum = self._current.get(key)
                if datum is None or datum.timestamp != second:
                    datum = DistributionDatum(NAMESPACE, name, dimensions, second, unit)
                    backend.metric_data.append(datum)
                    self._current[key] = datum
                datum.add(value)

    def forget(self, account_id: str, region: str, endpoint_name: str) -> None:
        """The endpoint is gone: its data stays in CloudWatch, the recorder drops its handles."""
        with self._lock:
            for key in [k for k in self._current if k[:3] == (account_id, region, endpoint_name)]:
                del self._current[key]


def install(patches: ExitStack) -> None:
    """Patch moto's ``GetMetricData``."""
    original = CloudWatchBackend.get_metric_data

    def patched(
        self: Any,
        queries: list[dict[str, Any]],
        start_time: datetime,
        end_time: datetime,
        scan_by: str = "TimestampAscending",
    ) -> list[dict[str, Any]]:
        if any(str(q.get("Expression", "")).lstrip().upper().startswith("SELECT") for q in queries):
            return original(self, queries, start_time, end_time, scan_by)
        return get_metric_data(self, queries, start_time, end_time, scan_by)

    patches.enter_context(mock.patch.object(CloudWatchBackend, "get_metric_data", patched))

"""Cloud Monitoring v3 over gRPC: `google.monitoring.v3.MetricService/ListTimeSeries`.

google-cloud-monitoring has no REST transport, so this is a gRPC server of its own on a loopback
port, speaking Google's wire format with the messages the client library ships (grpcio's
generic handlers; no .proto files of ours). It reads the series sandbox/monitoring_data.py
and sandbox/monitoring_services.py derive from the world, and answers and refuses as Google
documents ListTimeSeries: a filter that names a metric type, an interval (startTime, endTime],
FULL or HEADERS, alignment and cross-series reduction, points newest first, pages of
`page_size` points (FULL) or series (HEADERS). GAUGE, DELTA and CUMULATIVE metrics, numeric or
DISTRIBUTION, take the aligners and reducers Google lets them take; a cumulative series aligns
(DELTA, RATE) on its counter's increases, counted from the sample just before the interval;
distributions merge bucket by bucket, and their percentiles are interpolated linearly within
a bucket. `http_error` faults whose path matches
`/google.monitoring.v3.MetricService/<Method>` (method POST) fail calls with the gRPC status
for their HTTP status.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import traceback
from collections import defaultdict
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, replace

import grpc
from google.api import metric_pb2
from google.cloud import monitoring_v3

from .http import USAGE_LIMITS
from .monitoring_data import (
    CUMULATIVE,
    DELTA,
    DISTRIBUTION,
    DOUBLE,
    GAUGE,
    INT64,
    Metric,
    Point,
    Series,
    headers,
    sampled,
)
from .monitoring_data import METRICS as VM_METRICS
from .monitoring_services import FINITE_BUCKETS, GROWTH, SCALE, Distribution, Scene, scene
from .monitoring_services import METRICS as SERVICE_METRICS

METRICS = {**VM_METRICS, **SERVICE_METRICS}
SERVICE = "google.monitoring.v3.MetricService"
MAX_PAGE = 100_000  # Google's effective page_size when none (or more) is asked for
MIN_PERIOD = 60.0
Aligner = monitoring_v3.Aggregation.Aligner
Reducer = monitoring_v3.Aggregation.Reducer
HEADERS = monitoring_v3.ListTimeSeriesRequest.TimeSeriesView.HEADERS
REQUEST = monitoring_v3.ListTimeSeriesRequest.pb()
RESPONSE = monitoring_v3.ListTimeSeriesResponse.pb()
FAULT_MESSAGES = {429: "Rate Limit Exceeded", 503: "The service is currently unavailable."}
FAULT_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    500: grpc.StatusCode.INTERNAL,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


class Refused(Exception):
    """A call answered with a gRPC error status, as Google would answer it."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def _unimplemented(field: str, asked, none, implemented) -> Exception:
    names = ", ".join(choice.name for choice in [none, *implemented])
    return invalid(field, asked.name, f"The sandbox implements {names}.")


def invalid(field: str, value, reason: str) -> Refused:
    """Google's wording for a bad request field."""
    return Refused(
        grpc.StatusCode.INVALID_ARGUMENT,
        f'Field {field} had an invalid value of "{value}": {reason}',
    )


# --- filters ------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r'\s*(?:(?P<string>"(?:[^"\\]|\\.)*")|(?P<op>!=|[=:(),])|(?P<word>[A-Za-z0-9_][\w.\-/]*))'
)
FUNCTIONS: dict[str, Callable[[list[str]], Callable[[str], bool]]] = {
    "starts_with": lambda args: lambda v: v.startswith(args[0]),
    "ends_with": lambda args: lambda v: v.endswith(args[0]),
    "has_substring": lambda args: lambda v: args[0] in v,
    "one_of": lambda args: lambda v: v in args,
    "monitoring.regex.full_match": lambda args: re.compile(args[0]).fullmatch,
}
ONE_ARGUMENT = {"starts_with", "ends_with", "has_substring", "monitoring.regex.full_match"}


@dataclass(frozen=True)
class Clause:
    field: str  # 'metric.type', 'resource.labels.zone', …
    matches: Callable[[str], object]
    negated: bool
    text: str  # the clause as written, for messages

    def holds(self, series: Series) -> bool:
        value = series.label(self.field)
        return bool(value is not None and self.matches(value)) != self.negated


def field_name(selector: str, where: str) -> str:
    """A selector as Series.label reads it ('metric.label.x' and 'metric.labels.x' alike)."""
    if selector in ("metric.type", "resource.type"):
        return selector
    if selector == "project":
        return "resource.labels.project_id"
    found = re.fullmatch(r"(metric|resource)\.labels?\.([A-Za-z_][\w-]*)", selector)
    if not found:
        raise invalid(
            where,
            selector,
            "the sandbox reads metric.type, resource.type, project, metric.labels.KEY and "
            "resource.labels.KEY.",
        )
    return f"{found.group(1)}.labels.{found.group(2)}"


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    while pos < len(text.rstrip()):
        found = _TOKEN.match(text, pos)
        if not found:
            raise invalid("filter", text, f"Unexpected character at offset {pos}.")
        kind = found.lastgroup
        value = found.group(kind)
        if kind == "string":
            value = re.sub(r'\\([\\"])', r"\1", value[1:-1])
        tokens.append((kind, value))
        pos = found.end()
    return tokens


def parse_filter(text: str) -> list[Clause]:
    """`a = "x" AND NOT b = starts_with("y") AND …`: clauses joined with AND."""
    tokens = _tokens(text)
    clauses: list[Clause] = []

    def take(expected: str | None = None) -> tuple[str, str]:
        if not tokens:
            raise invalid("filter", text, "The filter ends too early.")
        kind, value = tokens.pop(0)
        if expected and value != expected:
            raise invalid("filter", text, f"Expected {expected!r} but found {value!r}.")
        return kind, value

    if not tokens:
        return clauses
    while True:
        negated = tokens[:1] == [("word", "NOT")]
        if negated:
            tokens.pop(0)
        kind, selector = take()
        if kind != "word":
            raise invalid("filter", text, f"Expected a selector but found {selector!r}.")
        field = field_name(selector, "filter")
        _, op = take()
        if op not in ("=", "!=", ":"):
            raise invalid("filter", text, f"Expected =, != or : after {selector}, not {op!r}.")
        kind, value = take()
        if kind == "word" and tokens[:1] == [("op", "(")]:
            matches, shown = _function(text, value, tokens, take)
        elif kind in ("string", "word"):
            matches = (lambda v, s=value: s in v) if op == ":" else (lambda v, s=value: v == s)
            shown = json.dumps(value)
        else:
            raise invalid("filter", text, f"Expected a value after {selector} {op}.")
        written = f"{'NOT ' if negated else ''}{selector} {op} {shown}"
        clauses.append(Clause(field, matches, negated != (op == "!="), written))
        if not tokens:
            return clauses
        _, joiner = take()
        if joiner == "OR":
            raise invalid("filter", text, "The sandbox joins filter clauses with AND only.")
        if joiner != "AND":
            raise invalid("filter", text, f"Expected AND but found {joiner!r}.")


def _function(text: str, name: str, tokens: list, take) -> tuple[Callable[[str], object], str]:
    """The matcher for `name(args…)`, and the call as written."""
    if name not in FUNCTIONS:
        raise invalid("filter", text, f"Unknown function {name}; known: {', '.join(FUNCTIONS)}.")
    take("(")
    args = []
    while True:
        kind, value = take()
        if kind != "string":
            raise invalid("filter", text, f"{name}() takes quoted strings, not {value!r}.")
        args.append(value)
        _, after = take()
        if after == ")":
            break
        if after != ",":
            raise invalid("filter", text, f"Expected , or ) in {name}(), not {after!r}.")
    if name in ONE_ARGUMENT and len(args) != 1:
        raise invalid("filter", text, f"{name}() takes one argument.")
    shown = f"{name}({', '.join(map(json.dumps, args))})"
    try:
        return FUNCTIONS[name](args), shown
    except re.error as exc:
        raise invalid("filter", text, f"Bad regular expression: {exc}.") from None


def metrics_of(text: str, clauses: list[Clause]) -> list[Metric]:
    """The metric types the filter names; it must name at least one, as Google requires."""
    named = [c for c in clauses if c.field == "metric.type" and not c.negated]
    if not named:
        raise invalid("filter", text, "A filter must specify a metric type (metric.type = ...).")
    found = [m for m in METRICS.values() if all(c.matches(m.type) for c in named)]
    if not found:
        raise Refused(
            grpc.StatusCode.NOT_FOUND,
            f"Cannot find metric(s) that match {' AND '.join(c.text for c in named)}. If a "
            "metric was created recently, it could take up to 10 minutes to become available. "
            "Please try again soon.",
        )
    return found


# --- aggregation --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Aligning:
    # (numbers, period) → the aligned value; None: numeric series are refused
    combine: Callable[[list, float], float | int] | None
    kinds: tuple[str, ...]  # metric kinds it applies to
    kind: str | None  # the aligned kind; None keeps the input's
    value_type: str | None  # the aligned value type; None keeps the input's
    unit: Callable[[str], str] = lambda unit: unit
    increases: bool = False  # a cumulative series is aligned on its counter's increases
    # (distributions, period) → the aligned value; None: DISTRIBUTION series are refused
    merge: Callable[[list[Distribution], float], Distribution | float] | None = None

    def takes(self, value_type: str) -> bool:
        return (self.merge if value_type == DISTRIBUTION else self.combine) is not None


def _merged(values: list[Distribution], period: float = 0.0) -> Distribution:
    return Distribution.merge(values)


def _percentile(q: float) -> Callable[[list[Distribution], float], float]:
    return lambda values, period: Distribution.merge(values).percentile(q)


PERCENTILES = {50: "50", 95: "95", 99: "99", 5: "05"}
# As Google documents them: MEAN, SUM and DELTA take distributions too (SUM and DELTA merge
# them, MEAN is the merged mean); PERCENTILE_* take only distributions; RATE, MIN, MAX, COUNT
# and NEXT_OLDER only numbers.
ALIGNERS = {
    Aligner.ALIGN_MEAN: Aligning(
        lambda v, p: sum(v) / len(v),
        (GAUGE, DELTA),
        GAUGE,
        DOUBLE,
        merge=lambda v, p: _merged(v).mean,
    ),
    Aligner.ALIGN_MIN: Aligning(lambda v, p: min(v), (GAUGE, DELTA), GAUGE, None),
    Aligner.ALIGN_MAX: Aligning(lambda v, p: max(v), (GAUGE, DELTA), GAUGE, None),
    Aligner.ALIGN_SUM: Aligning(lambda v, p: sum(v), (GAUGE, DELTA), None, None, merge=_merged),
    Aligner.ALIGN_COUNT: Aligning(
        lambda v, p: len(v), (GAUGE, DELTA), GAUGE, INT64, lambda unit: "1"
    ),
    Aligner.ALIGN_NEXT_OLDER: Aligning(lambda v, p: v[-1], (GAUGE, CUMULATIVE), None, None),
    Aligner.ALIGN_DELTA: Aligning(
        lambda v, p: sum(v), (DELTA, CUMULATIVE), DELTA, None, increases=True, merge=_merged
    ),
    Aligner.ALIGN_RATE: Aligning(
        lambda v, p: sum(v) / p,
        (DELTA, CUMULATIVE),
        GAUGE,
        DOUBLE,
        lambda unit: f"{unit}/s",
        increases=True,
    ),
    **{
        Aligner[f"ALIGN_PERCENTILE_{name}"]: Aligning(
            None, (GAUGE, DELTA), GAUGE, DOUBLE, merge=_percentile(q)
        )
        for q, name in PERCENTILES.items()
    },
}


@dataclass(frozen=True)
class Reducing:
    combine: Callable[[list], float | int] | None  # numbers → one; None: numbers are refused
    merge: Callable[[list[Distribution]], Distribution | float | int] | None  # None: refused
    value_type: str | None  # the reduced value type; None keeps the aligned one's

    def takes(self, value_type: str) -> bool:
        return (self.merge if value_type == DISTRIBUTION else self.combine) is not None


# MEAN, SUM, COUNT and PERCENTILE_* take distributions (merged first), MIN and MAX do not, as
# Google documents. PERCENTILE_* of plain numbers is refused: the sandbox does not know how
# Google interpolates between series.
REDUCERS = {
    Reducer.REDUCE_MEAN: Reducing(lambda v: sum(v) / len(v), lambda v: _merged(v).mean, DOUBLE),
    Reducer.REDUCE_SUM: Reducing(sum, _merged, None),
    Reducer.REDUCE_MIN: Reducing(min, None, None),
    Reducer.REDUCE_MAX: Reducing(max, None, None),
    Reducer.REDUCE_COUNT: Reducing(len, len, INT64),
    **{
        Reducer[f"REDUCE_PERCENTILE_{name}"]: Reducing(
            None, lambda v, q=q: _merged(v).percentile(q), DOUBLE
        )
        for q, name in PERCENTILES.items()
    },
}


@dataclass(frozen=True)
class Aggregation:
    aligner: Aligner
    period: float
    reducer: Reducer
    group_by: tuple[str, ...]


def read_aggregation(request) -> Aggregation | None:
    """The request's aggregation, refused where Google refuses it."""
    if "aggregation" not in request:
        if "secondary_aggregation" in request:
            raise invalid("secondaryAggregation", "set", "May only be specified with aggregation.")
        return None
    if "secondary_aggregation" in request:
        raise Refused(
            grpc.StatusCode.INVALID_ARGUMENT, "The sandbox does not implement secondaryAggregation."
        )
    given = request.aggregation
    aligner, reducer = Aligner(given.per_series_aligner), Reducer(given.cross_series_reducer)
    period = given.alignment_period.total_seconds() if "alignment_period" in given else 0.0
    if reducer != Reducer.REDUCE_NONE and aligner == Aligner.ALIGN_NONE:
        raise invalid(
            "aggregation.perSeriesAligner",
            aligner.name,
            "The aligner cannot be ALIGN_NONE if cross series reduction is requested.",
        )
    if aligner != Aligner.ALIGN_NONE:
        if aligner not in ALIGNERS:
            raise _unimplemented(
                "aggregation.perSeriesAligner", aligner, Aligner.ALIGN_NONE, ALIGNERS
            )
        if period <= 0:
            raise invalid(
                "aggregation.alignmentPeriod",
                f"{period:g}s",
                f"An alignment period is required with the aligner {aligner.name}.",
            )
        if period < MIN_PERIOD:
            raise invalid(
                "aggregation.alignmentPeriod",
                f"{period:g}s",
                f"The alignment period must be at least {MIN_PERIOD:g} seconds.",
            )
    if reducer != Reducer.REDUCE_NONE and reducer not in REDUCERS:
        raise _unimplemented(
            "aggregation.crossSeriesReducer", reducer, Reducer.REDUCE_NONE, REDUCERS
        )
    group_by = tuple(field_name(f, "aggregation.groupByFields") for f in given.group_by_fields)
    return Aggregation(aligner, period, reducer, group_by)


def check_aligner(aggregation: Aggregation | None, metric: Metric) -> None:
    """The aligner takes the metric's kind and value type, and the reducer what it aligns to."""
    if aggregation is None or aggregation.aligner == Aligner.ALIGN_NONE:
        return
    rule = ALIGNERS[aggregation.aligner]
    if metric.kind not in rule.kinds or not rule.takes(metric.value_type):
        raise invalid(
            "aggregation.perSeriesAligner",
            aggregation.aligner.name,
            f"The aligner cannot be applied to metrics with kind {metric.kind} and value type "
            f"{metric.value_type}.",
        )
    if aggregation.reducer == Reducer.REDUCE_NONE:
        return
    kind, value_type = rule.kind or metric.kind, rule.value_type or metric.value_type
    if not REDUCERS[aggregation.reducer].takes(value_type):
        raise invalid(
            "aggregation.crossSeriesReducer",
            aggregation.reducer.name,
            f"The reducer cannot be applied to metrics with kind {kind} and value type "
            f"{value_type} (as aligned by {aggregation.aligner.name}).",
        )


def increases(points: tuple[Point, ...], start: float, end: float) -> list[Point]:
    """A cumulative series' samples in (start, end] as how much the counter grew up to each:
    since the sample before it when both have the same start, else (a reset, or no earlier
    sample) its whole value. The sample before the interval only serves the first one."""
    grown, previous = [], None
    for point in points:
        if point.end > start or point.end == end:
            if previous is not None and previous.start == point.start:
                grown.append(Point(previous.end, point.end, point.value - previous.value))
            else:
                grown.append(point)
        previous = point
    return grown


def align(series: Series, aggregation: Aggregation, start: float, end: float) -> Series:
    """One point per alignment period, the periods counted back from the interval's end."""
    rule, period = ALIGNERS[aggregation.aligner], aggregation.period
    if series.kind == CUMULATIVE and rule.increases:
        inside = increases(series.points, start, end)
    else:
        inside = [p for p in series.points if p.end > start or p.end == end]
    buckets: dict[int, list[Point]] = defaultdict(list)
    for point in inside:
        buckets[math.floor(round((end - point.end) / period, 6))].append(point)
    kind = rule.kind or series.kind
    points = []
    for k in sorted(buckets, reverse=True):
        at = end - k * period
        combine = rule.merge if series.value_type == DISTRIBUTION else rule.combine
        value = combine([p.value for p in buckets[k]], period)
        # A cumulative point keeps its counter's start; a delta covers its period.
        begin = {DELTA: at - period, CUMULATIVE: buckets[k][-1].start}.get(kind, at)
        points.append(Point(begin, at, value))
    return replace(
        series,
        kind=kind,
        value_type=rule.value_type or series.value_type,
        unit=rule.unit(series.unit),
        points=tuple(points),
    )


def reduce(series: list[Series], aggregation: Aggregation) -> list[Series]:
    """One series per distinct value of the group_by fields, their labels all it keeps."""
    rule = REDUCERS[aggregation.reducer]
    groups: dict[tuple, list[Series]] = defaultdict(list)
    for one in series:
        labels = (one.label(f) or "" for f in aggregation.group_by)
        key = (one.metric, one.resource_type, *labels)
        groups[key].append(one)
    reduced = []
    for key in sorted(groups):
        members = groups[key]
        # Keyed by end: the members' cumulative points may start at different times.
        values: dict[float, list] = defaultdict(list)
        starts: dict[float, float] = {}
        for one in members:
            for point in one.points:
                values[point.end].append(point.value)
                starts[point.end] = min(starts.get(point.end, point.start), point.start)
        kept = dict(zip(aggregation.group_by, key[2:], strict=True))
        first = members[0]
        combine = rule.merge if first.value_type == DISTRIBUTION else rule.combine
        reduced.append(
            replace(
                first,
                metric_labels=_labels(kept, "metric"),
                resource_labels=_labels(kept, "resource"),
                value_type=rule.value_type or first.value_type,
                unit="1" if aggregation.reducer == Reducer.REDUCE_COUNT else first.unit,
                points=tuple(Point(starts[e], e, combine(v)) for e, v in sorted(values.items())),
            )
        )
    return reduced


def _labels(kept: dict[str, str], scope: str) -> dict[str, str]:
    prefix = f"{scope}.labels."
    return {f.removeprefix(prefix): v for f, v in kept.items() if f.startswith(prefix) and v}


# --- the call -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """A ListTimeSeries request, checked, in simulated seconds."""

    project: str
    clauses: list[Clause]
    metrics: list[Metric]
    start: float
    end: float
    aggregation: Aggregation | None
    headers_only: bool
    page_size: int
    position: tuple[int, int]  # (series, point) the page starts at
    fingerprint: str


def project_of(name: str) -> str:
    found = re.fullmatch(r"projects/([^/]+)", name)
    if found:
        return found.group(1)
    if re.fullmatch(r"(organizations|folders)/[^/]+", name):
        raise Refused(grpc.StatusCode.NOT_FOUND, f"The sandbox has no {name}.")
    raise invalid("name", name, "The name must be projects/PROJECT_ID.")


def fingerprint(request) -> str:
    """What a page token belongs to: the request without its paging fields."""
    copy = REQUEST()
    copy.CopyFrom(type(request).pb(request))
    copy.page_token, copy.page_size = "", 0
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).hexdigest()[:16]


def page_token(query: Query, position: tuple[int, int]) -> str:
    data = json.dumps({"q": query.fingerprint, "s": position[0], "p": position[1]})
    return base64.urlsafe_b64encode(data.encode()).decode()


def read_page_token(token: str, digest: str) -> tuple[int, int]:
    if not token:
        return 0, 0
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        if data["q"] == digest:
            return int(data["s"]), int(data["p"])
    except (ValueError, KeyError, TypeError):
        pass
    raise invalid("pageToken", token, "The page token is not one this query returned.")


def read_request(request, to_sim: Callable[[float], float], scale: float = 1.0) -> Query:
    """The request checked as Google checks it, its times (and alignment period) in simulated
    seconds: `to_sim` maps a timestamp there, `scale` simulated seconds to one of its own."""
    project = project_of(request.name)
    clauses = parse_filter(request.filter)
    metrics = metrics_of(request.filter, clauses)
    raw = type(request).pb(request)
    if not raw.interval.HasField("end_time"):
        raise invalid("interval.endTime", "", "The end time of the interval is required.")
    end = round(to_sim(raw.interval.end_time.ToNanoseconds() / 1e9), 3)
    start = end
    if raw.interval.HasField("start_time"):
        start = round(to_sim(raw.interval.start_time.ToNanoseconds() / 1e9), 3)
    if start > end:
        raise invalid(
            "interval.startTime",
            raw.interval.start_time.ToJsonString(),
            "The start time must not be later than the end time.",
        )
    if request.order_by:
        raise invalid("orderBy", request.order_by, "Unsupported: must be left blank.")
    aggregation = read_aggregation(request)
    if aggregation and scale != 1.0:
        aggregation = replace(aggregation, period=aggregation.period * scale)
    for metric in metrics:
        check_aligner(aggregation, metric)
    if request.page_size < 0:
        raise invalid("pageSize", request.page_size, "The page size must not be negative.")
    digest = fingerprint(request)
    return Query(
        project=project,
        clauses=clauses,
        metrics=metrics,
        start=start,
        end=end,
        aggregation=aggregation,
        headers_only=request.view == HEADERS,
        page_size=min(request.page_size or MAX_PAGE, MAX_PAGE),
        position=read_page_token(request.page_token, digest),
        fingerprint=digest,
    )


def select(query: Query, subjects: Scene, now: float) -> list[Series]:
    """Every series the query asks for, aggregated, with points; empty ones left out."""
    until = min(query.end, now)
    found: list[Series] = []
    aggregation = query.aggregation
    aligning = bool(aggregation and aggregation.aligner != Aligner.ALIGN_NONE)
    for metric in query.metrics:
        before = aligning and metric.kind == CUMULATIVE
        chosen = []
        for header, subject in headers(metric, subjects.subjects(metric.resource_type)):
            if all(c.holds(header) for c in query.clauses):
                chosen.append(sampled(metric, header, subject, query.start, until, before))
        if aggregation and aligning:
            chosen = [align(s, aggregation, query.start, query.end) for s in chosen]
            if aggregation.reducer != Reducer.REDUCE_NONE:
                chosen = reduce(chosen, aggregation)
        found += sorted(
            (s for s in chosen if s.points),
            key=lambda s: (sorted(s.resource_labels.items()), sorted(s.metric_labels.items())),
        )
    return found


def page(query: Query, series: list[Series]) -> tuple[list[Series], tuple[int, int] | None]:
    """One page from the query's position: at most page_size points (FULL) or series
    (HEADERS), a series split across pages when its points do not fit; then where the next
    page starts (None: this is the last)."""
    index, offset = query.position
    if query.headers_only:
        chosen = [replace(s, points=()) for s in series[index : index + query.page_size]]
        after = index + query.page_size
        return chosen, ((after, 0) if after < len(series) else None)
    chosen, room = [], query.page_size
    while index < len(series) and room:
        newest_first = series[index].points[::-1]
        part = newest_first[offset : offset + room]
        chosen.append(replace(series[index], points=part[::-1]))
        room -= len(part)
        offset += len(part)
        if offset >= len(newest_first):
            index, offset = index + 1, 0
    return chosen, ((index, offset) if index < len(series) else None)


def timestamp(message, to_wall: Callable[[float], float], t: float) -> None:
    """To the microsecond: finer digits of a float epoch are noise, and datetimes stop there."""
    message.FromMicroseconds(round(to_wall(t) * 1e6))


def response(series: list[Series], to_wall: Callable[[float], float], token: str):
    """The ListTimeSeriesResponse message, points newest first."""
    answer = RESPONSE(next_page_token=token)
    for one in series:
        out = answer.time_series.add()
        out.metric.type = one.metric
        out.metric.labels.update(one.metric_labels)
        out.resource.type = one.resource_type
        out.resource.labels.update(one.resource_labels)
        out.metric_kind = metric_pb2.MetricDescriptor.MetricKind.Value(one.kind)
        out.value_type = metric_pb2.MetricDescriptor.ValueType.Value(one.value_type)
        out.unit = one.unit
        for point in reversed(one.points):
            made = out.points.add()
            timestamp(made.interval.start_time, to_wall, point.start)
            timestamp(made.interval.end_time, to_wall, point.end)
            if one.value_type == DISTRIBUTION:
                write_distribution(made.value.distribution_value, point.value)
            elif one.value_type == DOUBLE:
                made.value.double_value = float(point.value)
            else:
                made.value.int64_value = int(point.value)
    units = {one.unit for one in series}
    answer.unit = units.pop() if len(units) == 1 else ("{not_a_unit}" if units else "")
    return answer


def write_distribution(message, value: Distribution) -> None:
    """A google.api.Distribution; trailing empty buckets left off, as the proto allows."""
    message.count = value.count
    message.mean = value.mean
    message.sum_of_squared_deviation = value.sum_of_squared_deviation
    buckets = message.bucket_options.exponential_buckets
    buckets.num_finite_buckets, buckets.growth_factor, buckets.scale = FINITE_BUCKETS, GROWTH, SCALE
    counts = list(value.bucket_counts)
    while counts and not counts[-1]:
        counts.pop()
    message.bucket_counts.extend(counts)


def list_time_series(world, request):
    with world.lock:
        world.sync()
        now = world.t
        to_wall, to_sim = world.monitoring_time()
        query = read_request(request, to_sim, world.monitoring_scale)
        if query.project not in world.projects:
            raise Refused(
                grpc.StatusCode.NOT_FOUND, f"Requested project {query.project!r} was not found."
            )
        subjects = scene(world, query.project)
    chosen, after = page(query, select(query, subjects, now))
    return response(chosen, to_wall, page_token(query, after) if after else "")


# --- the server ---------------------------------------------------------------------------------


class MonitoringServer:
    """The MetricService on its own gRPC port; `endpoint` is what GANTRY_MONITORING_ENDPOINT
    takes (host:port, plaintext)."""

    def __init__(self, world, host: str = "127.0.0.1", port: int = 0):
        self.world = world
        self._pool = futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="monitoring")
        self.server = grpc.server(
            self._pool,
            # Without this a second sandbox on the same port would share it silently.
            options=[("grpc.so_reuseport", 0)],
        )
        methods = {
            "ListTimeSeries": grpc.unary_unary_rpc_method_handler(
                self._call("ListTimeSeries", list_time_series),
                request_deserializer=monitoring_v3.ListTimeSeriesRequest.deserialize,
                response_serializer=lambda message: message.SerializeToString(),
            )
        }
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, methods),)
        )
        bind = f"[{host}]" if ":" in host else host
        try:
            self.port = self.server.add_insecure_port(f"{bind}:{port}")
        except RuntimeError:
            raise OSError(
                f"cannot listen on {bind}:{port} for Cloud Monitoring (taken?); "
                "choose another with --monitoring-port"
            ) from None
        self.host = "[::1]" if ":" in host else "127.0.0.1"

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.stop(grace=None).wait(timeout=5)
        self._pool.shutdown(wait=False)

    def _call(self, method: str, handle: Callable):
        path = f"/{SERVICE}/{method}"

        def call(request, context: grpc.ServicerContext):
            try:
                with self.world.lock:
                    fault = self.world.faults.http_fault("POST", path)
                if fault:
                    status, reason = int(fault["status"]), fault.get("reason")
                    raise Refused(
                        FAULT_CODES.get(status, grpc.StatusCode.UNKNOWN),
                        USAGE_LIMITS.get(reason)
                        or FAULT_MESSAGES.get(status, "Injected by the sandbox."),
                    )
                return handle(self.world, request)
            except Refused as exc:
                context.abort(exc.code, exc.message)
            except Exception as exc:  # a sandbox bug: answer INTERNAL, and say where
                traceback.print_exc()
                context.abort(grpc.StatusCode.INTERNAL, f"sandbox error: {exc!r}")

        return call

"""PromQL checks for the deployment tests: every series, label and label value an alert rule or a
dashboard panel queries must exist in the ``core.metrics`` registry (closed label sets included)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from functools import cache

from prometheus_client.metrics import MetricWrapperBase

import core.metrics

# --- helpers: metrics and PromQL -----------------------------------------------------------------


@dataclass
class MetricInfo:
    labels: set[str]


#: The closed label sets of core.metrics, by label name.
LABEL_ENUMS: dict[str, type[StrEnum]] = {
    "outcome": core.metrics.Outcome,
    "reason": core.metrics.RejectReason,
    "stage": core.metrics.Stage,
    "mode": core.metrics.SearchMode,
    "result": core.metrics.FetchResult,
}
#: Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"job", "instance"}

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
}


@cache
def known_series() -> dict[str, MetricInfo]:
    """Every series name the core.metrics registry exposes, with its label names."""
    series: dict[str, MetricInfo] = {"up": MetricInfo(set())}
    for obj in vars(core.metrics).values():
        if not isinstance(obj, MetricWrapperBase):
            continue
        family = next(iter(obj.describe()))
        labels = set(obj._labelnames)
        for suffix in _SUFFIXES[family.type]:
            extra = {"le"} if suffix == "_bucket" else set()
            series[family.name + suffix] = MetricInfo(labels | extra)
    return series


_TOKEN = re.compile(
    r"""(?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
      | (?P<labels>\{[^}]*\})
      | (?P<range>\[[^\]]*\])
      | (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[a-zA-Z]*)
      | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
      | (?P<open>\()
      | (?P<close>\))
      | (?P<other>\S)""",
    re.VERBOSE,
)
_GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_OPERATORS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
# Aggregations may be followed by `by (...)` rather than `(`: `sum by (le) (rate(...))`.
_AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count"}
_AGGREGATIONS |= {"count_values", "bottomk", "topk", "quantile", "limitk", "limit_ratio"}
_MATCHER = re.compile(r"""([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:\\.|[^"\\])*)\"""")


@dataclass
class Selector:
    metric: str
    matchers: list[tuple[str, str, str]]


def selectors(expr: str) -> list[Selector]:
    """The vector selectors (metric name and label matchers) of a PromQL expression."""
    tokens = [(m.lastgroup or "", m.group()) for m in _TOKEN.finditer(expr)]
    found: list[Selector] = []
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ("", "")
        if kind == "ident" and text in _GROUPING:
            if nxt[0] == "open":  # skip the label list: by (le, mode)
                while i < len(tokens) and tokens[i][0] != "close":
                    i += 1
        elif kind == "ident" and text not in _OPERATORS | _AGGREGATIONS and nxt[0] != "open":
            matchers = _MATCHER.findall(nxt[1]) if nxt[0] == "labels" else []
            found.append(Selector(text, matchers))
        i += 1
    return found


def closed_set(label: str, jobs: set[str]) -> set[str] | None:
    """The values a label may take (``job``: the scrape jobs), None when it is not closed."""
    if label == "job":
        return jobs
    enum = LABEL_ENUMS.get(label)
    return None if enum is None else {str(member) for member in enum}


def check_expr(expr: str, jobs: set[str]) -> list[str]:
    """Problems of one PromQL expression against the metric registry (empty when fine)."""
    problems = []
    sels = selectors(expr)
    if not sels:
        problems.append(f"no metric found in {expr!r}")
    for sel in sels:
        info = known_series().get(sel.metric)
        if info is None:
            problems.append(f"{sel.metric}: not a metric of core/metrics.py (in {expr!r})")
            continue
        for label, op, value in sel.matchers:
            if label not in info.labels | TARGET_LABELS:
                problems.append(f"{sel.metric}: no label {label!r} (in {expr!r})")
                continue
            allowed = closed_set(label, jobs)
            if allowed is None or "$" in value:  # open label, or a Grafana variable
                continue
            if op in ("=", "!="):
                values = [value]
            elif re.fullmatch(r"[\w|]+", value):
                values = value.split("|")
            else:
                continue
            problems += [
                f"{sel.metric}: {label}={v!r} is outside its closed set {sorted(allowed)}"
                for v in values
                if v not in allowed
            ]
    return problems

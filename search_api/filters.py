"""The filter builder: search filters to a Milvus boolean expression, never from raw text.

Only fields in :data:`ALLOWED_FIELDS` can be filtered; every string value becomes a quoted
literal with backslashes and double quotes escaped, and values with control characters or over
the size caps are refused (:class:`core.errors.InvalidRequest`, answered with 422). Numbers are
formatted from ``int`` values. So no user text ever reaches the expression unescaped, and a
filter can only narrow the result set.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from core.errors import InvalidRequest
from store.expressions import quote_literal

ALLOWED_FIELDS = frozenset({"source", "language", "feed_id", "published_at"})
MAX_VALUES = 50
MAX_VALUE_CHARS = 255
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def quote(value: str) -> str:
    """A Milvus string literal that matches exactly ``value``."""
    if len(value) > MAX_VALUE_CHARS:
        raise InvalidRequest(f"filter value longer than {MAX_VALUE_CHARS} characters")
    if _CONTROL.search(value):
        raise InvalidRequest("filter values may not contain control characters")
    return quote_literal(value)


@dataclass(frozen=True)
class SearchFilters:
    """The filters a search may carry; empty means no restriction."""

    sources: Sequence[str] = field(default_factory=tuple)
    language: str | None = None
    feeds: Sequence[str] = field(default_factory=tuple)
    since: int | None = None
    until: int | None = None

    def is_empty(self) -> bool:
        return not (self.sources or self.language or self.feeds or self.since or self.until)


def _in_list(name: str, values: Sequence[str]) -> str:
    if name not in ALLOWED_FIELDS:
        raise InvalidRequest(f"field {name!r} cannot be filtered")
    if len(values) > MAX_VALUES:
        raise InvalidRequest(f"at most {MAX_VALUES} values per filter, got {len(values)}")
    unique = list(dict.fromkeys(values))
    return f"{name} in [" + ", ".join(quote(v) for v in unique) + "]"


def build_expression(filters: SearchFilters) -> str:
    """The Milvus expression for ``filters`` ("" when there are none)."""
    clauses: list[str] = []
    if filters.sources:
        clauses.append(_in_list("source", filters.sources))
    if filters.language:
        clauses.append(f"language == {quote(filters.language)}")
    if filters.feeds:
        clauses.append(_in_list("feed_id", filters.feeds))
    if filters.since is not None:
        clauses.append(f"published_at >= {int(filters.since)}")
    if filters.until is not None:
        clauses.append(f"published_at <= {int(filters.until)}")
    return " and ".join(f"({c})" for c in clauses)

"""The filter builder: allowlisted fields, escaped literals, never a widened expression."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import InvalidRequest
from search_api.filters import MAX_VALUES, SearchFilters, build_expression, quote

_LITERAL = re.compile(r'"((?:[^"\\]|\\.)*)"')


def _unescape(body: str) -> str:
    return re.sub(r"\\(.)", r"\1", body)


def _skeleton(expr: str) -> str:
    """The expression with every string literal replaced by a placeholder."""
    return _LITERAL.sub('"?"', expr)


printable = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=60,
).filter(lambda v: not re.search(r"[\x00-\x1f\x7f]", v))


@settings(max_examples=300, deadline=None)
@given(
    sources=st.lists(printable, max_size=5),
    language=st.one_of(st.none(), printable.filter(bool)),
    feeds=st.lists(printable, max_size=3),
)
def test_any_input_gives_literals_that_round_trip_and_a_fixed_skeleton(
    sources: list[str], language: str | None, feeds: list[str]
) -> None:
    expr = build_expression(SearchFilters(sources=sources, language=language, feeds=feeds))
    literals = [_unescape(m) for m in _LITERAL.findall(expr)]
    expected = list(dict.fromkeys(sources))
    expected += [language] if language else []
    expected += list(dict.fromkeys(feeds))
    assert literals == expected
    # Whatever the values, the structure is only the clauses we build: no operator leaks in.
    skeleton = _skeleton(expr)
    allowed = re.compile(
        r'^(\((source|feed_id) in \[("\?"(, "\?")*)\]\)|\(language == "\?"\))'
        r'( and (\((source|feed_id) in \[("\?"(, "\?")*)\]\)|\(language == "\?"\)))*$|^$'
    )
    assert allowed.match(skeleton), skeleton


@pytest.mark.parametrize(
    "payload",
    [
        'x" or 1==1 or "',
        "a\\",
        '\\"',
        ") or (",
        'bbc.co.uk") or (source != "',
        "\u0022 or true",
        "é\u202e",
    ],
)
def test_injection_payloads_stay_inside_one_literal(payload: str) -> None:
    expr = build_expression(SearchFilters(sources=[payload]))
    assert [_unescape(m) for m in _LITERAL.findall(expr)] == [payload]
    assert _skeleton(expr) == '(source in ["?"])'


def test_numbers_are_formatted_from_ints() -> None:
    assert build_expression(SearchFilters(since=10, until=20)) == (
        "(published_at >= 10) and (published_at <= 20)"
    )


@pytest.mark.parametrize("bad", ["a\x00b", "line\nbreak", "x" * 300])
def test_control_characters_and_long_values_are_refused(bad: str) -> None:
    with pytest.raises(InvalidRequest):
        quote(bad)


def test_too_many_values_are_refused() -> None:
    with pytest.raises(InvalidRequest, match="at most"):
        build_expression(SearchFilters(sources=[f"s{i}" for i in range(MAX_VALUES + 1)]))


def test_no_filters_is_the_empty_expression() -> None:
    assert build_expression(SearchFilters()) == ""
